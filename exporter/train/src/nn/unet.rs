//! SlotDiffusion's noise predictor: diffusers' `UNet2DConditionModel` in upstream's configuration
//! (`m.decode.backbone.*`), with diffusers' parameter names so that upstream checkpoints load.
//!
//! Layout: `conv_in` → down blocks (the first without attention, the others with a spatial
//! transformer after each resnet; all but the last halve the resolution) → mid block (resnet,
//! transformer, resnet) → up blocks (mirror images taking the saved skips, the last without
//! attention; all but the last double the resolution) → GroupNorm, SiLU, `conv_out`. Every resnet
//! adds a projection of the timestep embedding; every transformer cross-attends to the slots.

use tch::{nn, nn::Module, Kind, Tensor};

/// Sizes of the UNet; `Default` is upstream's SlotDiffusion-MSF (160 M parameters with the rest).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UNetConfig {
    /// Latent channels in and out (the VQ code width C).
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of each resolution level, finest first.
    pub block_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// Attention heads of every transformer (diffusers' `attention_head_dim`, which it uses as the
    /// head count when `num_attention_heads` is not given).
    pub heads: usize,
    /// Width of the conditioning tokens (the slots).
    pub cross_attention_dim: usize,
    pub norm_groups: usize,
    /// Dropout inside the resnets (training only).
    pub dropout: f64,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            block_channels: vec![128, 256, 384, 512],
            layers_per_block: 2,
            heads: 8,
            cross_attention_dim: 256,
            norm_groups: 32,
            dropout: 0.1,
        }
    }
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, k, nn::ConvConfig { padding: k / 2, stride, ..Default::default() })
}

fn group_norm(p: nn::Path, groups: i64, ch: i64, eps: f64) -> nn::GroupNorm {
    nn::group_norm(p, groups, ch, nn::GroupNormConfig { eps, ..Default::default() })
}

/// diffusers `ResnetBlock2D`: GroupNorm, SiLU, conv, + time projection, GroupNorm, SiLU,
/// dropout, conv; a 1×1 conv on the skip where the width changes.
#[derive(Debug)]
struct Resnet {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    time_emb_proj: nn::Linear,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
    dropout: f64,
}

impl Resnet {
    fn new(p: &nn::Path, cin: i64, cout: i64, temb: i64, c: &UNetConfig) -> Resnet {
        let g = c.norm_groups as i64;
        Resnet {
            norm1: group_norm(p / "norm1", g, cin, 1e-5),
            conv1: conv(p / "conv1", cin, cout, 3, 1),
            time_emb_proj: nn::linear(p / "time_emb_proj", temb, cout, Default::default()),
            norm2: group_norm(p / "norm2", g, cout, 1e-5),
            conv2: conv(p / "conv2", cout, cout, 3, 1),
            conv_shortcut: (cin != cout).then(|| conv(p / "conv_shortcut", cin, cout, 1, 1)),
            dropout: c.dropout,
        }
    }

    /// `temb`: the SiLU of the time embedding (B, T) (each resnet's own SiLU, computed once).
    fn forward(&self, x: &Tensor, temb: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let h = h + self.time_emb_proj.forward(temb).unsqueeze(-1).unsqueeze(-1);
        let h = self.conv2.forward(&self.norm2.forward(&h).silu().dropout(self.dropout, train));
        match &self.conv_shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// diffusers `Attention` as the transformer blocks use it: q/k/v without bias, softmax with
/// scale 1/√(head width), output projection with bias (`to_out.0`).
#[derive(Debug)]
struct Attention {
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
}

impl Attention {
    fn new(p: &nn::Path, dim: i64, kv_dim: i64, heads: i64) -> Attention {
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        Attention {
            to_q: nn::linear(p / "to_q", dim, dim, no_bias),
            to_k: nn::linear(p / "to_k", kv_dim, dim, no_bias),
            to_v: nn::linear(p / "to_v", kv_dim, dim, no_bias),
            to_out: nn::linear(p / "to_out" / "0", dim, dim, Default::default()),
            heads,
        }
    }

    /// `x` (B, N, C) attends to `kv` (B, M, D).
    fn forward(&self, x: &Tensor, kv: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().expect("(B, N, C) tokens");
        let m = kv.size()[1];
        let hd = c / self.heads;
        let split = |t: Tensor, len: i64| t.view([b, len, self.heads, hd]).transpose(1, 2);
        let q = split(self.to_q.forward(x), n);
        let k = split(self.to_k.forward(kv), m);
        let v = split(self.to_v.forward(kv), m);
        let a = (q.matmul(&k.transpose(-2, -1)) / (hd as f64).sqrt()).softmax(-1, Kind::Float);
        self.to_out.forward(&a.matmul(&v).transpose(1, 2).reshape([b, n, c]))
    }
}

/// diffusers `BasicTransformerBlock` (pre-LayerNorm): self-attention, cross-attention to the
/// context, GEGLU feed-forward (`ff.net.0.proj` to 2×4C, value × GELU(gate), `ff.net.2` back).
#[derive(Debug)]
struct TransformerBlock {
    norm1: nn::LayerNorm,
    attn1: Attention,
    norm2: nn::LayerNorm,
    attn2: Attention,
    norm3: nn::LayerNorm,
    ff_in: nn::Linear,
    ff_out: nn::Linear,
}

impl TransformerBlock {
    fn new(p: &nn::Path, dim: i64, cross: i64, heads: i64) -> TransformerBlock {
        let ln = |name: &str| nn::layer_norm(p / name, vec![dim], Default::default());
        let ff = p / "ff" / "net";
        TransformerBlock {
            norm1: ln("norm1"),
            attn1: Attention::new(&(p / "attn1"), dim, dim, heads),
            norm2: ln("norm2"),
            attn2: Attention::new(&(p / "attn2"), dim, cross, heads),
            norm3: ln("norm3"),
            ff_in: nn::linear(&ff / "0" / "proj", dim, 8 * dim, Default::default()),
            ff_out: nn::linear(&ff / "2", 4 * dim, dim, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let h = self.norm1.forward(x);
        let x = x + self.attn1.forward(&h, &h);
        let x = &x + self.attn2.forward(&self.norm2.forward(&x), context);
        let ab = self.ff_in.forward(&self.norm3.forward(&x)).chunk(2, -1);
        &x + self.ff_out.forward(&(&ab[0] * super::gelu(&ab[1])))
    }
}

/// diffusers `Transformer2DModel` on feature maps: GroupNorm (eps 1e-6), 1×1 conv in, one
/// transformer block over the H·W tokens, 1×1 conv out, residual.
#[derive(Debug)]
struct SpatialTransformer {
    norm: nn::GroupNorm,
    proj_in: nn::Conv2D,
    block: TransformerBlock,
    proj_out: nn::Conv2D,
}

impl SpatialTransformer {
    fn new(p: &nn::Path, ch: i64, c: &UNetConfig) -> SpatialTransformer {
        SpatialTransformer {
            norm: group_norm(p / "norm", c.norm_groups as i64, ch, 1e-6),
            proj_in: conv(p / "proj_in", ch, ch, 1, 1),
            block: TransformerBlock::new(&(p / "transformer_blocks" / "0"), ch, c.cross_attention_dim as i64, c.heads as i64),
            proj_out: conv(p / "proj_out", ch, ch, 1, 1),
        }
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, ch, h, w) = x.size4().expect("(B, C, H, W) features");
        let tokens = self.proj_in.forward(&self.norm.forward(x)).flatten(2, -1).transpose(1, 2);
        let tokens = self.block.forward(&tokens, context);
        x + self.proj_out.forward(&tokens.transpose(1, 2).reshape([b, ch, h, w]))
    }
}

/// One resolution level: resnets, each followed by a transformer where the level has attention,
/// then a stride-2 conv (down) or a nearest ×2 upsample and conv (up) unless it is the coarsest
/// (down) or finest (up) level.
#[derive(Debug)]
struct Level {
    resnets: Vec<Resnet>,
    attentions: Vec<SpatialTransformer>,
    resample: Option<nn::Conv2D>,
}

impl Level {
    fn layer(&self, i: usize, x: &Tensor, temb: &Tensor, context: &Tensor, train: bool) -> Tensor {
        let x = self.resnets[i].forward(x, temb, train);
        match self.attentions.get(i) {
            Some(a) => a.forward(&x, context),
            None => x,
        }
    }
}

#[derive(Debug)]
pub struct UNet {
    pub config: UNetConfig,
    conv_in: nn::Conv2D,
    time_1: nn::Linear,
    time_2: nn::Linear,
    down: Vec<Level>,
    mid_resnets: [Resnet; 2],
    mid_attention: SpatialTransformer,
    up: Vec<Level>,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

/// diffusers' sinusoidal timestep embedding with `flip_sin_to_cos=True, freq_shift=0`:
/// [cos(t·f_i), sin(t·f_i)] with f_i = 10000^(−i/half), in float32 in diffusers' op order (at
/// t ≈ 1000 the f32 rounding of t·f_i is visible, so the order matters for equality).
fn timestep_embedding(t: &Tensor, dim: i64) -> Tensor {
    let half = dim / 2;
    let exponent = Tensor::arange(half, (Kind::Float, t.device())) * -(10000f64.ln()) / half as f64;
    let args = t.to_kind(Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0);
    let emb = Tensor::cat(&[args.cos(), args.sin()], 1);
    if dim % 2 == 1 {
        emb.constant_pad_nd([0, 1])
    } else {
        emb
    }
}

impl UNet {
    /// `p`: the UNet's path (upstream `m.decode.backbone`).
    pub fn new(p: &nn::Path, c: &UNetConfig) -> UNet {
        let ch: Vec<i64> = c.block_channels.iter().map(|&x| x as i64).collect();
        let n = ch.len();
        assert!(n >= 2, "the UNet needs at least two levels");
        let temb = 4 * ch[0];
        let layers = c.layers_per_block;

        let down = (0..n)
            .map(|i| {
                let q = p / "down_blocks" / i;
                let cin = if i == 0 { ch[0] } else { ch[i - 1] };
                Level {
                    resnets: (0..layers).map(|j| Resnet::new(&(&q / "resnets" / j), if j == 0 { cin } else { ch[i] }, ch[i], temb, c)).collect(),
                    attentions: if i == 0 { vec![] } else { (0..layers).map(|j| SpatialTransformer::new(&(&q / "attentions" / j), ch[i], c)).collect() },
                    resample: (i + 1 < n).then(|| conv(&q / "downsamplers" / "0" / "conv", ch[i], ch[i], 3, 2)),
                }
            })
            .collect();

        let mid = p / "mid_block";
        let top = ch[n - 1];
        let mid_resnets = [Resnet::new(&(&mid / "resnets" / 0), top, top, temb, c), Resnet::new(&(&mid / "resnets" / 1), top, top, temb, c)];
        let mid_attention = SpatialTransformer::new(&(&mid / "attentions" / 0), top, c);

        // Up level i works at width rev[i]; its resnet j takes the previous output (the level
        // below's width for j = 0) concatenated with a skip: the down path's outputs in reverse,
        // the last of which per level has the next finer level's width.
        let rev: Vec<i64> = ch.iter().rev().copied().collect();
        let up = (0..n)
            .map(|i| {
                let q = p / "up_blocks" / i;
                let prev = if i == 0 { rev[0] } else { rev[i - 1] };
                let finer = rev[(i + 1).min(n - 1)];
                Level {
                    resnets: (0..=layers)
                        .map(|j| {
                            let skip = if j == layers { finer } else { rev[i] };
                            let cin = if j == 0 { prev } else { rev[i] };
                            Resnet::new(&(&q / "resnets" / j), cin + skip, rev[i], temb, c)
                        })
                        .collect(),
                    attentions: if i + 1 == n { vec![] } else { (0..=layers).map(|j| SpatialTransformer::new(&(&q / "attentions" / j), rev[i], c)).collect() },
                    resample: (i + 1 < n).then(|| conv(&q / "upsamplers" / "0" / "conv", rev[i], rev[i], 3, 1)),
                }
            })
            .collect();

        let te = p / "time_embedding";
        UNet {
            config: c.clone(),
            conv_in: conv(p / "conv_in", c.in_channels as i64, ch[0], 3, 1),
            time_1: nn::linear(&te / "linear_1", ch[0], temb, Default::default()),
            time_2: nn::linear(&te / "linear_2", temb, temb, Default::default()),
            down,
            mid_resnets,
            mid_attention,
            up,
            norm_out: group_norm(p / "conv_norm_out", c.norm_groups as i64, ch[0], 1e-5),
            conv_out: conv(p / "conv_out", ch[0], c.out_channels as i64, 3, 1),
        }
    }

    /// Predicted noise (B, out, H, W) for noisy latents `x` (B, in, H, W) at timesteps `t` (B,)
    /// int64, conditioned on `context` (B, K, cross_attention_dim). H and W must be divisible by
    /// 2^(levels − 1). `train` turns the resnets' dropout on.
    pub fn forward(&self, x: &Tensor, t: &Tensor, context: &Tensor, train: bool) -> Tensor {
        let b = x.size()[0];
        let t = t.to_device(x.device()).expand([b], false);
        let emb = timestep_embedding(&t, self.config.block_channels[0] as i64).to_kind(x.kind());
        let temb = self.time_2.forward(&self.time_1.forward(&emb).silu()).silu();

        let mut h = self.conv_in.forward(x);
        let mut skips = vec![h.shallow_clone()];
        for level in &self.down {
            for i in 0..level.resnets.len() {
                h = level.layer(i, &h, &temb, context, train);
                skips.push(h.shallow_clone());
            }
            if let Some(down) = &level.resample {
                h = down.forward(&h);
                skips.push(h.shallow_clone());
            }
        }

        h = self.mid_resnets[0].forward(&h, &temb, train);
        h = self.mid_attention.forward(&h, context);
        h = self.mid_resnets[1].forward(&h, &temb, train);

        for level in &self.up {
            for i in 0..level.resnets.len() {
                let skip = skips.pop().expect("one skip per up resnet");
                h = level.layer(i, &Tensor::cat(&[&h, &skip], 1), &temb, context, train);
            }
            if let Some(up) = &level.resample {
                let (_, _, hh, ww) = h.size4().expect("(B, C, H, W) features");
                h = up.forward(&h.upsample_nearest2d([2 * hh, 2 * ww], Some(2.0), Some(2.0)));
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h).silu())
    }
}
