//! Training configuration, read from TOML: data, model sizes and the two stages' recipes.
//! [`TrainConfig::coco`] is upstream's COCO setting; [`TrainConfig::small`] trains on this kind
//! of 2-core CPU in minutes. `configs/*.toml` are the same presets as files to copy and edit.

use msf_models::{ModelConfig, ModelKind, ProjectConfig, SlotConfig, VitConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub model: ModelSizes,
    pub stage1: Stage1Recipe,
    pub stage2: Stage2Recipe,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A folder of images (`DIR/images/*`, masks optional for training); without it, generated shapes.
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// Generated training images (ignored with `folder`).
    pub generated: usize,
    /// Held-out generated images (another seed stream) for the validation metrics.
    pub val: usize,
    pub seed: u64,
    /// Side of the training images. 256 is upstream's (and the exported model's input); smaller
    /// trains faster (the VQ-VAE's token grid is size/16). Validation always runs at 256.
    #[serde(default = "default_size")]
    pub size: u32,
    /// Threads that decode / generate and normalise batches ahead of the trainer.
    pub loader_threads: usize,
}

fn default_size() -> u32 {
    256
}

/// Which stage-2 model is trained: both share the inference path and the MSF VQ-VAE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// SLATE-MSF: an autoregressive transformer predicts the VQ-VAE's codes (`decoder_*` sizes).
    #[default]
    Slate,
    /// SlotDiffusion-MSF: a conditional UNet denoises the VQ-VAE's encoding (`unet_*` sizes).
    SlotDiffusion,
}

/// Sizes of every part; head counts follow upstream (ViT heads of width 64).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSizes {
    #[serde(default)]
    pub decoder: Decoder,
    pub embed_dim: usize,
    pub depth: usize,
    pub mlp_dim: usize,
    pub patch: usize,
    pub grid: usize,
    pub slots: usize,
    pub slot_dim: usize,
    pub slot_ffn: usize,
    pub iters: usize,
    pub code_dim: usize,
    pub codes: usize,
    pub codebook_dim: usize,
    pub vae_channels: usize,
    pub decoder_layers: usize,
    pub decoder_heads: usize,
    pub decoder_ffn: usize,
    /// SlotDiffusion's UNet: channels per level (multiples of 32, its GroupNorm groups).
    #[serde(default = "default_unet_channels")]
    pub unet_channels: Vec<usize>,
    #[serde(default = "default_unet_layers")]
    pub unet_layers: usize,
    #[serde(default = "default_unet_heads")]
    pub unet_heads: usize,
}

fn default_unet_channels() -> Vec<usize> {
    vec![128, 256, 384, 512]
}

fn default_unet_layers() -> usize {
    2
}

fn default_unet_heads() -> usize {
    8
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Recipe {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Fraction of the steps spent warming the learning rate up from 0.
    pub warmup: f64,
    pub clip: f64,
    /// Gumbel scale of the quantisers' matching: log-cosine from `noise[0]` to `noise[1]`.
    pub noise: [f64; 2],
    pub save_every: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Recipe {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: f64,
    pub clip: f64,
    /// Upstream keeps the pretrained DINOv2 frozen; without pretrained weights a small model
    /// has to learn its own features.
    pub freeze_backbone: bool,
    /// Gumbel scale of the frozen quantisers while training (upstream: 5).
    pub mediat_noise: f64,
    pub val_every: usize,
    pub save_every: usize,
}

/// GroupNorm groups of the UNet (diffusers' default, upstream's).
pub const UNET_GROUPS: usize = 32;

impl TrainConfig {
    /// Upstream's COCO setting (SLATE-MSF, spec §3): ViT-S/14, 7 slots of 256, C = 256.
    pub fn coco() -> TrainConfig {
        TrainConfig {
            data: DataConfig { folder: None, generated: 100_000, val: 500, seed: 0, size: 256, loader_threads: 4 },
            model: ModelSizes {
                embed_dim: 384,
                depth: 12,
                mlp_dim: 1536,
                patch: 14,
                grid: 16,
                slots: 7,
                slot_dim: 256,
                slot_ffn: 1024,
                iters: 3,
                code_dim: 256,
                codes: 256,
                codebook_dim: 1024,
                vae_channels: 64,
                decoder_layers: 4,
                decoder_heads: 4,
                decoder_ffn: 1024,
                decoder: Decoder::Slate,
                unet_channels: default_unet_channels(),
                unet_layers: default_unet_layers(),
                unet_heads: default_unet_heads(),
            },
            stage1: Stage1Recipe { steps: 30_000, batch: 64, lr: 2e-3, warmup: 0.05, clip: 1.0, noise: [1.0, 2.0], save_every: 750 },
            stage2: Stage2Recipe {
                steps: 50_000,
                batch: 32,
                lr: 2e-4,
                warmup: 0.05,
                clip: 1.0,
                freeze_backbone: true,
                mediat_noise: 5.0,
                val_every: 1250,
                save_every: 1250,
            },
        }
    }

    /// A small setting for a 2-core CPU: a 2-block, 64-wide ViT on 16×16 patches of 8 px, 7
    /// slots of 64, a 16-channel VQ-VAE with 64 codes, a 2-layer decoder, 128 px training images.
    pub fn small() -> TrainConfig {
        TrainConfig {
            data: DataConfig { folder: None, generated: 4000, val: 64, seed: 0, size: 128, loader_threads: 1 },
            model: ModelSizes {
                embed_dim: 64,
                depth: 2,
                mlp_dim: 256,
                patch: 8,
                grid: 16,
                slots: 7,
                slot_dim: 64,
                slot_ffn: 256,
                iters: 3,
                code_dim: 64,
                codes: 64,
                codebook_dim: 64,
                vae_channels: 16,
                decoder_layers: 2,
                decoder_heads: 4,
                decoder_ffn: 256,
                decoder: Decoder::Slate,
                unet_channels: vec![32, 32, 64, 64],
                unet_layers: 2,
                unet_heads: 8,
            },
            stage1: Stage1Recipe { steps: 600, batch: 16, lr: 2e-3, warmup: 0.05, clip: 1.0, noise: [1.0, 2.0], save_every: 100 },
            stage2: Stage2Recipe {
                steps: 8000,
                batch: 16,
                lr: 1e-3,
                warmup: 0.05,
                clip: 1.0,
                freeze_backbone: false,
                mediat_noise: 5.0,
                val_every: 1000,
                save_every: 1000,
            },
        }
    }

    /// Upstream's COCO setting for SlotDiffusion-MSF (`config-slotdiffusion/*-msf.py`): the same
    /// encoder and slots, a VQ-VAE with C = 4 and the UNet of channels 128/256/384/512.
    pub fn coco_slotdiffusion() -> TrainConfig {
        let mut c = TrainConfig::coco();
        c.model.decoder = Decoder::SlotDiffusion;
        c.model.code_dim = 4;
        c
    }

    /// The small CPU setting with SlotDiffusion's decoder: C = 4 and a UNet of 32/32/64/64. Its
    /// steps cost about twice SLATE's here, so stage 2 takes half as many.
    pub fn small_slotdiffusion() -> TrainConfig {
        let mut c = TrainConfig::small();
        c.model.decoder = Decoder::SlotDiffusion;
        c.model.code_dim = 4;
        c.stage2.steps = 4000;
        c
    }

    pub fn from_toml(text: &str) -> Result<TrainConfig, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config serialises")
    }

    /// The inference-path architecture these sizes describe.
    pub fn model_config(&self) -> ModelConfig {
        let m = &self.model;
        ModelConfig {
            kind: match m.decoder {
                Decoder::Slate => ModelKind::SlateMsf,
                Decoder::SlotDiffusion => ModelKind::SlotDiffusionMsf,
            },
            vit: VitConfig {
                embed_dim: m.embed_dim,
                depth: m.depth,
                num_heads: m.embed_dim / VitConfig::HEAD_DIM,
                mlp_dim: m.mlp_dim,
                patch_size: m.patch,
                grid: m.grid,
                ln_eps: 1e-6,
            },
            project: ProjectConfig { in_dim: m.embed_dim, hidden_dim: 2 * m.embed_dim, out_dim: m.slot_dim, ln_eps: 1e-5 },
            slots: SlotConfig { num_slots: m.slots, slot_dim: m.slot_dim, ffn_dim: m.slot_ffn, iters: m.iters, attn_eps: 1e-5, ln_eps: 1e-5 },
        }
    }

    /// Sizes that cannot work together, as one message each.
    pub fn problems(&self) -> Vec<String> {
        let m = &self.model;
        let mut p = vec![];
        if m.embed_dim == 0 || !m.embed_dim.is_multiple_of(VitConfig::HEAD_DIM) {
            p.push(format!("model.embed_dim {} must be a positive multiple of {} (ViT heads are {} wide)", m.embed_dim, VitConfig::HEAD_DIM, VitConfig::HEAD_DIM));
        }
        match m.decoder {
            Decoder::Slate => {
                if !m.slot_dim.is_multiple_of(m.decoder_heads.max(1)) {
                    p.push(format!("model.slot_dim {} must divide into model.decoder_heads {}", m.slot_dim, m.decoder_heads));
                }
                if m.code_dim != m.slot_dim {
                    p.push(format!("model.code_dim {} must equal model.slot_dim {} (the decoder reads codes and slots at one width)", m.code_dim, m.slot_dim));
                }
            }
            Decoder::SlotDiffusion => {
                if m.unet_channels.is_empty() || m.unet_channels.iter().any(|&c| c == 0 || !c.is_multiple_of(UNET_GROUPS) || !c.is_multiple_of(m.unet_heads.max(1))) {
                    p.push(format!(
                        "model.unet_channels {:?} must be multiples of {UNET_GROUPS} (the UNet's GroupNorm groups) and of model.unet_heads {}",
                        m.unet_channels, m.unet_heads
                    ));
                }
                if m.unet_layers == 0 || m.unet_heads == 0 {
                    p.push("model.unet_layers and model.unet_heads must be at least 1".into());
                }
                // The UNet halves its input once per level after the first, at the training
                // size and at the validation size (256): both latent grids (size / 16) must divide.
                let halvings = 1usize << m.unet_channels.len().saturating_sub(1);
                for size in [self.data.size as usize, 256] {
                    if !(size / 16).is_multiple_of(halvings) {
                        p.push(format!("{} levels of model.unet_channels halve the {}×{} latent of {size} px images to nothing: use fewer levels", m.unet_channels.len(), size / 16, size / 16));
                    }
                }
            }
        }
        if m.codes >> 2 == 0 {
            p.push(format!("model.codes {} must be at least 4 (scale 2 has codes/4)", m.codes));
        }
        if self.data.size < 32 || !self.data.size.is_multiple_of(16) {
            p.push(format!("data.size {} must be a multiple of 16, at least 32", self.data.size));
        }
        for (name, v) in [("stage1.batch", self.stage1.batch), ("stage2.batch", self.stage2.batch), ("stage1.steps", self.stage1.steps), ("stage2.steps", self.stage2.steps)] {
            if v == 0 {
                p.push(format!("{name} must be at least 1"));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_files_are_the_presets() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/configs");
        for (file, preset) in [
            ("coco.toml", TrainConfig::coco()),
            ("small.toml", TrainConfig::small()),
            ("coco-slotdiffusion.toml", TrainConfig::coco_slotdiffusion()),
            ("small-slotdiffusion.toml", TrainConfig::small_slotdiffusion()),
        ] {
            let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            assert_eq!(TrainConfig::from_toml(&text).unwrap(), preset, "{file}");
            assert!(preset.problems().is_empty(), "{file}: {:?}", preset.problems());
        }
    }

    #[test]
    fn unknown_keys_and_bad_sizes_are_reported() {
        let mut text = TrainConfig::small().to_toml();
        text = text.replace("[stage1]", "[stage1]\nstepz = 3");
        let e = TrainConfig::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("stepz"), "{e}");
        let mut c = TrainConfig::small();
        c.model.embed_dim = 100;
        c.model.code_dim = 16;
        let p = c.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        let mut c = TrainConfig::small_slotdiffusion();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.model.unet_channels = vec![32, 48, 64, 64, 64];
        let p = c.problems();
        assert_eq!(p.len(), 2, "channels not multiples of 32, and 5 levels for an 8×8 latent: {p:?}");
    }

    #[test]
    fn slate_files_without_unet_keys_still_read() {
        let text = TrainConfig::small().to_toml();
        let old: String = text.lines().filter(|l| !l.starts_with("unet_") && !l.starts_with("decoder =")).map(|l| format!("{l}\n")).collect();
        let read = TrainConfig::from_toml(&old).unwrap();
        assert_eq!(read.model.decoder, Decoder::Slate);
        assert_eq!((read.model.unet_channels.clone(), read.model.unet_layers, read.model.unet_heads), (default_unet_channels(), 2, 8));
        let mut want = TrainConfig::small();
        want.model.unet_channels = default_unet_channels();
        assert_eq!(read, want);
    }
}
