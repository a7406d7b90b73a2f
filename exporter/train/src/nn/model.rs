//! SLATE-MSF as one model (upstream `SLATE` with the MSF VQ-VAE as `mediat`): the inference
//! path (backbone, projection, initialiser, Slot Attention), the frozen stage-1 VQ-VAE encoder
//! and quantisers, and the SLATE decoder. Its VarStore is upstream's `state_dict` layout.

use super::encoder::Encoder;
use super::slate::{SlateConfig, SlateDecoder};
use super::vqvae::{VqVae, VqVaeConfig};
use msf_models::{ModelConfig, Preprocess};
use tch::{nn, Tensor};

pub struct SlateMsf {
    pub encoder: Encoder,
    pub mediat: VqVae,
    pub decode: SlateDecoder,
    /// Gumbel scale of the frozen quantisers' matching while training (upstream `std=5`).
    pub mediat_noise: f64,
}

/// A stage-2 model as the trainer sees it: SLATE-MSF or SlotDiffusion-MSF (same inference
/// path, different decoder and loss).
pub trait Stage2Model {
    /// The training loss on normalised images (B, 3, H, W), with the slots and attention.
    fn stage2(&self, images: &Tensor, train: bool) -> Stage2Output;
    /// The inference path (what is exported and validated).
    fn encoder(&self) -> &Encoder;
}

impl Stage2Model for SlateMsf {
    fn stage2(&self, images: &Tensor, train: bool) -> Stage2Output {
        SlateMsf::stage2(self, images, train)
    }

    fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

/// One training step's outputs.
pub struct Stage2Output {
    pub loss: Tensor,
    pub slots: Tensor,
    /// (B, K, G, G)
    pub attn: Tensor,
}

impl SlateMsf {
    pub fn new(root: &nn::Path, c: &ModelConfig, vq: &VqVaeConfig, dec: &SlateConfig) -> SlateMsf {
        let m = root / "m";
        SlateMsf {
            encoder: Encoder::new(root, c, &Preprocess::upstream(c.vit.input_size(), true)),
            mediat: VqVae::new(&(&m / "mediat"), vq, false),
            decode: SlateDecoder::new(&(&m / "decode"), dec),
            mediat_noise: 5.0,
        }
    }

    /// Teacher-forced SLATE loss on normalised images (B, 3, 256, 256): the decoder predicts the
    /// frozen VQ-VAE's scale-0 code indices from its quantisation and the slots. The VQ-VAE runs
    /// without gradients (frozen in stage 2), the backbone too unless it is trained.
    pub fn stage2(&self, images: &Tensor, train: bool) -> Stage2Output {
        let b = images.size()[0];
        let feats = self.encoder.features_t(images, train);
        let (slots, attn) = self.encoder.group(&feats, train);
        let vq = tch::no_grad(|| self.mediat.forward(images, if train { self.mediat_noise } else { 0.0 }, 0.0, false));
        let (zidx, quant) = (&vq.zidxs[0], &vq.quants[0]); // (B, 2, h, w), (B, C, h, w)
        let tokens = quant.flatten(2, -1).transpose(1, 2); // (B, h·w, C)
        let logits = self.decode.forward(&tokens, &slots);
        let loss = self.decode.loss(&logits, &zidx.flatten(2, -1));
        let g = self.encoder.config.vit.grid as i64;
        Stage2Output { loss, attn: attn.reshape([b, -1, g, g]), slots }
    }
}

/// Shapes of a checkpoint by key (what the `*sizes_from_checkpoint` functions read).
pub type CheckpointShapes = std::collections::BTreeMap<String, msf_exporter::checkpoint::TensorInfo>;

/// The shape of `key`, if the checkpoint has it.
pub(crate) fn shape_of(info: &CheckpointShapes, key: &str) -> Option<Vec<usize>> {
    info.get(key).map(|t| t.shape.clone())
}

/// How many numbered children `prefix` has (`prefix0.…`, `prefix1.…`: the highest index + 1).
pub(crate) fn numbered_children(info: &CheckpointShapes, prefix: &str) -> Option<usize> {
    info.keys().filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok()).max().map(|m| m + 1)
}

/// The VQ-VAE and decoder sizes of an upstream SLATE-MSF checkpoint, read from its shapes
/// (the decoder's head count is not in the file: upstream's 4 is assumed).
pub fn sizes_from_checkpoint(info: &CheckpointShapes) -> Option<(VqVaeConfig, SlateConfig)> {
    let shape = |k: &str| shape_of(info, k);
    let vq = vqvae_sizes_from_checkpoint(info)?;
    let pe = shape("m.decode.posit_embed._pe").or_else(|| shape("m.decode.posit_embed.pe"))?;
    let dec = SlateConfig {
        dim: shape("m.decode.bos")?[2],
        layers: numbered_children(info, "m.decode.backbone.layers.").unwrap_or(0),
        heads: SlateConfig::default().heads,
        ffn_dim: shape("m.decode.backbone.layers.0.linear1.weight")?[0],
        tokens: pe[1],
        codes: shape("m.decode.readout.weight")?[0] / 2,
    };
    Some((vq, dec))
}

/// The sizes of a stage-2 checkpoint's frozen VQ-VAE (`m.mediat.*`), read from its shapes.
pub fn vqvae_sizes_from_checkpoint(info: &CheckpointShapes) -> Option<VqVaeConfig> {
    let shape = |k: &str| shape_of(info, k);
    let codebook = shape("m.mediat.quant.0.codebook.weight")?;
    Some(VqVaeConfig {
        code_dim: shape("m.mediat.encode.3.weight")?[0],
        codes: codebook[0],
        codebook_dim: codebook[1],
        // One shared quantiser, then one per scale.
        scales: numbered_children(info, "m.mediat.quant.")?.checked_sub(1)?,
        channels: shape("m.mediat.encode.1.0.weight")?[0],
    })
}
