//! Bounds on what a model file may make a runtime do, checked on the graph before any runtime
//! parses it.
//!
//! A few kilobytes of ONNX can ask for terabytes: a `Resize` by 65536, a `ConstantOfShape` of
//! 2⁴⁰ elements, a `Transpose` that repeats an axis (tract loops on it), 100 000 nodes (load time
//! grows faster than linearly). An allocation failure aborts the process, so sizes are bounded
//! here, from the graph's constants, before anything is allocated; the backends bound every typed
//! tensor the same way ([`Limits::max_tensor_bytes`]) once the input sizes are set.

use std::fmt;

/// Documented bounds, with overrides: the builder setters of each surface, or the environment
/// variables `MSF_MAX_NODES` and `MSF_MAX_TENSOR_MB` (read by [`Limits::default`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Nodes in the graph, subgraphs included. The full-size export has ~500, a `torch.onnx`
    /// export of the same model ~2 000.
    pub max_nodes: usize,
    /// Bytes of any one tensor the graph makes, at the batch size it runs with. The largest
    /// tensor of the full-size model at batch 16 is ~30 MB.
    pub max_tensor_bytes: u64,
    /// Multiply-adds per frame, in billions, as the runtime's cost model counts them once the
    /// graph is typed: a small graph can ask for hours of arithmetic (an `Einsum` over the whole
    /// image). The full-size model needs 6.4 (tract's count): the default allows ~4× that.
    pub max_gfma_per_frame: f64,
}

/// Default node bound.
pub const DEFAULT_MAX_NODES: usize = 20_000;
/// Default tensor bound: 256 MiB.
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 256 << 20;
/// Default compute bound, in billions of multiply-adds per frame.
pub const DEFAULT_MAX_GFMA_PER_FRAME: f64 = 24.0;

/// How much one op may multiply its input's size when that input is not a known constant
/// (`Resize` scales, `Tile` repeats). MSF graphs upsample 16×16 attention to the mask size: ×256.
pub const MAX_GROWTH: f64 = 65_536.0;

impl Default for Limits {
    fn default() -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&v| v > 0);
        Limits {
            max_nodes: env("MSF_MAX_NODES").map_or(DEFAULT_MAX_NODES, |v| v as usize),
            max_tensor_bytes: env("MSF_MAX_TENSOR_MB").map_or(DEFAULT_MAX_TENSOR_BYTES, |mb| mb.saturating_mul(1 << 20)),
            max_gfma_per_frame: env("MSF_MAX_GFMA").map_or(DEFAULT_MAX_GFMA_PER_FRAME, |g| g as f64),
        }
    }
}

impl Limits {
    /// The message for a tensor over the bound, with the way to raise it.
    pub fn tensor_too_large(&self, what: &str, bytes: u64) -> String {
        format!(
            "{what} would take {} (limit {}; raise it with --max-tensor-mb or MSF_MAX_TENSOR_MB if the model is meant to)",
            Mib(bytes),
            Mib(self.max_tensor_bytes)
        )
    }
}

/// A byte count as MiB for messages.
pub struct Mib(pub u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.0 as f64 / (1u64 << 20) as f64;
        if mib >= 1024.0 * 1024.0 {
            write!(f, "{:.0} TiB", mib / (1024.0 * 1024.0))
        } else if mib >= 10.0 {
            write!(f, "{mib:.0} MiB")
        } else {
            write!(f, "{mib:.1} MiB")
        }
    }
}

/// Bytes per element of an ONNX data type (8 for anything unknown: the bound stays conservative).
pub fn elem_bytes(data_type: i32) -> u64 {
    match data_type {
        2 | 3 | 9 | 17..=20 => 1,       // u8, i8, bool, float8s
        4 | 5 | 10 | 16 => 2,           // u16, i16, f16, bf16
        1 | 6 | 12 => 4,                // f32, i32, u32
        _ => 8,                         // i64, u64, f64, complex, string…
    }
}

use crate::contract::{Attribute, Graph, Node, Tensor};
use std::collections::HashMap;

/// A constant the graph names: an initializer or a `Constant` node's output.
struct Const {
    dims: Option<Vec<u64>>,
    data_type: i32,
    /// Its values, when small enough to matter for shapes (≤ 64 elements) and stored inline.
    values: Option<Vec<f64>>,
}

const SMALL: usize = 64;

fn tensor_const(t: &Tensor) -> Const {
    let dims: Option<Vec<u64>> = t.dims.iter().map(|&d| u64::try_from(d).ok()).collect();
    let n = dims.as_ref().and_then(|d| d.iter().try_fold(1u64, |a, &b| a.checked_mul(b)));
    let dt = t.data_type.unwrap_or(0);
    let values = match n {
        Some(n) if n as usize <= SMALL => {
            let raw = t.raw_data.as_deref().unwrap_or_default();
            let v: Vec<f64> = match dt {
                7 if !raw.is_empty() => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                1 if !raw.is_empty() => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                6 if !raw.is_empty() => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                7 => t.int64_data.iter().map(|&v| v as f64).collect(),
                1 => t.float_data.iter().map(|&v| v as f64).collect(),
                6 => t.int32_data.iter().map(|&v| v as f64).collect(),
                _ => Vec::new(),
            };
            (v.len() as u64 == n).then_some(v)
        }
        _ => None,
    };
    Const { dims, data_type: dt, values }
}

fn attr<'a>(n: &'a Node, name: &str) -> Option<&'a Attribute> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

/// `x >= min`, false for NaN: every size check must refuse a NaN, so none is written negated.
fn at_least(x: f64, min: f64) -> bool {
    x >= min
}

/// Elements of a shape, saturating (a bound, not a count).
fn numel(dims: &[u64]) -> f64 {
    dims.iter().map(|&d| d as f64).product()
}

fn broadcast(shapes: &[&[u64]]) -> Vec<u64> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|i| shapes.iter().filter_map(|s| (i + s.len()).checked_sub(rank).map(|j| s[j])).max().unwrap_or(1))
        .collect()
}

/// Output elements of an `Einsum` from its inputs' dims, or `None` when the equation is not
/// plain (ellipsis, unknown letters): such graphs are then bounded when typed.
fn einsum_elements(eq: &str, inputs: &[&[u64]]) -> Option<f64> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return None;
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), r.to_string()),
        None => {
            let mut once: Vec<char> = eq.chars().filter(|c| c.is_alphabetic() && eq.matches(*c).count() == 1).collect();
            once.sort();
            (eq.clone(), once.into_iter().collect())
        }
    };
    let mut size: HashMap<char, u64> = HashMap::new();
    for (term, dims) in lhs.split(',').zip(inputs) {
        if term.len() != dims.len() {
            return None;
        }
        for (c, &d) in term.chars().zip(dims.iter()) {
            size.insert(c, d.max(*size.get(&c).unwrap_or(&1)));
        }
    }
    rhs.chars().map(|c| size.get(&c).map(|&d| d as f64)).product()
}

const BROADCASTING: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Where", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And",
    "Or", "Xor", "Max", "Min", "Sum", "Mean", "BitShift", "PRelu", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
];

/// Ops whose output has their first input's size.
const SIZE_KEEPING: &[&str] = &[
    "Identity", "Cast", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Floor", "Ceil", "Round",
    "Softmax", "LogSoftmax", "LayerNormalization", "Dropout", "Clip", "LeakyRelu", "Gelu", "HardSigmoid", "Not", "Sign",
    "Reciprocal", "IsNaN", "IsInf", "BatchNormalization", "InstanceNormalization",
];

/// [`check_graph`] on the bytes of an ONNX model, with the graph inputs' sizes (e.g. `image` at
/// the batch size a runtime is about to plan for).
pub fn check_graph_bytes(bytes: prost::bytes::Bytes, inputs: &[(&str, Vec<u64>)], limits: &Limits) -> Result<(), String> {
    use prost::Message;
    let model = crate::contract::Model::decode(bytes).map_err(|e| e.to_string())?;
    check_graph(&model.graph.unwrap_or_default(), inputs, limits)
}

/// Values of a small shape-like constant after an elementwise op (1-D or scalar operands).
fn elementwise(op: &str, vs: &[&[f64]], int: bool) -> Option<Vec<f64>> {
    let n = vs.iter().map(|v| v.len()).max()?;
    if vs.iter().any(|v| v.len() != n && v.len() != 1) || vs.len() != 2 {
        return None;
    }
    let at = |v: &[f64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    (0..n)
        .map(|i| {
            let (a, b) = (at(vs[0], i), at(vs[1], i));
            Some(match op {
                "Add" => a + b,
                "Sub" => a - b,
                "Mul" => a * b,
                "Div" if b == 0.0 => return None,
                "Div" if int => (a / b).trunc(),
                "Div" => a / b,
                "Max" => a.max(b),
                "Min" => a.min(b),
                _ => return None,
            })
        })
        .collect()
}

/// Python-style `v[start:end:step]` of a 1-D constant (ONNX `Slice` clamping).
fn slice(v: &[f64], start: f64, end: f64, step: f64) -> Option<Vec<f64>> {
    let n = v.len() as f64;
    if step == 0.0 {
        return None;
    }
    let clamp = |x: f64, lo: f64, hi: f64| (if x < 0.0 { x + n } else { x }).clamp(lo, hi);
    let (mut i, end) = if step > 0.0 { (clamp(start, 0.0, n), clamp(end, 0.0, n)) } else { (clamp(start, -1.0, n - 1.0), clamp(end, -1.0, n - 1.0)) };
    let mut out = Vec::new();
    while (step > 0.0 && i < end) || (step < 0.0 && i > end) {
        out.push(*v.get(i as usize)?);
        i += step;
        if out.len() > SMALL {
            return None;
        }
    }
    Some(out)
}

/// Every node of `graph` (subgraphs included) against `limits`: the node count, control flow
/// (never part of a decomposition graph; a loop count from the pixels would hang a run),
/// permutations, and every op whose output size comes from constants — including the sizes a
/// graph computes from `Shape` of its inputs (`inputs`: their sizes), which runtimes fold into
/// constants (and allocate) while loading.
pub(crate) fn check_graph(graph: &Graph, inputs: &[(&str, Vec<u64>)], limits: &Limits) -> Result<(), String> {
    let total = count_nodes(graph, 0)?;
    if total > limits.max_nodes {
        return Err(format!(
            "the graph has {total} nodes (limit {}; raise it with --max-nodes or MSF_MAX_NODES if the model is meant to)",
            limits.max_nodes
        ));
    }
    let mut consts: HashMap<&str, Const> = HashMap::new();
    // Sizes of non-constant tensors where they follow from the inputs' (for `Shape`).
    let mut known: HashMap<&str, Vec<u64>> = inputs.iter().map(|(n, d)| (*n, d.clone())).collect();
    for t in &graph.initializer {
        if let Some(name) = t.name.as_deref() {
            consts.insert(name, tensor_const(t));
        }
    }
    for n in &graph.node {
        let op = n.op_type.as_deref().unwrap_or_default();
        let domain = n.domain.as_deref().unwrap_or_default();
        let name = || n.output.first().map_or(String::new(), |o| format!(" `{o}`"));
        let fail = |why: String| Err(format!("{op} node{}: {why}", name()));
        if !(domain.is_empty() || domain == "ai.onnx") {
            continue;
        }
        if op == "Constant" {
            if let Some(out) = n.output.first() {
                let c = if let Some(t) = attr(n, "value").and_then(|a| a.t.as_ref()) {
                    tensor_const(t)
                } else if let Some(a) = attr(n, "value_ints") {
                    Const { dims: Some(vec![a.ints.len() as u64]), data_type: 7, values: Some(a.ints.iter().map(|&v| v as f64).collect()) }
                } else if let Some(a) = attr(n, "value_int") {
                    Const { dims: Some(vec![]), data_type: 7, values: Some(vec![a.i.unwrap_or(0) as f64]) }
                } else {
                    continue;
                };
                consts.insert(out.as_str(), c);
            }
            continue;
        }
        let input = |i: usize| n.input.get(i).filter(|s| !s.is_empty()).and_then(|s| consts.get(s.as_str()));
        let values = |i: usize| input(i).and_then(|c| c.values.as_deref());
        let dims = |i: usize| input(i).and_then(|c| c.dims.as_deref());
        let all_const = !n.input.is_empty() && (0..n.input.len()).all(|i| n.input[i].is_empty() || input(i).is_some());
        let int = input(0).is_some_and(|c| matches!(c.data_type, 6 | 7));
        let small = |v: Vec<f64>, dt: i32| Const { dims: Some(vec![v.len() as u64]), data_type: dt, values: Some(v) };
        // What this node's output is known to be, when it is a constant the runtime will fold.
        let mut produced: Option<Const> = None;
        let elem = |i: usize| input(i).map_or(4, |c| elem_bytes(c.data_type));
        let bound = |elements: f64, bytes_per: u64| -> Result<(), String> {
            let bytes = elements * bytes_per as f64;
            if !at_least(limits.max_tensor_bytes as f64, bytes) {
                return Err(limits.tensor_too_large(&format!("{op} node{}'s output", name()), if bytes.is_finite() { bytes as u64 } else { u64::MAX }));
            }
            Ok(())
        };
        // An op that multiplies its input's size by `growth`: exact when the input is a known
        // constant, else a bound on the factor (the typed check then bounds the real size).
        let grown = |growth: f64| -> Result<(), String> {
            if !at_least(growth, 0.0) {
                return fail(format!("size factor {growth} is not a number ≥ 0"));
            }
            match dims(0) {
                Some(d) => bound(numel(d) * growth, elem(0)),
                None if growth > MAX_GROWTH => fail(format!("multiplies its input's size by {growth:.0} (at most {MAX_GROWTH:.0})")),
                None => Ok(()),
            }
        };
        match op {
            "Loop" | "Scan" | "If" | "SequenceMap" => return fail("control flow is not part of a decomposition graph".into()),
            "Transpose" => {
                if let Some(perm) = attr(n, "perm") {
                    let mut seen = vec![false; perm.ints.len()];
                    for &p in &perm.ints {
                        match usize::try_from(p).ok().and_then(|p| seen.get_mut(p)) {
                            Some(s) if !*s => *s = true,
                            _ => return fail(format!("perm {:?} is not a permutation", perm.ints)),
                        }
                    }
                }
            }
            "Resize" | "Upsample" => {
                let scales = if op == "Resize" { 2 } else { 1 };
                if let Some(sizes) = values(3).filter(|v| !v.is_empty()) {
                    if sizes.iter().any(|&s| !at_least(s, 0.0)) {
                        return fail(format!("sizes {sizes:?} must be ≥ 0"));
                    }
                    bound(sizes.iter().product(), elem(0))?;
                } else if let Some(s) = values(scales).filter(|v| !v.is_empty()) {
                    if s.iter().any(|&s| !(s.is_finite() && s >= 0.0)) {
                        return fail(format!("scales {s:?} must be finite and ≥ 0"));
                    }
                    grown(s.iter().map(|&s| s.max(1.0)).product())?;
                }
            }
            "Tile" => {
                if let Some(r) = values(1) {
                    if r.iter().any(|&r| !at_least(r, 0.0)) {
                        return fail(format!("repeats {r:?} must be ≥ 0"));
                    }
                    grown(r.iter().map(|&r| r.max(1.0)).product())?;
                }
            }
            "Expand" => {
                if let Some(shape) = values(1) {
                    // Runtimes read sizes as unsigned: a negative one is a huge one.
                    if shape.iter().any(|&s| !at_least(s, 0.0)) {
                        return fail(format!("shape {shape:?} must be ≥ 0"));
                    }
                    let mut out = shape.iter().map(|&s| s.max(1.0) as u64).collect::<Vec<_>>();
                    if let Some(d) = dims(0) {
                        out = broadcast(&[&out, d]);
                    }
                    bound(numel(&out), elem(0))?;
                }
            }
            "ConstantOfShape" => {
                if let Some(shape) = values(0) {
                    if shape.iter().any(|&s| !at_least(s, 0.0)) {
                        return fail(format!("shape {shape:?} must be ≥ 0"));
                    }
                    let per = attr(n, "value").and_then(|a| a.t.as_ref()).map_or(4, |t| elem_bytes(t.data_type.unwrap_or(1)));
                    bound(shape.iter().map(|&s| s.max(0.0)).product(), per)?;
                }
            }
            "Range" => {
                if let (Some([start]), Some([end]), Some([delta])) = (values(0), values(1), values(2)) {
                    if *delta == 0.0 {
                        return fail("delta is 0".into());
                    }
                    bound(((end - start) / delta).ceil().max(0.0), elem(0))?;
                }
            }
            "Pad" => {
                let pads: Option<Vec<f64>> = values(1).map(<[f64]>::to_vec).or_else(|| attr(n, "pads").map(|a| a.ints.iter().map(|&v| v as f64).collect()));
                if let Some(pads) = pads {
                    match dims(0) {
                        Some(d) if pads.len() == 2 * d.len() => {
                            let out: Vec<u64> = d.iter().enumerate().map(|(i, &x)| (x as f64 + pads[i] + pads[i + d.len()]).max(0.0) as u64).collect();
                            bound(numel(&out), elem(0))?;
                        }
                        _ if pads.iter().any(|&p| p > MAX_GROWTH) => return fail(format!("pads {pads:?} over {MAX_GROWTH:.0}")),
                        _ => {}
                    }
                }
            }
            "OneHot" => {
                if let Some([depth]) = values(1) {
                    if !at_least(*depth, 1.0) {
                        return fail(format!("depth {depth} must be ≥ 1"));
                    }
                    grown(*depth)?;
                }
            }
            "MatMul" | "Gemm" | "Einsum" => {
                let all: Option<Vec<&[u64]>> = (0..n.input.len()).map(dims).collect();
                if let Some(all) = all {
                    let elements = match op {
                        "Einsum" => einsum_elements(attr(n, "equation").and_then(|a| a.s.as_deref()).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default().as_str(), &all),
                        _ if all.len() >= 2 && all[0].len() >= 2 && all[1].len() >= 2 => {
                            let (a, b) = (all[0], all[1]);
                            let batch = broadcast(&[&a[..a.len() - 2], &b[..b.len() - 2]]);
                            Some(numel(&batch) * a[a.len() - 2].max(a[a.len() - 1]) as f64 * b[b.len() - 1].max(b[b.len() - 2]) as f64)
                        }
                        _ => None,
                    };
                    if let Some(e) = elements {
                        bound(e, elem(0))?;
                    }
                }
            }
            o if BROADCASTING.contains(&o) => {
                let all: Option<Vec<&[u64]>> = (0..n.input.len()).map(dims).collect();
                if let Some(all) = all {
                    let out = broadcast(&all);
                    bound(numel(&out), elem(0))?;
                    let vs: Option<Vec<&[f64]>> = (0..n.input.len()).map(values).collect();
                    produced = match vs.and_then(|vs| elementwise(o, &vs, int)) {
                        Some(v) => Some(small(v, input(0).map_or(7, |c| c.data_type))),
                        None => Some(Const { dims: Some(out), data_type: input(0).map_or(1, |c| c.data_type), values: None }),
                    };
                }
            }
            "Shape" => {
                let d = dims(0).or_else(|| n.input.first().and_then(|x| known.get(x.as_str()).map(Vec::as_slice)));
                if let Some(d) = d {
                    let r = d.len() as i64;
                    let at = |name: &str, dflt: i64| {
                        let v = attr(n, name).and_then(|a| a.i).unwrap_or(dflt);
                        (if v < 0 { v + r } else { v }).clamp(0, r) as usize
                    };
                    let (a, b) = (at("start", 0), at("end", r));
                    produced = Some(small(d[a..b.max(a)].iter().map(|&x| x as f64).collect(), 7));
                }
            }
            "Concat" if all_const => {
                let vs: Option<Vec<&[f64]>> = (0..n.input.len()).map(values).collect();
                if let Some(vs) = vs.filter(|vs| vs.iter().map(|v| v.len()).sum::<usize>() <= SMALL) {
                    produced = Some(small(vs.concat(), input(0).map_or(7, |c| c.data_type)));
                }
            }
            "Gather" if all_const => {
                if let (Some(data), Some(idx)) = (values(0), values(1)) {
                    let len = data.len() as f64;
                    let picked: Option<Vec<f64>> = idx.iter().map(|&i| data.get((if i < 0.0 { i + len } else { i }) as usize).copied()).collect();
                    if let Some(v) = picked {
                        produced = Some(small(v, input(0).map_or(7, |c| c.data_type)));
                    }
                }
            }
            "Slice" if all_const => {
                if let (Some(v), Some([start]), Some([end])) = (values(0), values(1), values(2)) {
                    let step = values(4).and_then(|s| s.first().copied()).unwrap_or(1.0);
                    if let Some(out) = slice(v, *start, *end, step) {
                        produced = Some(small(out, input(0).map_or(7, |c| c.data_type)));
                    }
                }
            }
            "Unsqueeze" | "Squeeze" | "Cast" | "Identity" | "Reshape" | "Flatten" | "Neg" | "Abs" | "Floor" | "Ceil" | "Round" if all_const => {
                if let Some(v) = values(0) {
                    let v = v.iter().map(|&x| match op { "Neg" => -x, "Abs" => x.abs(), "Floor" => x.floor(), "Ceil" => x.ceil(), "Round" => x.round(), _ => x }).collect();
                    produced = Some(small(v, input(0).map_or(7, |c| c.data_type)));
                } else if matches!(op, "Cast" | "Identity" | "Neg" | "Abs") {
                    produced = input(0).map(|c| Const { dims: c.dims.clone(), data_type: c.data_type, values: None });
                }
            }
            _ => {}
        }
        // Outputs of ops that only grow or copy a constant are constants of a known size, so that
        // a chain of them is bounded link by link.
        if produced.is_none() && all_const {
            if let Some(d) = match op {
                "ConstantOfShape" => values(0).map(|v| v.iter().map(|&x| x.max(0.0) as u64).collect()),
                "Expand" => values(1).map(|v| broadcast(&[&v.iter().map(|&x| x.max(1.0) as u64).collect::<Vec<_>>(), dims(0).unwrap_or(&[])])),
                "Tile" => match (dims(0), values(1)) {
                    (Some(d), Some(r)) if d.len() == r.len() => Some(d.iter().zip(r).map(|(&a, &b)| a.saturating_mul(b.max(0.0) as u64)).collect()),
                    _ => None,
                },
                _ => None,
            } {
                produced = Some(Const { dims: Some(d), data_type: 1, values: None });
            }
        }
        // Sizes through ops that keep or permute them, so that `Shape` further down still knows.
        let size_of = |i: usize| dims(i).map(<[u64]>::to_vec).or_else(|| n.input.get(i).and_then(|x| known.get(x.as_str()).cloned()));
        let size = if produced.is_some() {
            None
        } else if SIZE_KEEPING.contains(&op) {
            size_of(0)
        } else if op == "Transpose" {
            size_of(0).and_then(|d| match attr(n, "perm") {
                Some(p) => p.ints.iter().map(|&i| d.get(i as usize).copied()).collect(),
                None => Some(d.into_iter().rev().collect()),
            })
        } else if BROADCASTING.contains(&op) {
            let all: Option<Vec<Vec<u64>>> = (0..n.input.len()).map(size_of).collect();
            all.map(|a| broadcast(&a.iter().map(Vec::as_slice).collect::<Vec<_>>()))
        } else {
            None
        };
        if let (Some(d), Some(out)) = (size, n.output.first()) {
            known.insert(out.as_str(), d);
        }
        if let (Some(c), Some(out)) = (produced, n.output.first()) {
            consts.insert(out.as_str(), c);
        }
    }
    Ok(())
}

/// Nodes of a graph and its subgraphs; subgraphs nest at most 8 deep.
fn count_nodes(graph: &Graph, depth: usize) -> Result<usize, String> {
    if depth > 8 {
        return Err("subgraphs nest more than 8 deep".into());
    }
    let mut n = graph.node.len();
    for node in &graph.node {
        for a in &node.attribute {
            if let Some(g) = &a.g {
                n += count_nodes(g, depth + 1)?;
            }
            for g in &a.graphs {
                n += count_nodes(g, depth + 1)?;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto, TensorProto};
    use prost::Message;

    fn node(op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto { op_type: Some(op.into()), input: inputs.iter().map(|s| s.to_string()).collect(), output: vec!["y".into()], attribute: attrs, ..Default::default() }
    }
    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: Some(name.into()), ints: v.to_vec(), r#type: Some(AttributeType::Ints as i32), ..Default::default() }
    }
    fn i64s(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
        TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(7), raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()), ..Default::default() }
    }
    fn f32s(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
        TensorProto { name: Some(name.into()), dims: dims.to_vec(), data_type: Some(1), float_data: v.to_vec(), ..Default::default() }
    }
    fn check(nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> Result<(), String> {
        let g = GraphProto { node: nodes, initializer: inits, ..Default::default() };
        let g = Graph::decode(g.encode_to_vec().as_slice()).unwrap();
        check_graph(&g, &[("image", vec![1, 3, 256, 256])], &Limits { max_nodes: 100, max_tensor_bytes: 1 << 20, ..Limits::default() })
    }

    fn out(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto { output: vec![output.into()], ..node(op, inputs, attrs) }
    }

    /// Sizes computed from `Shape` of the image, the idiom of torch.onnx exports, are followed:
    /// a runtime folds them into constants (and allocates them) while loading.
    #[test]
    fn sizes_computed_from_the_input_shape_are_bounded() {
        let chain = |factor: i64| {
            check(
                vec![
                    out("Shape", &["image"], "sh", vec![]),
                    out("Slice", &["sh", "two", "four"], "hw", vec![]),
                    out("Mul", &["hw", "f"], "hw2", vec![]),
                    out("Concat", &["one", "hw2"], "shape", vec![AttributeProto { name: Some("axis".into()), i: Some(0), ..Default::default() }]),
                    out("ConstantOfShape", &["shape"], "big", vec![]),
                    out("Tile", &["big", "reps"], "y", vec![]),
                ],
                vec![i64s("two", &[1], &[2]), i64s("four", &[1], &[4]), i64s("f", &[], &[factor]), i64s("one", &[1], &[1]), i64s("reps", &[3], &[1, 1, 4])],
            )
        };
        // 1×256×256 f32 = 256 KiB, tiled ×4 = 1 MiB: at the bound.
        assert!(chain(1).is_ok(), "{:?}", chain(1));
        let e = chain(40).unwrap_err();
        assert!(e.contains("ConstantOfShape") && e.contains("limit"), "{e}");
        // Within the first bound, over it once tiled: the chain is followed link by link.
        let e = chain(2).unwrap_err();
        assert!(e.contains("Tile") && e.contains("limit"), "{e}");
    }

    #[test]
    fn sizes_from_constants_are_bounded_before_anything_runs() {
        // Within the bound: a real MSF-like upsample of 16×16 attention to 256×256.
        assert!(check(vec![node("Resize", &["a", "", "s"], vec![])], vec![f32s("s", &[4], &[1., 1., 16., 16.])]).is_ok());
        let huge = [
            (node("Resize", &["x", "", "s"], vec![]), vec![f32s("x", &[1, 1, 4, 4], &[0.; 16]), f32s("s", &[4], &[1., 1., 65536., 65536.])]),
            (node("Resize", &["image", "", "s"], vec![]), vec![f32s("s", &[4], &[1., 1., 4096., 4096.])]),
            (node("Resize", &["x", "", "", "z"], vec![]), vec![i64s("z", &[4], &[1, 1, 1 << 20, 1 << 20])]),
            (node("Tile", &["x", "r"], vec![]), vec![f32s("x", &[4], &[0.; 4]), i64s("r", &[1], &[1 << 30])]),
            (node("ConstantOfShape", &["s"], vec![]), vec![i64s("s", &[2], &[1 << 20, 1 << 20])]),
            (node("Expand", &["x", "s"], vec![]), vec![f32s("x", &[1], &[0.]), i64s("s", &[2], &[1 << 20, 1 << 20])]),
            (node("Range", &["a", "b", "c"], vec![]), vec![i64s("a", &[], &[0]), i64s("b", &[], &[1 << 40]), i64s("c", &[], &[1])]),
            (node("Add", &["a", "b"], vec![]), vec![f32s("a", &[4096, 1], &[0.; 4096]), f32s("b", &[1, 4096], &[0.; 4096])]),
            (node("MatMul", &["a", "b"], vec![]), vec![f32s("a", &[4096, 1], &[0.; 4096]), f32s("b", &[1, 4096], &[0.; 4096])]),
        ];
        for (n, inits) in huge {
            let op = n.op_type.clone().unwrap();
            let e = check(vec![n], inits).unwrap_err();
            assert!(e.contains(&op) && (e.contains("limit") || e.contains("at most")), "{op}: {e}");
        }
        let e = check(vec![node("Range", &["a", "b", "c"], vec![])], vec![i64s("a", &[], &[0]), i64s("b", &[], &[5]), i64s("c", &[], &[0])]).unwrap_err();
        assert!(e.contains("delta is 0"), "{e}");
        // Found by the `graph` fuzz target: a negative size (read as a huge unsigned one by tract)
        // made the product of the sizes 0 here, and tract asked for 4 TiB.
        for (op, inputs, name) in [("ConstantOfShape", &["s"][..], "s"), ("Expand", &["x", "s"], "s"), ("Tile", &["x", "s"], "s")] {
            let e = check(vec![node(op, inputs, vec![])], vec![f32s("x", &[2], &[0.; 2]), i64s(name, &[2], &[-4899916394578051072, 1 << 20])]).unwrap_err();
            assert!(e.contains("must be ≥ 0"), "{op}: {e}");
        }
    }

    #[test]
    fn permutations_control_flow_and_node_counts() {
        assert!(check(vec![node("Transpose", &["x"], vec![ints("perm", &[0, 2, 1, 3])])], vec![]).is_ok());
        for bad in [&[0, 0, 0, 3][..], &[0, 1, 4], &[-1, 0]] {
            let e = check(vec![node("Transpose", &["x"], vec![ints("perm", bad)])], vec![]).unwrap_err();
            assert!(e.contains("not a permutation"), "{e}");
        }
        assert!(check(vec![node("Loop", &["n", "c"], vec![])], vec![]).unwrap_err().contains("control flow"));
        let many = (0..101).map(|_| node("Identity", &["x"], vec![])).collect();
        assert!(check(many, vec![]).unwrap_err().contains("101 nodes (limit 100"));
    }

    #[test]
    fn einsum_sizes() {
        assert_eq!(einsum_elements("bchw,bcxy->bhwxy", &[&[1, 3, 8, 8], &[1, 3, 8, 8]]), Some(4096.0));
        assert_eq!(einsum_elements("ij,jk", &[&[2, 3], &[3, 5]]), Some(10.0));
        assert_eq!(einsum_elements("...i,...i", &[&[2], &[2]]), None);
    }
}
