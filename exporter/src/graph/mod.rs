//! Build the ONNX decomposition graph: image → slots, attention, masks (spec §2).
//!
//! The graph is written op by op so that it stays portable (standard ONNX ops, opset 13..=21) and
//! lean: weights are pre-transposed for `MatMul`, the attention scales and LayerScale gammas are
//! folded into the adjacent linear layers, and the GRU's r/z gates share one activation.

mod builder;

use crate::spec::ModelSpec;
use builder::{attr_f, attr_i, attr_s, transpose, Builder};
use msf_models::interface::{INPUT_IMAGE, INPUT_SLOTS, OUTPUT_ATTN, OUTPUT_MASKS, OUTPUT_SLOTS};
use msf_models::keys;
use msf_models::onnx::{tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, TensorShapeProto, TypeProto, ValueInfoProto};
use msf_models::{ModelConfig, Preprocess};

pub use builder::tensor_f32;

/// Supported opset range: 13 brings per-axis Softmax and input-form Split/ReduceSum;
/// `LayerNormalization` is used natively from 17 and decomposed below it.
pub const MIN_OPSET: i64 = 13;
pub const MAX_OPSET: i64 = 21;
pub const DEFAULT_OPSET: i64 = 17;

/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// Numeric precision of the exported graph's heavy layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything in float32 (the reference).
    #[default]
    Fp32,
    /// The ViT and projection linear layers as dynamically quantised int8 matmuls: weights int8
    /// symmetric per output channel, activations uint8 per tensor, quantised at run time
    /// (`DynamicQuantizeLinear` → `MatMulInteger` → rescale). LayerNorms, softmaxes, the patch
    /// embedding and the whole slot attention stay float32: they decide the masks.
    Int8,
}

impl Precision {
    /// The value of the `msf.precision` metadata key.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

#[derive(Clone, Debug)]
pub struct GraphOptions {
    pub opset: i64,
    pub precision: Precision,
    /// Add the `slots_init` input (initial slots, e.g. the previous frame's).
    pub slots_in: bool,
    /// Keep the bicubic image→backbone resize inside the graph.
    pub resize_in_graph: bool,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions { opset: DEFAULT_OPSET, precision: Precision::Fp32, slots_in: false, resize_in_graph: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("opset {0} is not supported (use {MIN_OPSET}..={MAX_OPSET})")]
    Opset(i64),
}

fn w<'a>(spec: &'a ModelSpec, key: &str) -> &'a [f32] {
    spec.weights.get(key).unwrap_or_else(|| panic!("spec validated `{key}`")).as_slice()
}

fn value_info(name: &str, elem: DataType, dims: &[Result<usize, &str>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Ok(v) => tensor_shape_proto::dimension::Value::DimValue(*v as i64),
                Err(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Build the decomposition graph for a validated checkpoint.
pub fn build_graph(spec: &ModelSpec, pre: &Preprocess, opts: &GraphOptions) -> Result<GraphProto, GraphError> {
    if !(MIN_OPSET..=MAX_OPSET).contains(&opts.opset) {
        return Err(GraphError::Opset(opts.opset));
    }
    let c: &ModelConfig = &spec.config;
    let mut g = Builder::new(opts.opset, opts.precision);
    let (e, grid, heads) = (c.vit.embed_dim as i64, c.vit.grid as i64, c.vit.num_heads as i64);
    let head_dim = (c.vit.embed_dim / c.vit.num_heads) as i64;
    let (k_slots, d) = (c.slots.num_slots, c.slots.slot_dim);
    let ln = |g: &mut Builder, x: &str, wk: &str, bk: &str, eps: f32, n: usize| {
        let wn = g.f32(wk, &[n], w(spec, wk).to_vec());
        let bn = g.f32(bk, &[n], w(spec, bk).to_vec());
        g.layer_norm(x, &wn, &bn, eps)
    };

    // Bicubic resize to the backbone's input (PyTorch bicubic: a = −0.75, half-pixel centres).
    let mut x = INPUT_IMAGE.to_string();
    if opts.resize_in_graph {
        let s = pre.backbone_size as f32 / pre.image_size as f32;
        let scales = g.f32("resize_scales", &[4], vec![1.0, 1.0, s, s]);
        x = g.op(
            "Resize",
            &[&x, "", &scales],
            vec![
                attr_s("mode", "cubic"),
                attr_f("cubic_coeff_a", pre.cubic_a),
                attr_s("coordinate_transformation_mode", "half_pixel"),
            ],
            None,
        );
    }

    // Patch embedding (a p×p stride-p conv) as patchify + one matmul: (B, 3, G·p, G·p) →
    // (B, G², 3·p·p) @ Wᵀ → tokens (B, G², E). Written this way the residual stream stays
    // token-major: from a conv, tract keeps the whole ViT channel-major, where every LayerNorm
    // reduces over a strided axis and its mean subtraction falls back to a generic broadcast.
    let p = c.vit.patch_size;
    let (pi, gi) = (p as i64, grid);
    let patches = g.reshape(&x, &[0, 3, gi, pi, gi, pi]);
    let patches = g.transpose(&patches, &[0, 2, 4, 1, 3, 5]);
    let patches = g.reshape(&patches, &[0, gi * gi, 3 * pi * pi]);
    let tokens = g.linear(&patches, keys::VIT_PATCH_WEIGHT.trim_end_matches(".weight"), w(spec, keys::VIT_PATCH_WEIGHT), Some(w(spec, keys::VIT_PATCH_BIAS)), (c.vit.embed_dim, 3 * p * p), None);
    // Prepend the class token (broadcast to the batch) and add the positional embedding.
    let cls = g.f32(keys::VIT_CLS_TOKEN, &[1, 1, c.vit.embed_dim], w(spec, keys::VIT_CLS_TOKEN).to_vec());
    let cls_shape = g.batch_shape(&tokens, &[1, e]);
    let cls_b = g.op("Expand", &[&cls, &cls_shape], vec![], None);
    let seq = g.op("Concat", &[&cls_b, &tokens], vec![attr_i("axis", 1)], None);
    let n_tok = c.vit.num_tokens() + 1;
    let pos = g.f32(keys::VIT_POS_EMBED, &[1, n_tok, c.vit.embed_dim], w(spec, keys::VIT_POS_EMBED).to_vec());
    let mut h = g.add(&seq, &pos);

    let ed = c.vit.embed_dim;
    let attn_scale = (head_dim as f32).powf(-0.5);
    for i in 0..c.vit.depth {
        let bk = |p: &str| keys::vit_block(i, p);
        // Attention: q, k, v from the fused qkv weight, the 1/√d scale folded into q.
        let a_in = ln(&mut g, &h, &bk("norm1.weight"), &bk("norm1.bias"), c.vit.ln_eps, ed);
        // One (ed → 3·ed) matmul, then a split: one large GEMM runs faster than three small ones.
        let mut scale = vec![attn_scale; ed];
        scale.resize(3 * ed, 1.0);
        let qkv = g.linear(&a_in, &bk("attn.qkv"), w(spec, &bk("attn.qkv.weight")), Some(w(spec, &bk("attn.qkv.bias"))), (3 * ed, ed), Some(&scale));
        let [q, k, v]: [String; 3] = g.split_last(&qkv, &[e, e, e]).try_into().expect("three parts");
        let q = g.reshape(&q, &[0, 0, heads, head_dim]);
        let q = g.transpose(&q, &[0, 2, 1, 3]); // (B, H, N, hd)
        let k = g.reshape(&k, &[0, 0, heads, head_dim]);
        let k = g.transpose(&k, &[0, 2, 3, 1]); // (B, H, hd, N)
        let v = g.reshape(&v, &[0, 0, heads, head_dim]);
        let v = g.transpose(&v, &[0, 2, 1, 3]);
        let logits = g.mm(&q, &k);
        let att = g.op("Softmax", &[&logits], vec![attr_i("axis", -1)], None);
        let o = g.mm(&att, &v);
        let o = g.transpose(&o, &[0, 2, 1, 3]);
        let o = g.reshape(&o, &[0, 0, e]);
        // LayerScale gamma folded into the output projection.
        let ls1 = w(spec, &bk("ls1.gamma")).to_vec();
        let o = g.linear(&o, &bk("attn.proj"), w(spec, &bk("attn.proj.weight")), Some(w(spec, &bk("attn.proj.bias"))), (ed, ed), Some(&ls1));
        h = g.add(&h, &o);
        // MLP with LayerScale folded into fc2.
        let m_in = ln(&mut g, &h, &bk("norm2.weight"), &bk("norm2.bias"), c.vit.ln_eps, ed);
        let m = c.vit.mlp_dim;
        let f1 = g.linear(&m_in, &bk("mlp.fc1"), w(spec, &bk("mlp.fc1.weight")), Some(w(spec, &bk("mlp.fc1.bias"))), (m, ed), None);
        let f1 = g.gelu(&f1);
        let ls2 = w(spec, &bk("ls2.gamma")).to_vec();
        let f2 = g.linear(&f1, &bk("mlp.fc2"), w(spec, &bk("mlp.fc2.weight")), Some(w(spec, &bk("mlp.fc2.bias"))), (ed, m), Some(&ls2));
        h = g.add(&h, &f2);
    }
    let h = ln(&mut g, &h, keys::VIT_NORM_WEIGHT, keys::VIT_NORM_BIAS, c.vit.ln_eps, ed);
    // Drop the class token.
    let starts = g.i64s(&[1]);
    let ends = g.i64s(&[i64::MAX]);
    let axes = g.i64s(&[1]);
    let feats = g.op("Slice", &[&h, &starts, &ends, &axes], vec![], None);

    // Projection MLP.
    let pc = &c.project;
    let f = ln(&mut g, &feats, keys::PROJECT_LN_WEIGHT, keys::PROJECT_LN_BIAS, pc.ln_eps, pc.in_dim);
    let f = g.linear(&f, "m.encode_project.1", w(spec, keys::PROJECT_FC1_WEIGHT), Some(w(spec, keys::PROJECT_FC1_BIAS)), (pc.hidden_dim, pc.in_dim), None);
    let f = g.gelu(&f);
    let f = g.linear(&f, "m.encode_project.3", w(spec, keys::PROJECT_FC2_WEIGHT), Some(w(spec, keys::PROJECT_FC2_BIAS)), (pc.out_dim, pc.hidden_dim), None);

    // Slot attention: keys and values once, then `iters` GRU-refined rounds.
    let sc = &c.slots;
    let kv = ln(&mut g, &f, keys::SA_NORM_KV_WEIGHT, keys::SA_NORM_KV_BIAS, sc.ln_eps, pc.out_dim);
    let sa_k = g.linear(&kv, "m.aggregat.proj_k", w(spec, keys::SA_PROJ_K), None, (d, pc.out_dim), None);
    let sa_kt = g.transpose(&sa_k, &[0, 2, 1]); // (B, D, N)
    let sa_v = g.linear(&kv, "m.aggregat.proj_v", w(spec, keys::SA_PROJ_V), None, (d, pc.out_dim), None);

    let mean = w(spec, keys::SLOTS_MEAN).to_vec();
    let mut slots = if opts.slots_in {
        // The learned mean is the input's default (initializer with the input's name).
        let init = g.f32(INPUT_SLOTS, &[1, k_slots, d], mean);
        let shape = g.batch_shape(&x, &[k_slots as i64, d as i64]);
        g.op("Expand", &[&init, &shape], vec![], None)
    } else {
        let init = g.f32(keys::SLOTS_MEAN, &[1, k_slots, d], mean);
        let shape = g.batch_shape(&x, &[k_slots as i64, d as i64]);
        g.op("Expand", &[&init, &shape], vec![], None)
    };

    // Weights shared by all iterations.
    let q_scale = vec![(d as f32).powf(-0.5); d];
    let nq_w = g.f32(keys::SA_NORM_Q_WEIGHT, &[d], w(spec, keys::SA_NORM_Q_WEIGHT).to_vec());
    let nq_b = g.f32(keys::SA_NORM_Q_BIAS, &[d], w(spec, keys::SA_NORM_Q_BIAS).to_vec());
    let wq = g.f32("m.aggregat.proj_q.weight_t_scaled", &[d, d], {
        let mut t = transpose(w(spec, keys::SA_PROJ_Q), d, d);
        t.iter_mut().for_each(|v| *v *= q_scale[0]);
        t
    });
    let w_ih = g.f32("m.aggregat.rnn.weight_ih_t", &[d, 3 * d], transpose(w(spec, keys::SA_GRU_W_IH), 3 * d, d));
    let w_hh = g.f32("m.aggregat.rnn.weight_hh_t", &[d, 3 * d], transpose(w(spec, keys::SA_GRU_W_HH), 3 * d, d));
    let b_ih = g.f32(keys::SA_GRU_B_IH, &[3 * d], w(spec, keys::SA_GRU_B_IH).to_vec());
    let b_hh = g.f32(keys::SA_GRU_B_HH, &[3 * d], w(spec, keys::SA_GRU_B_HH).to_vec());
    let n2_w = g.f32(keys::SA_NORM2_WEIGHT, &[d], w(spec, keys::SA_NORM2_WEIGHT).to_vec());
    let n2_b = g.f32(keys::SA_NORM2_BIAS, &[d], w(spec, keys::SA_NORM2_BIAS).to_vec());
    let ffn1_w = g.f32("m.aggregat.ffn.0.weight_t", &[d, sc.ffn_dim], transpose(w(spec, keys::SA_FFN1_WEIGHT), sc.ffn_dim, d));
    let ffn1_b = g.f32(keys::SA_FFN1_BIAS, &[sc.ffn_dim], w(spec, keys::SA_FFN1_BIAS).to_vec());
    let ffn2_w = g.f32("m.aggregat.ffn.3.weight_t", &[sc.ffn_dim, d], transpose(w(spec, keys::SA_FFN2_WEIGHT), d, sc.ffn_dim));
    let ffn2_b = g.f32(keys::SA_FFN2_BIAS, &[d], w(spec, keys::SA_FFN2_BIAS).to_vec());
    let eps = g.scalar(sc.attn_eps);
    let sum_axes = g.i64s(&[2]);

    let mut attn = String::new();
    for it in 0..sc.iters {
        let last = it + 1 == sc.iters;
        let prev = slots.clone();
        let qn = g.layer_norm(&slots, &nq_w, &nq_b, sc.ln_eps);
        let q = g.mm(&qn, &wq);
        let logits = g.mm(&q, &sa_kt); // (B, K, N)
        // Softmax over the slot axis: slots compete for tokens.
        let a0 = g.op("Softmax", &[&logits], vec![attr_i("axis", 1)], None);
        let denom = g.op("ReduceSum", &[&a0, &sum_axes], vec![attr_i("keepdims", 1)], None);
        let denom = g.add(&denom, &eps);
        let a = g.op("Div", &[&a0, &denom], vec![], None);
        let u = g.mm(&a, &sa_v); // (B, K, D)
        // GRUCell (gate order r, z, n): h' = n + z ∘ (h − n).
        let gi = g.mm(&u, &w_ih);
        let gi = g.add(&gi, &b_ih);
        let gh = g.mm(&prev, &w_hh);
        let gh = g.add(&gh, &b_hh);
        let gi_parts = g.split_last(&gi, &[2 * d as i64, d as i64]);
        let gh_parts = g.split_last(&gh, &[2 * d as i64, d as i64]);
        let rz = g.add(&gi_parts[0], &gh_parts[0]);
        let rz = g.op("Sigmoid", &[&rz], vec![], None);
        let rz_parts = g.split_last(&rz, &[d as i64, d as i64]);
        let rn = g.mul(&rz_parts[0], &gh_parts[1]);
        let n = g.add(&gi_parts[1], &rn);
        let n = g.op("Tanh", &[&n], vec![], None);
        let hn = g.sub(&prev, &n);
        let zhn = g.mul(&rz_parts[1], &hn);
        let y = g.add(&n, &zhn);
        // Residual FFN.
        let z = g.layer_norm(&y, &n2_w, &n2_b, sc.ln_eps);
        let f1 = g.mm(&z, &ffn1_w);
        let f1 = g.add(&f1, &ffn1_b);
        let f1 = g.gelu(&f1);
        let f2 = g.mm(&f1, &ffn2_w);
        let f2 = g.add(&f2, &ffn2_b);
        slots = g.op("Add", &[&y, &f2], vec![], if last { Some(OUTPUT_SLOTS) } else { None });
        if last {
            attn = a0;
        }
    }
    let attn_shape = g.i64s(&[0, 0, grid, grid]);
    let attn = g.op("Reshape", &[&attn, &attn_shape], vec![], Some(OUTPUT_ATTN));

    // Masks: bilinear upsample of the attention to the image size, argmax over slots.
    let up = pre.image_size as f32 / c.vit.grid as f32;
    let mscales = g.f32("mask_scales", &[4], vec![1.0, 1.0, up, up]);
    let big = g.op(
        "Resize",
        &[&attn, "", &mscales],
        vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "half_pixel")],
        None,
    );
    g.op("ArgMax", &[&big], vec![attr_i("axis", 1), attr_i("keepdims", 0)], Some(OUTPUT_MASKS));

    let s_in = pre.graph_input_size();
    let mut inputs = vec![value_info(INPUT_IMAGE, DataType::Float, &[Err(BATCH_DIM), Ok(3), Ok(s_in), Ok(s_in)])];
    if opts.slots_in {
        inputs.push(value_info(INPUT_SLOTS, DataType::Float, &[Err(BATCH_DIM), Ok(k_slots), Ok(d)]));
    }
    let m = pre.image_size;
    let outputs = vec![
        value_info(OUTPUT_SLOTS, DataType::Float, &[Err(BATCH_DIM), Ok(k_slots), Ok(d)]),
        value_info(OUTPUT_ATTN, DataType::Float, &[Err(BATCH_DIM), Ok(k_slots), Ok(c.vit.grid), Ok(c.vit.grid)]),
        value_info(OUTPUT_MASKS, DataType::Int64, &[Err(BATCH_DIM), Ok(m), Ok(m)]),
    ];
    Ok(GraphProto {
        name: Some(format!("msf_{}", c.kind.as_str().replace('-', "_"))),
        node: g.nodes,
        initializer: g.inits,
        input: inputs,
        output: outputs,
        doc_string: Some("MSF object decomposition: image → slots, attention, masks".into()),
        ..Default::default()
    })
}
