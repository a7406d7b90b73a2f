//! tract backend: pure Rust, CPU, the default.
//!
//! The graph is parsed once; an optimised plan is made per batch size on first use and reused
//! (optimising for concrete shapes lets tract pick its fastest kernels).

use super::{Backend, RawOutputs, SessionOptions};
use crate::error::{Error, Result};
use crate::model::{ModelFile, ModelInfo, WeightsInFile};
use msf_models::interface::{INPUT_SLOTS, OUTPUT_MASKS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use prost::Message;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;
use tract_linalg::multithread::{multithread_tract_scope, Executor};

type Plan = Arc<TypedRunnableModel>;

pub struct TractBackend {
    /// The model's path (or a placeholder for a model in memory), for messages.
    path: PathBuf,
    info: ModelInfo,
    /// Where a plan for another batch size gets the graph from.
    graph: Graph,
    /// Output indices of slots, attn, masks in the graph's output order.
    outputs: [usize; 3],
    plans: Mutex<HashMap<usize, Plan>>,
    slots_default: Option<Vec<f32>>,
    executor: Executor,
    /// The masks output is the graph's per-slot mask logits; the argmax over slots runs here.
    native_argmax: bool,
    limits: msf_models::Limits,
    /// The graph's bytes (for a file: without its large initializers): the graph check is
    /// repeated for each batch size, because sizes computed from `Shape` of the input grow with it.
    graph_bytes: prost::bytes::Bytes,
}

/// The graph, kept between plans without a second copy of the weights beside the plans' own.
enum Graph {
    /// A model file: the ONNX graph whose large initializers point back into the file as external
    /// data (tract reads them from there), re-parsed for a new batch size. The file must not
    /// change meanwhile.
    File { proto: tract_onnx::pb::ModelProto, file: WeightsInFile },
    /// A model given as bytes: the parsed model (its constants are shared with the plans until
    /// tract packs them).
    Memory(InferenceModel),
}

fn load_err(path: &Path) -> impl Fn(TractError) -> Error + '_ {
    move |e| Error::backend_load(path, e)
}

/// tract panics on a few malformed inputs; turn any panic into an error naming the file.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::model_load(path, format!("tract failed while {what}: {}", crate::error::panic_message(&*p))))
    })
}

/// Every tensor of the typed graph must have a size known before running (a size taken from the
/// pixels could be anything) and fit in `limits`, and a frame's arithmetic must fit too: checked
/// before tract allocates or computes any of it.
fn check_typed(model: &TypedModel, batch: usize, limits: &msf_models::Limits) -> std::result::Result<(), String> {
    for node in model.nodes() {
        for (slot, out) in node.outputs.iter().enumerate() {
            let what = || format!("tensor `{}`{} at batch {batch}", node.name, if slot > 0 { format!(" (output {slot})") } else { String::new() });
            let Some(shape) = out.fact.shape.as_concrete() else {
                return Err(format!("{}: its shape {:?} depends on the pixels; an MSF graph has fixed sizes", what(), out.fact.shape));
            };
            let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let bytes = elements.and_then(|e| e.checked_mul(out.fact.datum_type.size_of() as u64)).unwrap_or(u64::MAX);
            if bytes > limits.max_tensor_bytes {
                return Err(limits.tensor_too_large(&what(), bytes));
            }
        }
    }
    let mut fma = 0f64;
    for node in model.nodes() {
        let inputs = model.node_input_facts(node.id).map_err(|e| e.to_string())?;
        for (cost, n) in node.op.cost(&inputs).unwrap_or_default() {
            if matches!(cost, tract_onnx::tract_core::ops::Cost::FMA(_)) {
                fma += n.to_i64().map_or(f64::INFINITY, |n| n as f64);
            }
        }
    }
    let per_frame = fma / batch as f64 / 1e9;
    if !(per_frame <= limits.max_gfma_per_frame) {
        return Err(format!(
            "a frame needs {per_frame:.1} billion multiply-adds (limit {}; raise it with --max-gfma or MSF_MAX_GFMA if the model is meant to)",
            limits.max_gfma_per_frame
        ));
    }
    Ok(())
}

impl TractBackend {
    /// Parse a checked model and optimise it for batch 1. The file's bytes are dropped as soon
    /// as they are decoded: peak memory is about twice the weights (tract's parsed and packed
    /// copies), not four times.
    pub(crate) fn load(file: ModelFile, opts: &SessionOptions) -> Result<Self> {
        let label = file.label().to_path_buf();
        guarded(&label, "loading the model", || Self::load_inner(file, opts))
    }

    fn load_inner(file: ModelFile, opts: &SessionOptions) -> Result<Self> {
        let path = file.label().to_path_buf();
        let path = path.as_path();
        let info = file.info();
        let contract = &file.contract;
        let outputs = contract.outputs;
        let slots_default = contract.slots_default.clone();
        // A file with inline weights is decoded without them: tract reads each tensor from the
        // file as it parses, and the weights are never held twice (decoding them with the file's
        // bytes still alive made a load peak at twice the file).
        let in_file = file.weights_in_file();
        let decoded = tract_onnx::pb::ModelProto::decode(in_file.as_ref().map_or(&file.bytes[..], |f| &f.graph[..]));
        let mut proto = decoded.map_err(|e| Error::ModelLoad {
            path: path.to_path_buf(),
            reason: "not a readable ONNX protobuf".into(),
            source: Some(e.into()),
        })?;
        let graph = proto.graph.as_mut().ok_or_else(|| Error::model_load(path, "not an ONNX model (the file has no graph)"))?;
        let native_argmax = detach_mask_argmax(graph, outputs[2]);
        if !fast_integer_matmul() {
            dequantize_int8_matmuls(graph);
        }
        // tract makes initializers that are also inputs into constants: take the `slots_init`
        // default of first-form files out so it stays an input (the contract has read its value).
        if contract.slots_input {
            graph.initializer.retain(|t| t.name != INPUT_SLOTS);
        }
        let dir = file.dir().map(Path::to_path_buf);
        let ModelFile { bytes, .. } = file;
        let (graph, model, graph_bytes) = match in_file {
            Some(mut in_file) => {
                drop(bytes);
                in_file.graph = Vec::new();
                let model = parse(&proto, Some(in_file.folder()), path)?;
                if !in_file.unchanged() {
                    return Err(Error::model_load(path, "the file changed while it was being loaded"));
                }
                let graph_bytes = proto.encode_to_vec().into();
                (Graph::File { proto, file: in_file }, model, graph_bytes)
            }
            None => {
                let model = parse(&proto, dir.as_deref(), path)?;
                drop(proto);
                (Graph::Memory(model.clone()), model, bytes)
            }
        };
        // Default: one matmul thread per core (tract itself defaults to one thread, which left half
        // of a 2-core machine idle: 8.2 → 11.8 frames/s on the full-size model).
        let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let executor = if threads > 1 { Executor::multithread(threads) } else { Executor::SingleThread };
        let backend = TractBackend {
            path: path.to_path_buf(),
            info,
            graph,
            outputs,
            plans: Mutex::new(HashMap::new()),
            slots_default,
            executor,
            native_argmax,
            limits: opts.limits,
            graph_bytes,
        };
        // Optimise for batch 1 now: loading is where users expect to wait. The parsed model is
        // moved in, so its unpacked weights are freed once tract has packed them.
        let plan = backend.optimise(model, 1)?;
        backend.plans.lock().expect("plan cache lock").insert(1, plan);
        Ok(backend)
    }

    fn plan(&self, batch: usize) -> Result<Plan> {
        if let Some(p) = self.plans.lock().expect("plan cache lock").get(&batch) {
            return Ok(p.clone());
        }
        let path = &self.path;
        let s = self.info.preprocess.graph_input_size();
        let (k, d) = (self.info.num_slots, self.info.slot_dim);
        let mut inputs = vec![(msf_models::interface::INPUT_IMAGE, vec![batch as u64, 3, s as u64, s as u64])];
        if self.info.slots_input {
            inputs.push((INPUT_SLOTS, vec![batch as u64, k as u64, d as u64]));
        }
        msf_models::limits::check_graph_bytes(self.graph_bytes.clone(), &inputs, &self.limits)
            .map_err(|reason| Error::model_load(path, format!("at batch {batch}: {reason}")))?;
        let model = match &self.graph {
            Graph::Memory(model) => model.clone(),
            Graph::File { proto, file } => {
                let changed = || Error::model_load(path, format!("the file changed since it was loaded; load it again to run batch {batch}"));
                if !file.unchanged() {
                    return Err(changed());
                }
                let model = guarded(path, "loading the model", || parse(proto, Some(file.folder()), path))?;
                if !file.unchanged() {
                    return Err(changed());
                }
                model
            }
        };
        let plan = self.optimise(model, batch)?;
        self.plans.lock().expect("plan cache lock").insert(batch, plan.clone());
        Ok(plan)
    }

    /// Type, check and optimise `model` for `batch` frames.
    fn optimise(&self, mut m: InferenceModel, batch: usize) -> Result<Plan> {
        let path = &self.path;
        let s = self.info.preprocess.graph_input_size();
        let (k, d) = (self.info.num_slots, self.info.slot_dim);
        guarded(path, "optimising the model", || {
            m.set_input_fact(0, f32::fact([batch, 3, s, s]).into()).map_err(load_err(path))?;
            if self.info.slots_input {
                m.set_input_fact(1, f32::fact([batch, k, d]).into()).map_err(load_err(path))?;
            }
            let typed = m.into_typed().map_err(load_err(path))?;
            check_typed(&typed, batch, &self.limits).map_err(|reason| Error::model_load(path, reason))?;
            typed.into_optimized().map_err(load_err(path))?.into_runnable().map_err(load_err(path))
        })
    }
}

/// Parse an ONNX proto with tract; `dir` is where external data is read from.
fn parse(proto: &tract_onnx::pb::ModelProto, dir: Option<&Path>, path: &Path) -> Result<InferenceModel> {
    let dir = match dir {
        Some(d) => Some(d.to_str().ok_or_else(|| Error::model_load(path, "the model's folder is not valid UTF-8"))?),
        None => None,
    };
    let parsed = tract_onnx::onnx().parse(proto, dir).map_err(load_err(path))?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(Error::model_load(path, format!("unresolved inputs {:?}", parsed.unresolved_inputs)));
    }
    Ok(parsed.model)
}

/// tract's ArgMax slices its input once per output pixel: ~9 ms a frame for 7×256×256 mask
/// logits, a tenth of the whole decomposition, where a flat loop takes ~0.1 ms. When the graph
/// ends in the plain `ArgMax(axis=1, keepdims=0)` that msf-export writes, this makes its input
/// (the upsampled attention, (B, K, H, W)) the graph's output in place of `masks`, and
/// [`argmax_slots`] finishes the job. Any other graph is left as it is.
fn detach_mask_argmax(graph: &mut tract_onnx::pb::GraphProto, masks_output: usize) -> bool {
    let attr = |n: &tract_onnx::pb::NodeProto, name: &str| n.attribute.iter().find(|a| a.name == name).map(|a| a.i);
    let Some(pos) = graph.node.iter().position(|n| n.output.iter().any(|o| o == OUTPUT_MASKS)) else { return false };
    let node = &graph.node[pos];
    let plain = node.op_type == "ArgMax"
        && node.domain.is_empty()
        && node.input.len() == 1
        && node.output.len() == 1
        && attr(node, "axis") == Some(1)
        && attr(node, "keepdims") == Some(0)
        && attr(node, "select_last_index").unwrap_or(0) == 0;
    let used_elsewhere = graph.node.iter().any(|n| n.input.iter().any(|i| i == OUTPUT_MASKS));
    if !plain || used_elsewhere {
        return false;
    }
    let logits = graph.node.remove(pos).input.remove(0);
    graph.output[masks_output] = tract_onnx::pb::ValueInfoProto { name: logits, ..Default::default() };
    true
}

/// Whether tract's int8 matrix product is faster than its f32 one on this CPU. On x86-64 without
/// VNNI it is not: tract 0.23's AVX2 kernel (`avx2_mmm_i32_8x8`) widens every byte to 16 and
/// 32 bits, and its inner loop loads with a legacy-SSE `movq` amid AVX code; measured here (AMD
/// EPYC, AVX2) a 257×384 by 384×1536 product takes 290 ms in int8 against 4.8 ms in f32, and
/// the full-size int8 model 10.9 s a frame against 0.23 s (`examples/op_profile`).
fn fast_integer_matmul() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// Turn the exporter's dynamically quantised matmuls (`DynamicQuantizeLinear` → `MatMulInteger`
/// → `Cast` → `Mul` by `x_scale · w_scale`) into `MatMul(x, DequantizeLinear(w_q, w_scale))`:
/// tract folds the dequantised weights into f32 constants and runs its f32 kernels, so an int8
/// file runs at fp32 speed where the integer kernels are slow (see [`fast_integer_matmul`]).
/// Only the exact pattern, with every intermediate used once, is rewritten. Returns how many.
fn dequantize_int8_matmuls(graph: &mut tract_onnx::pb::GraphProto) -> usize {
    use std::collections::HashSet;
    use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, NodeProto};
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *uses.entry(o.name.as_str()).or_default() += 1;
    }
    let once = |name: &str| uses.get(name) == Some(&1);
    let producer = |name: &str| graph.node.iter().position(|n| n.output.iter().any(|o| o == name));
    let consumer = |name: &str| graph.node.iter().position(|n| n.input.iter().any(|i| i == name));
    let plain = |i: usize, op: &str| graph.node[i].op_type == op && graph.node[i].domain.is_empty();
    let initializer = |name: &str, dt: i32, rank: usize| {
        graph.initializer.iter().any(|t| t.name == name && t.data_type == dt && t.dims.len() == rank)
    };
    let other = |n: &NodeProto, this: &str| (n.input.len() == 2).then(|| if n.input[0] == this { &n.input[1] } else { &n.input[0] }).cloned();
    // (nodes to drop, the final Mul's index, x, w_q, w_scale)
    let mut found: Vec<([usize; 5], String, String, String)> = vec![];
    for (mi, n) in graph.node.iter().enumerate() {
        if !plain(mi, "MatMulInteger") || n.input.len() != 3 || n.output.len() != 1 {
            continue;
        }
        let (xq, wq, xzp, acc) = (&n.input[0], &n.input[1], &n.input[2], &n.output[0]);
        let Some(qi) = producer(xq).filter(|&q| plain(q, "DynamicQuantizeLinear")) else { continue };
        let q = &graph.node[qi];
        if q.output.len() != 3 || &q.output[0] != xq || &q.output[2] != xzp || q.input.len() != 1 {
            continue;
        }
        let xs = &q.output[1];
        if !initializer(wq, tract_onnx::pb::tensor_proto::DataType::Int8 as i32, 2) || ![xq, xzp, xs, acc].iter().all(|v| once(v)) {
            continue;
        }
        let Some(ci) = consumer(acc).filter(|&c| plain(c, "Cast")) else { continue };
        let to_float = graph.node[ci].attribute.iter().any(|a| a.name == "to" && a.i == tract_onnx::pb::tensor_proto::DataType::Float as i64);
        let accf = &graph.node[ci].output[0];
        let Some(yi) = consumer(accf).filter(|&y| to_float && once(accf) && plain(y, "Mul")) else { continue };
        let Some(s) = other(&graph.node[yi], accf).filter(|s| once(s)) else { continue };
        let Some(si) = producer(&s).filter(|&si| plain(si, "Mul") && consumer(xs) == Some(si)) else { continue };
        let Some(ws) = other(&graph.node[si], xs).filter(|w| initializer(w, tract_onnx::pb::tensor_proto::DataType::Float as i32, 1)) else { continue };
        found.push(([qi, mi, ci, si, yi], q.input[0].clone(), wq.clone(), ws));
    }
    let count = found.len();
    let mut drop: HashSet<usize> = HashSet::new();
    let mut replace: HashMap<usize, [NodeProto; 2]> = HashMap::new();
    for (nodes, x, wq, ws) in found {
        let y = graph.node[nodes[4]].output[0].clone();
        let name = graph.node[nodes[1]].name.clone();
        let w = format!("{wq}.dequantized");
        let axis = AttributeProto { name: "axis".into(), i: 1, r#type: AttributeType::Int as i32, ..Default::default() };
        let dq = NodeProto { name: format!("{name}.dequantize"), op_type: "DequantizeLinear".into(), input: vec![wq, ws], output: vec![w.clone()], attribute: vec![axis], ..Default::default() };
        let mm = NodeProto { name: format!("{name}.f32"), op_type: "MatMul".into(), input: vec![x, w], output: vec![y], ..Default::default() };
        drop.extend(nodes);
        replace.insert(nodes[4], [dq, mm]);
    }
    let old = std::mem::take(&mut graph.node);
    for (i, n) in old.into_iter().enumerate() {
        match replace.remove(&i) {
            Some(new) => graph.node.extend(new),
            None if drop.contains(&i) => {}
            None => graph.node.push(n),
        }
    }
    count
}

/// ONNX `ArgMax` over axis 1 of (B, K, P) logits, with the same tie and NaN rules as the graph
/// op (the first maximum wins; NaN never wins), as (B, P) slot indices.
fn argmax_slots(logits: &[f32], batch: usize, k: usize) -> Vec<i64> {
    let plane = logits.len() / (batch * k).max(1);
    let mut idx = vec![0i64; batch * plane];
    let mut best = vec![f32::MIN; plane];
    for b in 0..batch {
        best.fill(f32::MIN);
        let out = &mut idx[b * plane..(b + 1) * plane];
        for slot in 0..k {
            let src = &logits[(b * k + slot) * plane..(b * k + slot + 1) * plane];
            for ((o, m), &v) in out.iter_mut().zip(best.iter_mut()).zip(src) {
                if v > *m {
                    *m = v;
                    *o = slot as i64;
                }
            }
        }
    }
    idx
}

fn to_vec<T: Datum + Copy>(t: &TValue) -> TractResult<Vec<T>> {
    Ok(t.to_plain_array_view::<T>()?.iter().copied().collect())
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }
    fn provider(&self) -> &str {
        "cpu"
    }
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn default_slots(&self) -> Option<&[f32]> {
        self.slots_default.as_deref()
    }

    fn run(&self, image: &[f32], batch: usize, slots_init: Option<&[f32]>) -> Result<RawOutputs> {
        let s = self.info.preprocess.graph_input_size();
        let (k, d) = (self.info.num_slots, self.info.slot_dim);
        let plan = self.plan(batch)?;
        let run_err = |e: TractError| Error::backend_run("tract", e);
        let image = tract_ndarray::Array4::from_shape_vec((batch, 3, s, s), image.to_vec())
            .map_err(|e| Error::inference("tract", format!("input: {e}")))?;
        let mut inputs: TVec<TValue> = tvec!(image.into_tensor().into());
        if self.info.slots_input {
            let init = super::initial_slots(slots_init, self.slots_default.as_deref(), batch, &self.info, "tract")?.into_owned();
            let t = tract_ndarray::Array3::from_shape_vec((batch, k, d), init)
                .map_err(|e| Error::inference("tract", format!("slots_init: {e}")))?;
            inputs.push(t.into_tensor().into());
        }
        // A graph can index or divide by values taken from the pixels; tract panics on an index
        // out of range or a division by zero, which must fail this call, not the process.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| multithread_tract_scope(self.executor.clone(), || plan.run(inputs))))
            .map_err(|p| Error::inference("tract", format!("the graph failed on this input: {}", crate::error::panic_message(&*p))))?
            .map_err(run_err)?;
        let [si, ai, mi] = self.outputs;
        let masks = if self.native_argmax {
            let logits = out[mi].to_plain_array_view::<f32>().map_err(run_err)?;
            let logits = logits.as_slice().ok_or_else(|| Error::inference("tract", "mask logits are not contiguous"))?;
            argmax_slots(logits, batch, k)
        } else {
            let masks = out[mi].cast_to::<i64>().map_err(run_err)?;
            masks.to_plain_array_view::<i64>().map_err(run_err)?.iter().copied().collect()
        };
        Ok(RawOutputs { batch, slots: to_vec::<f32>(&out[si]).map_err(run_err)?, attn: to_vec::<f32>(&out[ai]).map_err(run_err)?, masks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msf_models::onnx::{attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TypeProto, ValueInfoProto};
    use prost::Message;

    /// A graph of one `ArgMax` from input `logits` to output `masks`, with the given attributes.
    fn argmax_graph(attrs: &[(&str, i64)]) -> Vec<u8> {
        let tensor = |name: &str, elem: i32| ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(elem), shape: None })), ..Default::default() }),
            ..Default::default()
        };
        let attribute = attrs
            .iter()
            .map(|(n, v)| AttributeProto { name: Some(n.to_string()), i: Some(*v), r#type: Some(AttributeType::Int as i32), ..Default::default() })
            .collect();
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(GraphProto {
                node: vec![NodeProto { op_type: Some("ArgMax".into()), input: vec!["logits".into()], output: vec![OUTPUT_MASKS.into()], attribute, ..Default::default() }],
                input: vec![tensor("logits", 1)],
                output: vec![tensor(OUTPUT_MASKS, 7)],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The loop gives what tract's own `ArgMax` gives, ties (first wins), NaN, ±∞ and f32::MIN included.
    #[test]
    fn native_argmax_matches_the_graph_op() {
        let (b, k, p) = (2, 7, 333);
        // Four levels only, so that most pixels have tied slots.
        let mut logits: Vec<f32> = (0..b * k * p).map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62) as f32 - 1.5).collect();
        for (i, special) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN, f32::NAN].into_iter().enumerate() {
            logits[i * 97] = special;
        }
        // A pixel whose every slot is NaN, and one whose every slot is -∞.
        for s in 0..k {
            logits[s * p + 5] = f32::NAN;
            logits[s * p + 6] = f32::NEG_INFINITY;
        }
        let bytes = argmax_graph(&[("axis", 1), ("keepdims", 0)]);
        let mut model = tract_onnx::onnx().model_for_read(&mut bytes.as_slice()).unwrap();
        model.set_input_fact(0, f32::fact([b, k, p]).into()).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let input = tract_ndarray::Array3::from_shape_vec((b, k, p), logits.clone()).unwrap().into_tensor();
        let out = plan.run(tvec!(input.into())).unwrap();
        let want: Vec<i64> = out[0].cast_to::<i64>().unwrap().to_plain_array_view::<i64>().unwrap().iter().copied().collect();
        assert_eq!(argmax_slots(&logits, b, k), want);
    }

    #[test]
    fn only_the_plain_argmax_is_detached() {
        let detach = |attrs: &[(&str, i64)]| {
            let mut proto = tract_onnx::onnx().proto_model_for_read(&mut argmax_graph(attrs).as_slice()).unwrap();
            let graph = proto.graph.as_mut().unwrap();
            let done = detach_mask_argmax(graph, 0);
            (done, graph.output[0].name.clone(), graph.node.len())
        };
        assert_eq!(detach(&[("axis", 1), ("keepdims", 0)]), (true, "logits".to_string(), 0));
        assert_eq!(detach(&[("axis", 1), ("keepdims", 0), ("select_last_index", 0)]), (true, "logits".to_string(), 0));
        for other in [&[("axis", 1), ("keepdims", 0), ("select_last_index", 1)][..], &[("axis", 1)], &[("axis", 2), ("keepdims", 0)], &[("keepdims", 0)]] {
            assert_eq!(detach(other), (false, OUTPUT_MASKS.to_string(), 1), "{other:?}");
        }
    }

    /// The int8 export's matmuls all become f32 matmuls of the dequantised weights, and the result
    /// stays as close to the fp32 export as tract's integer path is.
    #[test]
    fn int8_matmuls_run_as_f32_matmuls_of_the_dequantised_weights() {
        use msf_exporter::export::{export, ExportOptions};
        use msf_exporter::graph::{GraphOptions, Precision};
        let Some(fx) = msf_tests::require_fixtures("int8_matmuls_run_as_f32_matmuls_of_the_dequantised_weights") else { return };
        let dir = std::env::temp_dir().join(format!("msf-tract-int8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ckpt = fx.join("tiny-slate-msf.pth");
        let protos: Vec<tract_onnx::pb::ModelProto> = [Precision::Fp32, Precision::Int8]
            .into_iter()
            .map(|precision| {
                let out = dir.join(format!("{}.onnx", precision.as_str()));
                let opts = ExportOptions { graph: GraphOptions { precision, ..Default::default() }, ..Default::default() };
                export(&ckpt, &out, &opts).unwrap();
                tract_onnx::pb::ModelProto::decode(&std::fs::read(&out).unwrap()[..]).unwrap()
            })
            .collect();
        std::fs::remove_dir_all(&dir).ok();
        let (fp32, int8) = (&protos[0], &protos[1]);
        let count = |p: &tract_onnx::pb::ModelProto, op: &str| p.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == op).count();
        let mut rewritten = int8.clone();
        let n = dequantize_int8_matmuls(rewritten.graph.as_mut().unwrap());
        assert!(n > 0 && n == count(int8, "MatMulInteger"), "{n} of {} rewritten", count(int8, "MatMulInteger"));
        for op in ["MatMulInteger", "DynamicQuantizeLinear"] {
            assert_eq!(count(&rewritten, op), 0, "{op} left");
        }
        assert_eq!(count(&rewritten, "DequantizeLinear"), n);
        assert_eq!(count(&rewritten, "MatMul"), count(fp32, "MatMul"));

        // Slots of one patterned image through tract, for each form.
        let slots = |p: &tract_onnx::pb::ModelProto| -> Vec<f32> {
            let mut m = tract_onnx::onnx().model_for_proto_model(p).unwrap();
            let side = m.input_fact(0).unwrap().shape.dim(2).and_then(|d| tract_onnx::tract_hir::infer::Factoid::concretize(&d));
            let s = side.and_then(|d| d.to_i64().ok()).expect("a fixed input size") as usize;
            m.set_input_fact(0, f32::fact([1, 3, s, s]).into()).unwrap();
            let image: Vec<f32> = (0..3 * s * s).map(|i| ((i * 7919 % 255) as f32 / 64.0) - 2.0).collect();
            let mut inputs = tvec!(Tensor::from_shape(&[1, 3, s, s], &image).unwrap().into());
            if m.input_outlets().unwrap().len() > 1 {
                let init = p.graph.as_ref().unwrap().initializer.iter().find(|t| t.name == msf_models::interface::SLOTS_DEFAULT).expect("slots_init default");
                let dims: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
                let k_d = &dims[dims.len() - 2..];
                m.set_input_fact(1, f32::fact([1, k_d[0], k_d[1]]).into()).unwrap();
                inputs.push(Tensor::zero::<f32>(&[1, k_d[0], k_d[1]]).unwrap().into());
            }
            let plan = m.into_optimized().unwrap().into_runnable().unwrap();
            plan.run(inputs).unwrap()[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
        };
        let reference = slots(fp32);
        let err = |v: Vec<f32>| v.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let (dequantised, integer) = (err(slots(&rewritten)), err(slots(int8)));
        // Measured: 0.0032 and 0.0031 (the weights' rounding dominates); scales on the wrong axis
        // do not even type-check.
        assert!(dequantised < 0.05 && dequantised <= 2.0 * integer + 1e-4, "max |slots - fp32|: dequantised {dequantised}, integer {integer}");
    }
}
