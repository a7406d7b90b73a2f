//! Slot Attention (`m.aggregat.*`) with its initial slots (`m.initializ.mean`): keys and values
//! once, then `iters` rounds of softmax-over-slots attention, GRU update and residual FFN.
//!
//! Its weights are shared by every round, so they are written once as initializers (the q
//! projection pre-transposed and pre-scaled by 1/√D, the GRU's r/z gates in one activation).

use super::builder::{attr_i, transpose, Builder};
use super::weights::{LayerNorm, LayerNormParams, Linear, Param, Weights};
use super::GraphError;
use msf_models::interface::{INPUT_SLOTS, OUTPUT_SLOTS, SLOTS_DEFAULT};
use msf_models::SlotConfig;

/// The learned mean, broadcast to the batch (no noise at eval), or the caller's `slots_init`.
pub(super) struct InitialSlots<'a> {
    mean: Param<'a>,
    num_slots: usize,
    slot_dim: usize,
    as_input: bool,
}

impl<'a> InitialSlots<'a> {
    /// `vb`: `keys::SLOTS_PREFIX`. With `as_input`, the graph takes `slots_init` (N, K, D): N = B
    /// feeds e.g. the previous frame's slots, N = 0 takes the learned mean (the initializer
    /// `SLOTS_DEFAULT`). A plain input rather than an initializer-shadowed one, which onnxruntime
    /// warns about and leaves out of a session's inputs.
    pub(super) fn new(vb: &Weights<'a>, c: &SlotConfig, as_input: bool) -> Result<InitialSlots<'a>, GraphError> {
        let mut mean = vb.param("mean")?;
        if as_input {
            mean.key = SLOTS_DEFAULT.to_string();
        }
        Ok(InitialSlots { mean, num_slots: c.num_slots, slot_dim: c.slot_dim, as_input })
    }

    /// (B, K, D), with B read from `batch_like`'s first dimension.
    pub(super) fn emit(&self, g: &mut Builder, batch_like: &str) -> String {
        let (k, d) = (self.num_slots, self.slot_dim);
        let init = self.mean.emit(g, &[1, k, d]);
        let shape = g.batch_shape(batch_like, &[k as i64, d as i64]);
        let learned = g.op("Expand", &[&init, &shape], vec![], None);
        if !self.as_input {
            return learned;
        }
        // The first B rows of [slots_init; learned]: the caller's when N = B, the mean when N = 0.
        // No control flow (If), which the contract refuses.
        let rows = g.op("Concat", &[INPUT_SLOTS, &learned], vec![attr_i("axis", 0)], None);
        let b = g.batch_dim(batch_like);
        let (zero, axis) = (g.i64s(&[0]), g.i64s(&[0]));
        g.op("Slice", &[&rows, &zero, &b, &axis], vec![], None)
    }
}

pub(super) struct SlotAttention<'a> {
    norm_kv: LayerNorm<'a>,
    proj_k: Linear<'a>,
    proj_v: Linear<'a>,
    norm_q: LayerNorm<'a>,
    proj_q: Param<'a>,
    /// GRUCell, PyTorch gate order (r, z, n).
    w_ih: Param<'a>,
    w_hh: Param<'a>,
    b_ih: Param<'a>,
    b_hh: Param<'a>,
    norm2: LayerNorm<'a>,
    /// FFN `Sequential(Linear, GELU, Dropout, Linear)`: weight and bias of indices 0 and 3.
    ffn1: [Param<'a>; 2],
    ffn2: [Param<'a>; 2],
    c: SlotConfig,
}

/// The initializers every round reads.
struct Shared {
    norm_q: LayerNormParams,
    wq: String,
    w_ih: String,
    w_hh: String,
    b_ih: String,
    b_hh: String,
    norm2: LayerNormParams,
    ffn1: [String; 2],
    ffn2: [String; 2],
    eps: String,
    sum_axes: String,
}

impl<'a> SlotAttention<'a> {
    /// `vb`: `keys::SA_PREFIX`; `in_dim`: width of the projected features.
    pub(super) fn new(vb: &Weights<'a>, c: &SlotConfig, in_dim: usize) -> Result<SlotAttention<'a>, GraphError> {
        let (d, eps) = (c.slot_dim, c.ln_eps);
        let pair = |layer: &str| -> Result<[Param<'a>; 2], GraphError> { Ok([vb.pp(layer).param("weight")?, vb.pp(layer).param("bias")?]) };
        Ok(SlotAttention {
            norm_kv: LayerNorm::new(&vb.pp("norm1kv"), eps)?,
            proj_k: Linear::no_bias(&vb.pp("proj_k"), d, in_dim)?,
            proj_v: Linear::no_bias(&vb.pp("proj_v"), d, in_dim)?,
            norm_q: LayerNorm::new(&vb.pp("norm1q"), eps)?,
            proj_q: vb.param("proj_q.weight")?,
            w_ih: vb.param("rnn.weight_ih")?,
            w_hh: vb.param("rnn.weight_hh")?,
            b_ih: vb.param("rnn.bias_ih")?,
            b_hh: vb.param("rnn.bias_hh")?,
            norm2: LayerNorm::new(&vb.pp("norm2"), eps)?,
            ffn1: pair("ffn.0")?,
            ffn2: pair("ffn.3")?,
            c: c.clone(),
        })
    }

    /// Features (B, N, in_dim) → slots (B, K, D), named `slots`, and the last round's
    /// softmax-over-slots attention (B, K, N). `batch_like` gives the initial slots their batch.
    pub(super) fn emit(&self, g: &mut Builder, feats: &str, init: &InitialSlots, batch_like: &str) -> (String, String) {
        let kv = self.norm_kv.emit(g, feats);
        let k = self.proj_k.emit(g, &kv);
        let kt = g.transpose(&k, &[0, 2, 1]); // (B, D, N)
        let v = self.proj_v.emit(g, &kv);
        let mut slots = init.emit(g, batch_like);
        let w = self.shared(g);
        let mut attn = String::new();
        for it in 0..self.c.iters {
            let last = it + 1 == self.c.iters;
            (slots, attn) = self.round(g, &w, &slots, &kt, &v, if last { Some(OUTPUT_SLOTS) } else { None });
        }
        (slots, attn)
    }

    fn shared(&self, g: &mut Builder) -> Shared {
        let (d, f) = (self.c.slot_dim, self.c.ffn_dim);
        let norm_q = self.norm_q.params(g);
        let q_scale = (d as f32).powf(-0.5);
        let mut wq = transpose(self.proj_q.data, d, d);
        wq.iter_mut().for_each(|v| *v *= q_scale);
        Shared {
            norm_q,
            wq: g.f32(&format!("{}_t_scaled", self.proj_q.key), &[d, d], wq),
            w_ih: self.w_ih.emit_transposed(g, 3 * d, d),
            w_hh: self.w_hh.emit_transposed(g, 3 * d, d),
            b_ih: self.b_ih.emit(g, &[3 * d]),
            b_hh: self.b_hh.emit(g, &[3 * d]),
            norm2: self.norm2.params(g),
            ffn1: [self.ffn1[0].emit_transposed(g, f, d), self.ffn1[1].emit(g, &[f])],
            ffn2: [self.ffn2[0].emit_transposed(g, d, f), self.ffn2[1].emit(g, &[d])],
            eps: g.scalar(self.c.attn_eps),
            sum_axes: g.i64s(&[2]),
        }
    }

    /// One round: slots (B, K, D) → slots (named `out`), attention a0 (B, K, N).
    fn round(&self, g: &mut Builder, w: &Shared, prev: &str, kt: &str, v: &str, out: Option<&str>) -> (String, String) {
        let d = self.c.slot_dim as i64;
        let qn = w.norm_q.emit(g, prev);
        let q = g.mm(&qn, &w.wq);
        let logits = g.mm(&q, kt); // (B, K, N)
        // Softmax over the slot axis: slots compete for tokens.
        let a0 = g.op("Softmax", &[&logits], vec![attr_i("axis", 1)], None);
        let denom = g.op("ReduceSum", &[&a0, &w.sum_axes], vec![attr_i("keepdims", 1)], None);
        let denom = g.add(&denom, &w.eps);
        let a = g.op("Div", &[&a0, &denom], vec![], None);
        let u = g.mm(&a, v); // (B, K, D)
        // GRUCell (gate order r, z, n): h' = n + z ∘ (h − n).
        let gi = g.mm(&u, &w.w_ih);
        let gi = g.add(&gi, &w.b_ih);
        let gh = g.mm(prev, &w.w_hh);
        let gh = g.add(&gh, &w.b_hh);
        let gi_parts = g.split_last(&gi, &[2 * d, d]);
        let gh_parts = g.split_last(&gh, &[2 * d, d]);
        let rz = g.add(&gi_parts[0], &gh_parts[0]);
        let rz = g.op("Sigmoid", &[&rz], vec![], None);
        let rz_parts = g.split_last(&rz, &[d, d]);
        let rn = g.mul(&rz_parts[0], &gh_parts[1]);
        let n = g.add(&gi_parts[1], &rn);
        let n = g.op("Tanh", &[&n], vec![], None);
        let hn = g.sub(prev, &n);
        let zhn = g.mul(&rz_parts[1], &hn);
        let y = g.add(&n, &zhn);
        // Residual FFN.
        let z = w.norm2.emit(g, &y);
        let f1 = g.mm(&z, &w.ffn1[0]);
        let f1 = g.add(&f1, &w.ffn1[1]);
        let f1 = g.gelu(&f1);
        let f2 = g.mm(&f1, &w.ffn2[0]);
        let f2 = g.add(&f2, &w.ffn2[1]);
        (g.op("Add", &[&y, &f2], vec![], out), a0)
    }
}
