//! The MSF VQ-VAE (upstream `VQVAEZMultiScale`, stage 1; frozen in stage 2 as `m.mediat.*`):
//! a TAESD-style convolutional encoder and decoder, a 3-scale pyramid, SimVQ quantisers (a
//! frozen Gaussian codebook and a learned projection) and multi-scale fusion (inter-scale: each
//! pixel keeps the scale whose best shared code is most probable; intra-scale: each scale's own
//! codebook), spec §3. Parameter names follow upstream, so stage-1 checkpoints interchange.

use tch::{nn, nn::Module, Kind, Tensor};

/// Sizes of the VQ-VAE; upstream's SLATE-MSF setting is `VqVaeConfig::default()`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VqVaeConfig {
    /// Code width C (256 for SLATE-MSF, 4 for SlotDiffusion-MSF).
    pub code_dim: usize,
    /// Codes of the shared codebook (`quant.0`) and of scale 0; scale s has `codes >> s`.
    pub codes: usize,
    /// Width of the frozen codebook vectors before the learned projection.
    pub codebook_dim: usize,
    pub scales: usize,
    /// TAESD channel width.
    pub channels: usize,
}

impl Default for VqVaeConfig {
    fn default() -> Self {
        VqVaeConfig { code_dim: 256, codes: 256, codebook_dim: 1024, scales: 3, channels: 64 }
    }
}

/// TAESD's residual block: three 3×3 convs with ReLUs between, identity skip, ReLU after the sum.
#[derive(Debug)]
struct Block {
    c0: nn::Conv2D,
    c2: nn::Conv2D,
    c4: nn::Conv2D,
}

impl Block {
    fn new(p: &nn::Path, ch: i64) -> Block {
        let conv = nn::ConvConfig { padding: 1, ..Default::default() };
        // Upstream starts from pretrained TAESD weights; from scratch, a residual branch whose
        // last conv starts at zero makes each block the identity at first, so that the deep
        // ReLU stacks neither blow up nor die in the first steps.
        let last = nn::ConvConfig { ws_init: nn::Init::Const(0.0), ..conv };
        let p = p / "conv";
        Block { c0: nn::conv2d(&p / "0", ch, ch, 3, conv), c2: nn::conv2d(&p / "2", ch, ch, 3, conv), c4: nn::conv2d(&p / "4", ch, ch, 3, last) }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.c4.forward(&self.c2.forward(&self.c0.forward(x).relu()).relu());
        (y + x).relu()
    }
}

/// One layer of a TAESD stack.
#[derive(Debug)]
enum Layer {
    Conv(nn::Conv2D),
    Block(Box<Block>),
    Upsample,
}

impl Layer {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Layer::Conv(c) => c.forward(x),
            Layer::Block(b) => b.forward(x),
            Layer::Upsample => {
                let s = x.size();
                x.upsample_nearest2d([s[2] * 2, s[3] * 2], Some(2.0), Some(2.0))
            }
        }
    }
}

fn run(layers: &[Layer], x: &Tensor) -> Tensor {
    layers.iter().fold(x.shallow_clone(), |x, l| l.forward(&x))
}

/// TAESD encoder layers 0..14 (upstream `EncoderTAESD(se=[0, 14])`): conv, block, then three
/// times (stride-2 conv without bias, three blocks): ÷8 spatially, `ch` channels.
fn taesd_encoder(p: &nn::Path, ch: i64) -> Vec<Layer> {
    let pad = nn::ConvConfig { padding: 1, ..Default::default() };
    let down = nn::ConvConfig { padding: 1, stride: 2, bias: false, ..Default::default() };
    let mut layers = vec![Layer::Conv(nn::conv2d(p / "0", 3, ch, 3, pad)), Layer::Block(Box::new(Block::new(&(p / "1"), ch)))];
    for stage in 0..3 {
        let base = 2 + stage * 4;
        layers.push(Layer::Conv(nn::conv2d(p / base, ch, ch, 3, down)));
        for b in 1..=3 {
            layers.push(Layer::Block(Box::new(Block::new(&(p / (base + b)), ch))));
        }
    }
    layers
}

/// TAESD decoder layers 2..19 (upstream `DecoderTAESD(se=[2, 19])`): three times (three blocks,
/// ×2 upsample, conv without bias), then a block and the conv to RGB: ×8 spatially.
fn taesd_decoder(p: &nn::Path, ch: i64) -> Vec<Layer> {
    let up_conv = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
    let mut layers = vec![];
    for stage in 0..3 {
        let base = stage * 5;
        for b in 0..3 {
            layers.push(Layer::Block(Box::new(Block::new(&(p / (base + b)), ch))));
        }
        layers.push(Layer::Upsample);
        layers.push(Layer::Conv(nn::conv2d(p / (base + 4), ch, ch, 3, up_conv)));
    }
    layers.push(Layer::Block(Box::new(Block::new(&(p / 15), ch))));
    layers.push(Layer::Conv(nn::conv2d(p / 16, ch, 3, 3, nn::ConvConfig { padding: 1, ..Default::default() })));
    layers
}

/// SimVQ quantiser (upstream `QuantiZ`): codes are `project(codebook)`, the codebook frozen.
#[derive(Debug)]
pub struct Quantizer {
    codebook: Tensor,
    project: nn::Linear,
    /// Chi-distribution mean and std of distances between Gaussian vectors of this width.
    mu: f64,
    sigma: f64,
}

/// Mean and standard deviation of the distance between two standard Gaussian vectors of width `c`
/// (a scaled chi distribution), which standardise the negative distances.
pub fn chi_mean_std(c: usize) -> (f64, f64) {
    let c = c as f64;
    let mean = 2f64.sqrt() * (libm::lgamma((c + 1.0) / 2.0) - libm::lgamma(c / 2.0)).exp();
    (mean, (c - mean * mean).sqrt())
}

impl Quantizer {
    fn new(p: &nn::Path, codes: i64, code_dim: i64, codebook_dim: i64) -> Quantizer {
        let codebook = (p / "codebook").zeros_no_train("weight", &[codes, codebook_dim]);
        tch::no_grad(|| {
            let _ = codebook.shallow_clone().normal_(0.0, 1.0);
        });
        let (mu, sigma) = chi_mean_std(code_dim as usize);
        Quantizer { codebook, project: nn::linear(p / "project", codebook_dim, code_dim, Default::default()), mu, sigma }
    }

    fn codes(&self) -> Tensor {
        self.project.forward(&self.codebook)
    }

    /// Standardised similarities (…, m) of `z` (…, C) to the codes, and the chosen code per vector:
    /// argmax, or in training with `noise > 0` a Gumbel-softmax draw at scale `noise`.
    fn matching(&self, z: &Tensor, codes: &Tensor, noise: f64) -> (Tensor, Tensor) {
        let shape = z.size();
        let c = shape[shape.len() - 1];
        let flat = z.reshape([-1, c]);
        // Matching takes no gradient (upstream: cdist under no_grad); selection does, via `codes`.
        let s = tch::no_grad(|| -Tensor::cdist(&flat.detach(), &codes.detach(), 2.0, None::<i64>));
        let simi = (s - self.mu) / self.sigma;
        let soft = if noise > 0.0 {
            let u = simi.rand_like().clamp(1e-10, 1.0 - 1e-10);
            let gumbel = -(-u.log()).log();
            (simi * noise + gumbel).softmax(-1, Kind::Float)
        } else {
            simi.softmax(-1, Kind::Float)
        };
        let mut out_shape = shape[..shape.len() - 1].to_vec();
        let idx = soft.argmax(-1, false).reshape(out_shape.as_slice());
        out_shape.push(-1);
        (soft.reshape(out_shape.as_slice()), idx)
    }
}

/// Outputs of one forward, per scale (scale 0 first); maps are channel-first (B, C, h, w).
pub struct VqVaeOutput {
    pub encodes: Vec<Tensor>,
    /// (B, 2, h, w): inter-scale (shared codebook) and intra-scale code indices.
    pub zidxs: Vec<Tensor>,
    pub quants: Vec<Tensor>,
    pub residuals: Vec<Tensor>,
    /// RGB reconstructions in the normalised input's scale, at 1/2^(s+1) of the input size.
    pub decodes: Vec<Tensor>,
}

/// Conv 1×1 C→ch, GroupNorm, TAESD decoder layers (`decode.{0,1,2}`).
#[derive(Debug)]
struct Decoder {
    input: nn::Conv2D,
    norm: nn::GroupNorm,
    layers: Vec<Layer>,
}

#[derive(Debug)]
pub struct VqVae {
    pub config: VqVaeConfig,
    encoder: Vec<Layer>,
    enc_norm: nn::GroupNorm,
    enc_out: nn::Conv2D,
    decoder: Option<Decoder>,
    quant: Vec<Quantizer>,
}

impl VqVae {
    /// `p`: the VQ-VAE's root (`m` in stage 1, `m.mediat` inside a stage-2 model). `decoder`:
    /// stage 2 keeps only the encoder and quantisers.
    pub fn new(p: &nn::Path, c: &VqVaeConfig, decoder: bool) -> VqVae {
        let (ch, cd) = (c.channels as i64, c.code_dim as i64);
        let enc = p / "encode";
        let quant = p / "quant";
        let mut quants = vec![Quantizer::new(&(&quant / 0), c.codes as i64, cd, c.codebook_dim as i64)];
        for s in 0..c.scales {
            quants.push(Quantizer::new(&(&quant / (s + 1)), (c.codes >> s) as i64, cd, c.codebook_dim as i64));
        }
        let gn = nn::GroupNormConfig::default();
        let decoder = decoder.then(|| {
            let dec = p / "decode";
            Decoder { input: nn::conv2d(&dec / 0, cd, ch, 1, Default::default()), norm: nn::group_norm(&dec / 1, 1, ch, gn), layers: taesd_decoder(&(&dec / 2), ch) }
        });
        VqVae {
            config: c.clone(),
            encoder: taesd_encoder(&(&enc / 1), ch),
            enc_norm: nn::group_norm(&enc / 2, 1, ch, gn),
            enc_out: nn::conv2d(&enc / 3, ch, cd, 1, Default::default()),
            decoder,
            quant: quants,
        }
    }

    /// Normalised image (B, 3, H, W) → continuous code map (B, C, H/16, W/16).
    pub fn encode(&self, image: &Tensor) -> Tensor {
        let s = image.size();
        let half = image.upsample_bicubic2d([s[2] / 2, s[3] / 2], false, Some(0.5), Some(0.5));
        let x = run(&self.encoder, &((half + 1.0) / 2.0));
        self.enc_out.forward(&self.enc_norm.forward(&x))
    }

    /// Code map (B, C, h, w) → image (B, 3, 8h, 8w) in the normalised scale; `None` for the
    /// encoder-only (stage-2) VQ-VAE.
    pub fn decode(&self, quant: &Tensor) -> Option<Tensor> {
        let d = self.decoder.as_ref()?;
        Some(run(&d.layers, &d.norm.forward(&d.input.forward(quant))) * 2.0 - 1.0)
    }

    /// The full stage-1 forward. `noise`: Gumbel scale of the matching in training (0: argmax);
    /// `alpha`: how much of the continuous encoding the decoder sees (upstream anneals 1 → 0).
    pub fn forward(&self, image: &Tensor, noise: f64, alpha: f64, decode: bool) -> VqVaeOutput {
        let s = image.size();
        let mut encodes = vec![];
        for k in 0..self.config.scales {
            let x = if k == 0 {
                image.shallow_clone()
            } else {
                let f = 0.5f64.powi(k as i32);
                let (h, w) = ((s[2] as f64 * f) as i64, (s[3] as f64 * f) as i64);
                image.upsample_bilinear2d([h, w], false, Some(f), Some(f))
            };
            encodes.push(self.encode(&x).permute([0, 2, 3, 1])); // (B, h, w, C)
        }
        let (zidxs, encodes_, quants_) = self.fuse(&encodes, noise);
        let residuals: Vec<Tensor> = if alpha > 0.0 {
            encodes_.iter().zip(&quants_).map(|(e, q)| e * alpha + q * (1.0 - alpha)).collect()
        } else {
            quants_.iter().map(|q| q.shallow_clone()).collect()
        };
        // Straight-through: the decoder's gradient reaches the encoder.
        let stes: Vec<Tensor> = encodes_.iter().zip(&residuals).map(|(e, r)| e + (r - e).detach()).collect();
        let chw = |t: &Tensor| t.permute([0, 3, 1, 2]);
        let decodes = if decode { stes.iter().filter_map(|q| self.decode(&chw(q))).collect() } else { vec![] };
        VqVaeOutput {
            encodes: encodes_.iter().map(chw).collect(),
            zidxs: zidxs.iter().map(chw).collect(),
            quants: quants_.iter().map(chw).collect(),
            residuals: residuals.iter().map(chw).collect(),
            decodes,
        }
    }

    /// Multi-scale fusion (upstream `ms_fuse`) on channel-last maps: returns per scale the code
    /// indices (B, h, w, 2), the fused encodings and the quantisations (B, h, w, C).
    fn fuse(&self, encodes: &[Tensor], noise: f64) -> (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>) {
        let n = encodes.len();
        let shared = &self.quant[0];
        let shared_codes = shared.codes();
        let (mut zidxs, mut fused, mut quants) = (vec![], vec![], vec![]);
        for i in 0..n {
            // Every scale's encoding resampled to scale i: finer ones average-pooled, coarser
            // ones nearest-upsampled.
            let at_i: Vec<Tensor> = encodes
                .iter()
                .enumerate()
                .map(|(j, e)| {
                    let e = e.permute([0, 3, 1, 2]);
                    let e = if j < i {
                        let k = 1i64 << (i - j);
                        e.avg_pool2d([k, k], [k, k], [0, 0], false, true, None::<i64>)
                    } else if j > i {
                        let f = (1i64 << (j - i)) as f64;
                        let s = e.size();
                        e.upsample_nearest2d([s[2] * f as i64, s[3] * f as i64], Some(f), Some(f))
                    } else {
                        e
                    };
                    e.permute([0, 2, 3, 1])
                })
                .collect();
            let stacked = Tensor::stack(&at_i, 0); // (S, B, h, w, C)
            let (soft, idx) = shared.matching(&stacked, &shared_codes, noise); // (S,B,h,w,m), (S,B,h,w)
            let (best, _) = soft.max_dim(-1, false); // (S, B, h, w)
            let pick = best.argmax(0, true); // (1, B, h, w): the most confident scale per pixel
            let z1 = idx.gather(0, &pick, false).squeeze_dim(0);
            let c = stacked.size()[4];
            let e1 = stacked.gather(0, &pick.unsqueeze(-1).expand([-1, -1, -1, -1, c], false), false).squeeze_dim(0);
            let q1 = shared_codes.index_select(0, &z1.flatten(0, -1)).reshape(e1.size().as_slice());

            let own = &self.quant[1 + i];
            let own_codes = own.codes();
            let (_, z2) = own.matching(&encodes[i], &own_codes, noise);
            let q2 = own_codes.index_select(0, &z2.flatten(0, -1)).reshape(encodes[i].size().as_slice());

            zidxs.push(Tensor::stack(&[z1, z2], -1));
            fused.push((e1 + &encodes[i]) / 2.0);
            quants.push((q1 + q2) / 2.0);
        }
        (zidxs, fused, quants)
    }
}

/// Stage-1 losses per scale (upstream `vqvae-*-msf.py`): reconstruction MSE against the input
/// resized (bicubic) to the decoder's output size, align (quant → encode), commitment 0.25
/// (encode → residual) and a 0.1 pull of the encoding towards its own group-normalised value.
pub fn stage1_loss(image: &Tensor, out: &VqVaeOutput) -> (Tensor, Vec<f64>) {
    let mut total = Tensor::zeros([], (Kind::Float, image.device()));
    let mut recon_parts = vec![];
    for (s, dec) in out.decodes.iter().enumerate() {
        let size = dec.size();
        let f = size[2] as f64 / image.size()[2] as f64;
        // torchvision v2 Resize: bicubic with antialias.
        let target = image.internal_upsample_bicubic2d_aa([size[2], size[3]], false, Some(f), Some(f));
        let recon = dec.mse_loss(&target, tch::Reduction::Mean);
        recon_parts.push(recon.double_value(&[]));
        let (e, q, r) = (&out.encodes[s], &out.quants[s], &out.residuals[s]);
        let align = q.mse_loss(&e.detach(), tch::Reduction::Mean);
        let commit = e.mse_loss(&r.detach(), tch::Reduction::Mean) * 0.25;
        let normed = e.detach().group_norm(1, None::<&Tensor>, None::<&Tensor>, 1e-5, false);
        let norm_e = e.mse_loss(&normed, tch::Reduction::Mean) * 0.1;
        total = total + recon + align + commit + norm_e;
    }
    (total, recon_parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_statistics_match_the_closed_form() {
        // One degree of freedom: the half-normal, mean √(2/π), variance 1 − 2/π.
        let (m, s) = chi_mean_std(1);
        assert!((m - (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12, "{m}");
        assert!((s - (1.0 - 2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12, "{s}");
        // Two: the Rayleigh distribution, mean √(π/2).
        let (m, _) = chi_mean_std(2);
        assert!((m - (std::f64::consts::PI / 2.0).sqrt()).abs() < 1e-12, "{m}");
        // Large c: mean → √(c − ½), std → 1/√2.
        let (m, s) = chi_mean_std(256);
        assert!((m - (255.5f64).sqrt()).abs() < 1e-3, "{m}");
        assert!((s - 0.5f64.sqrt()).abs() < 1e-3, "{s}");
    }
}
