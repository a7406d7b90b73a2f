//! Slot Attention with a GRU update and a residual FFN (`m.aggregat.*`), and the slot
//! initialiser (`m.initializ.*`: learned mean; learned log-std noise in training only).

use super::gelu;
use msf_models::SlotConfig;
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug)]
pub struct Initializer {
    pub mean: Tensor,
    pub logstd: Tensor,
}

impl Initializer {
    pub fn new(p: &nn::Path, c: &SlotConfig) -> Initializer {
        let shape = [1, c.num_slots as i64, c.slot_dim as i64];
        // Upstream: xavier-uniform mean, std = dim^-½ as the initial learned noise scale.
        let bound = (6.0 / (c.num_slots + c.slot_dim) as f64).sqrt();
        let logstd = -0.5 * (c.slot_dim as f64).ln();
        Initializer { mean: p.var("mean", &shape, nn::Init::Uniform { lo: -bound, up: bound }), logstd: p.var("logstd", &shape, nn::Init::Const(logstd)) }
    }

    /// Initial slots for `batch` images: the mean, plus `exp(logstd)`-scaled noise in training.
    pub fn slots(&self, batch: i64, train: bool) -> Tensor {
        let mean = self.mean.expand([batch, -1, -1], false);
        if train {
            &mean + self.logstd.exp() * mean.randn_like()
        } else {
            mean.copy()
        }
    }
}

/// Upstream's `SlotAttention(dropout=0.01)`: dropout inside the FFN only.
const FFN_DROPOUT: f64 = 0.01;

#[derive(Debug)]
pub struct SlotAttention {
    norm_q: nn::LayerNorm,
    proj_q: nn::Linear,
    norm_kv: nn::LayerNorm,
    proj_k: nn::Linear,
    proj_v: nn::Linear,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    norm2: nn::LayerNorm,
    ffn1: nn::Linear,
    ffn2: nn::Linear,
    iters: usize,
    eps: f64,
}

impl SlotAttention {
    /// `in_dim`: width of the projected features.
    pub fn new(p: &nn::Path, c: &SlotConfig, in_dim: usize) -> SlotAttention {
        let (d, f, i) = (c.slot_dim as i64, c.ffn_dim as i64, in_dim as i64);
        let ln = nn::LayerNormConfig { eps: c.ln_eps as f64, ..Default::default() };
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        let rnn = p / "rnn";
        let bound = 1.0 / (d as f64).sqrt();
        let uniform = nn::Init::Uniform { lo: -bound, up: bound };
        SlotAttention {
            norm_q: nn::layer_norm(p / "norm1q", vec![d], ln),
            proj_q: nn::linear(p / "proj_q", d, d, no_bias),
            norm_kv: nn::layer_norm(p / "norm1kv", vec![i], ln),
            proj_k: nn::linear(p / "proj_k", i, d, no_bias),
            proj_v: nn::linear(p / "proj_v", i, d, no_bias),
            w_ih: rnn.var("weight_ih", &[3 * d, d], uniform),
            w_hh: rnn.var("weight_hh", &[3 * d, d], uniform),
            b_ih: rnn.var("bias_ih", &[3 * d], uniform),
            b_hh: rnn.var("bias_hh", &[3 * d], uniform),
            norm2: nn::layer_norm(p / "norm2", vec![d], ln),
            ffn1: nn::linear(p / "ffn" / "0", d, f, Default::default()),
            ffn2: nn::linear(p / "ffn" / "3", f, d, Default::default()),
            iters: c.iters,
            eps: c.attn_eps as f64,
        }
    }

    /// Features (B, N, in_dim) and initial slots (B, K, D) → slots (B, K, D) and the last
    /// iteration's softmax-over-slots attention (B, K, N).
    pub fn forward(&self, feats: &Tensor, init: &Tensor) -> (Tensor, Tensor) {
        self.forward_t(feats, init, false)
    }

    /// As [`Self::forward`]; in training with upstream's recipe: bi-level truncated
    /// back-propagation (BO-QSA: gradients flow through the last iteration and into the initial
    /// slots only) and dropout 0.01 inside the FFN.
    pub fn forward_t(&self, feats: &Tensor, init: &Tensor, train: bool) -> (Tensor, Tensor) {
        let kv = self.norm_kv.forward(feats);
        let k = self.proj_k.forward(&kv).transpose(1, 2);
        let v = self.proj_v.forward(&kv);
        let (b, n_slots, d) = init.size3().expect("slots are (B, K, D)");
        let scale = (d as f64).powf(-0.5);
        let mut slots = init.shallow_clone();
        let mut attn = None;
        for it in 0..self.iters {
            if train && it + 1 == self.iters {
                slots = slots.detach() + init - init.detach();
            }
            let prev = slots.shallow_clone();
            let q = self.proj_q.forward(&self.norm_q.forward(&slots)) * scale;
            let a0 = q.matmul(&k).softmax(1, Kind::Float);
            let a = &a0 / (a0.sum_dim_intlist([2].as_slice(), true, Kind::Float) + self.eps);
            let u = a.matmul(&v);
            let h = Tensor::gru_cell(&u.reshape([-1, d]), &prev.reshape([-1, d]), &self.w_ih, &self.w_hh, Some(&self.b_ih), Some(&self.b_hh))
                .reshape([b, n_slots, d]);
            let hidden = gelu(&self.ffn1.forward(&self.norm2.forward(&h))).dropout(FFN_DROPOUT, train);
            slots = &h + self.ffn2.forward(&hidden);
            attn = Some(a0);
        }
        (slots, attn.unwrap_or_else(|| Tensor::zeros([b, n_slots, k.size()[2]], (Kind::Float, k.device()))))
    }
}
