//! SLATE's autoregressive transformer decoder (upstream `ARTransformerDecoder`, `m.decode.*`):
//! predicts each VQ token's two code indices from the previous tokens (causal self-attention)
//! and the slots (cross-attention). Training-only: teacher-forced, no sampling loop.

use super::gelu;
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlateConfig {
    /// Token and slot width (upstream: 256).
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    /// Tokens per image (16×16).
    pub tokens: usize,
    /// Codes per group; two groups (the inter- and intra-scale indices).
    pub codes: usize,
}

impl Default for SlateConfig {
    fn default() -> Self {
        SlateConfig { dim: 256, layers: 4, heads: 4, ffn_dim: 1024, tokens: 256, codes: 256 }
    }
}

/// PyTorch `nn.MultiheadAttention(bias=False, batch_first=True)`: `in_proj_weight` (3D, D) and `out_proj.weight`.
#[derive(Debug)]
struct Attention {
    in_proj: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl Attention {
    fn new(p: &nn::Path, d: i64, heads: i64) -> Attention {
        let bound = (6.0 / (d + 3 * d) as f64).sqrt(); // PyTorch: xavier-uniform in_proj
        Attention {
            in_proj: p.var("in_proj_weight", &[3 * d, d], nn::Init::Uniform { lo: -bound, up: bound }),
            out_proj: nn::linear(p / "out_proj", d, d, nn::LinearConfig { bias: false, ..Default::default() }),
            heads,
        }
    }

    fn forward(&self, q: &Tensor, kv: &Tensor, causal: Option<&Tensor>) -> Tensor {
        let d = q.size()[2];
        let w = self.in_proj.chunk(3, 0);
        let (b, nq, nk) = (q.size()[0], q.size()[1], kv.size()[1]);
        let hd = d / self.heads;
        let split = |x: Tensor, n: i64| x.view([b, n, self.heads, hd]).transpose(1, 2);
        let (q, k, v) = (split(q.matmul(&w[0].tr()), nq), split(kv.matmul(&w[1].tr()), nk), split(kv.matmul(&w[2].tr()), nk));
        let mut logits = q.matmul(&k.transpose(-2, -1)) / (hd as f64).sqrt();
        if let Some(mask) = causal {
            logits = logits.masked_fill(mask, f64::NEG_INFINITY);
        }
        let o = logits.softmax(-1, Kind::Float).matmul(&v).transpose(1, 2).reshape([b, nq, d]);
        self.out_proj.forward(&o)
    }
}

/// `nn.TransformerDecoderLayer(norm_first=True, bias=False, activation="gelu", dropout=0)`.
#[derive(Debug)]
struct Layer {
    /// Layer 0's is replaced by the decoder's `norm0` (upstream moves it out).
    norm1: Option<Norm>,
    self_attn: Attention,
    norm2: Norm,
    cross_attn: Attention,
    norm3: Norm,
    linear1: nn::Linear,
    linear2: nn::Linear,
}

/// LayerNorm with a weight and no bias (what `bias=False` gives the decoder's norms).
#[derive(Debug)]
struct Norm {
    weight: Tensor,
    dim: i64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), None::<&Tensor>, 1e-5, false)
    }
}

fn layer_norm(p: nn::Path, d: i64) -> Norm {
    Norm { weight: p.var("weight", &[d], nn::Init::Const(1.0)), dim: d }
}

impl Layer {
    fn forward(&self, x: &Tensor, memory: &Tensor, causal: &Tensor) -> Tensor {
        let h = match &self.norm1 {
            Some(n) => n.forward(x),
            None => x.shallow_clone(),
        };
        let x = x + self.self_attn.forward(&h, &h, Some(causal));
        let x = &x + self.cross_attn.forward(&self.norm2.forward(&x), memory, None);
        let f = self.linear2.forward(&gelu(&self.linear1.forward(&self.norm3.forward(&x))));
        x + f
    }
}

#[derive(Debug)]
pub struct SlateDecoder {
    pub config: SlateConfig,
    bos: Tensor,
    pe: Tensor,
    norm0: Norm,
    layers: Vec<Layer>,
    readout: nn::Linear,
}

impl SlateDecoder {
    /// `p`: the decoder's path (`m.decode`).
    pub fn new(p: &nn::Path, c: &SlateConfig) -> SlateDecoder {
        let (d, f) = (c.dim as i64, c.ffn_dim as i64);
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        let layers = (0..c.layers)
            .map(|i| {
                let l = p / "backbone" / "layers" / i;
                Layer {
                    norm1: (i > 0).then(|| layer_norm(&l / "norm1", d)),
                    self_attn: Attention::new(&(&l / "self_attn"), d, c.heads as i64),
                    norm2: layer_norm(&l / "norm2", d),
                    cross_attn: Attention::new(&(&l / "multihead_attn"), d, c.heads as i64),
                    norm3: layer_norm(&l / "norm3", d),
                    linear1: nn::linear(&l / "linear1", d, f, no_bias),
                    linear2: nn::linear(&l / "linear2", f, d, no_bias),
                }
            })
            .collect();
        SlateDecoder {
            config: c.clone(),
            bos: p.var("bos", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: (d as f64).powf(-0.5) }),
            pe: (p / "posit_embed").var("_pe", &[1, c.tokens as i64, d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            norm0: layer_norm(p / "norm0", d),
            layers,
            readout: nn::linear(p / "readout", d, 2 * c.codes as i64, no_bias),
        }
    }

    /// Tokens (B, M, D) (the VQ quantisation, raster order) and slots (B, K, D) → logits
    /// (B, M, 2·codes): token i is predicted from tokens < i (the first from a learned `bos`).
    pub fn forward(&self, tokens: &Tensor, slots: &Tensor) -> Tensor {
        let (b, m) = (tokens.size()[0], tokens.size()[1]);
        let query = Tensor::cat(&[self.bos.expand([b, -1, -1], false), tokens.narrow(1, 0, m - 1)], 1) + self.pe.narrow(1, 0, m);
        let causal = Tensor::ones([m, m], (Kind::Bool, tokens.device())).triu(1);
        let mut x = self.norm0.forward(&query);
        for layer in &self.layers {
            x = layer.forward(&x, slots, &causal);
        }
        self.readout.forward(&x)
    }

    /// Upstream `CrossEntropyLossGrouped`: the sum over the two code groups of the mean
    /// cross-entropy of `logits` (B, M, 2·codes) against `zidx` (B, 2, M).
    pub fn loss(&self, logits: &Tensor, zidx: &Tensor) -> Tensor {
        let codes = self.config.codes as i64;
        (0..2)
            .map(|g| {
                let l = logits.narrow(2, g * codes, codes).reshape([-1, codes]);
                let t = zidx.select(1, g).reshape([-1]);
                l.cross_entropy_for_logits(&t)
            })
            .fold(Tensor::zeros([], (Kind::Float, logits.device())), |a, b| a + b)
    }
}
