//! The node and initializer builder every block writes into, and the op-level helpers the blocks
//! share (LayerNorm with its opset < 17 decomposition, exact GELU, int8 matmul, batch shapes).
//!
//! Node and fresh tensor names are numbered in build order, so the same blocks built in the same
//! order give the same bytes.

use super::Precision;
use msf_models::onnx::{attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, NodeProto, TensorProto};

/// Accumulates nodes and initializers with unique names.
pub(super) struct Builder {
    pub(super) opset: i64,
    pub(super) precision: Precision,
    /// Largest magnitude of an int8 weight (127, or 63 for 7-bit weights).
    pub(super) int8_weight_max: f32,
    pub(super) nodes: Vec<NodeProto>,
    pub(super) inits: Vec<TensorProto>,
    next: usize,
}

pub(super) fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}
pub(super) fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
}
pub(super) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
}

/// A float tensor initializer with raw little-endian data.
pub fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![data.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// Row-major transpose of a (rows, cols) matrix: torch `Linear` weights are (out, in), `MatMul` wants (in, out).
pub(super) fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

impl Builder {
    pub(super) fn new(opset: i64, precision: Precision) -> Builder {
        Builder { opset, precision, int8_weight_max: 127.0, nodes: vec![], inits: vec![], next: 0 }
    }

    pub(super) fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    /// Add a node with one output named `out` (or a fresh name) and return that name.
    pub(super) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: Option<&str>) -> String {
        let out = out.map(str::to_string).unwrap_or_else(|| self.fresh(op));
        self.op_n(op, inputs, attrs, &[out.as_str()]);
        out
    }

    pub(super) fn op_n(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, outputs: &[&str]) {
        let name = self.fresh(&format!("n_{op}"));
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
    }

    pub(super) fn init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone().expect("initializers are named");
        self.inits.push(t);
        name
    }

    pub(super) fn f32(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        self.init(tensor_f32(name, dims, &data))
    }

    pub(super) fn scalar(&mut self, v: f32) -> String {
        let name = self.fresh("c");
        self.init(tensor_f32(&name, &[], &[v]))
    }

    pub(super) fn i64s(&mut self, v: &[i64]) -> String {
        let name = self.fresh("shape");
        self.init(tensor_i64(&name, v))
    }

    pub(super) fn mm(&mut self, a: &str, b: &str) -> String {
        self.op("MatMul", &[a, b], vec![], None)
    }
    pub(super) fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![], None)
    }
    pub(super) fn sub(&mut self, a: &str, b: &str) -> String {
        self.op("Sub", &[a, b], vec![], None)
    }
    pub(super) fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![], None)
    }
    pub(super) fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.i64s(shape);
        self.op("Reshape", &[x, &s], vec![], None)
    }
    pub(super) fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![attr_ints("perm", perm)], None)
    }

    /// `x @ wt` with `wt` (in, out) quantised to int8 per output column and `x` to uint8 at run
    /// time: the node pattern onnxruntime fuses into one `DynamicQuantizeMatMul` kernel.
    pub(super) fn int8_matmul(&mut self, x: &str, name: &str, wt: &[f32], i: usize, o: usize) -> String {
        let mut scale = vec![0f32; o];
        for r in 0..i {
            for (c, s) in scale.iter_mut().enumerate() {
                *s = s.max(wt[r * o + c].abs());
            }
        }
        for s in &mut scale {
            *s = if *s > 0.0 { *s / self.int8_weight_max } else { 1.0 };
        }
        let m = self.int8_weight_max;
        let q: Vec<u8> = wt.iter().enumerate().map(|(k, v)| (v / scale[k % o]).round().clamp(-m, m) as i8 as u8).collect();
        let wq = self.init(TensorProto {
            name: Some(format!("{name}.weight_q")),
            dims: vec![i as i64, o as i64],
            data_type: Some(DataType::Int8 as i32),
            raw_data: Some(q),
            ..Default::default()
        });
        let ws = self.f32(&format!("{name}.weight_scale"), &[o], scale);
        let [xq, xs, xzp] = [self.fresh("xq"), self.fresh("xscale"), self.fresh("xzero")];
        self.op_n("DynamicQuantizeLinear", &[x], vec![], &[&xq, &xs, &xzp]);
        let acc = self.op("MatMulInteger", &[&xq, &wq, &xzp], vec![], None);
        let accf = self.op("Cast", &[&acc], vec![attr_i("to", DataType::Float as i64)], None);
        let s = self.mul(&xs, &ws);
        self.mul(&accf, &s)
    }

    /// LayerNormalization over the last axis (native from opset 17, decomposed before).
    pub(super) fn layer_norm(&mut self, x: &str, w: &str, b: &str, eps: f32) -> String {
        if self.opset >= 17 {
            return self.op("LayerNormalization", &[x, w, b], vec![attr_i("axis", -1), attr_f("epsilon", eps)], None);
        }
        let mean = self.reduce_mean_last(x);
        let d = self.sub(x, &mean);
        let sq = self.mul(&d, &d);
        let var = self.reduce_mean_last(&sq);
        let e = self.scalar(eps);
        let ve = self.add(&var, &e);
        let sd = self.op("Sqrt", &[&ve], vec![], None);
        let n = self.op("Div", &[&d, &sd], vec![], None);
        let nw = self.mul(&n, w);
        self.add(&nw, b)
    }

    fn reduce_mean_last(&mut self, x: &str) -> String {
        // ReduceMean takes `axes` as an attribute before opset 18 (only used below 17 here).
        self.op("ReduceMean", &[x], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)], None)
    }

    /// Exact (erf) GELU in the Div→Erf→Add→Mul→Mul form that onnxruntime and tract fuse.
    pub(super) fn gelu(&mut self, x: &str) -> String {
        let s2 = self.scalar(std::f32::consts::SQRT_2);
        let d = self.op("Div", &[x, &s2], vec![], None);
        let e = self.op("Erf", &[&d], vec![], None);
        let one = self.scalar(1.0);
        let a = self.add(&e, &one);
        let m = self.mul(x, &a);
        let half = self.scalar(0.5);
        self.mul(&m, &half)
    }

    /// `[B]` as a 1-D int64 tensor, B read from `like`'s first dimension.
    pub(super) fn batch_dim(&mut self, like: &str) -> String {
        let shape = self.op("Shape", &[like], vec![], None);
        let zero = self.i64s(&[0]);
        self.op("Gather", &[&shape, &zero], vec![attr_i("axis", 0)], None)
    }

    /// `[B] ++ rest` as a 1-D int64 tensor, with B read from `like`'s first dimension.
    pub(super) fn batch_shape(&mut self, like: &str, rest: &[i64]) -> String {
        let b = self.batch_dim(like);
        let rest = self.i64s(rest);
        self.op("Concat", &[&b, &rest], vec![attr_i("axis", 0)], None)
    }

    pub(super) fn split_last(&mut self, x: &str, sizes: &[i64]) -> Vec<String> {
        let s = self.i64s(sizes);
        let outs: Vec<String> = (0..sizes.len()).map(|_| self.fresh("Split")).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.op_n("Split", &[x, &s], vec![attr_i("axis", -1)], &refs);
        outs
    }
}
