//! Architecture and preprocessing configuration of the MSF inference path (spec §2).
//!
//! Sizes are never hard-coded by users of this crate: the exporter infers a [`ModelConfig`] from
//! checkpoint shapes and writes it into the ONNX metadata, and the runtime reads it back.

use serde::{Deserialize, Serialize};

/// Which upstream model a stage-2 checkpoint comes from. Both share the inference path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    #[serde(rename = "slate-msf")]
    SlateMsf,
    #[serde(rename = "slotdiffusion-msf")]
    SlotDiffusionMsf,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::SlateMsf => "slate-msf",
            ModelKind::SlotDiffusionMsf => "slotdiffusion-msf",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DINOv2 ViT backbone (timm `vit_*_patch14_dinov2`), frozen in MSF.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_dim: usize,
    pub patch_size: usize,
    /// Side of the token grid the positional embedding was resized to (16 for 224 input).
    pub grid: usize,
    pub ln_eps: f32,
}

impl VitConfig {
    /// DINOv2 uses a head dimension of 64 at every size.
    pub const HEAD_DIM: usize = 64;

    pub fn num_tokens(&self) -> usize {
        self.grid * self.grid
    }
    /// Input side the backbone sees (grid × patch, 224 for ViT-S/14).
    pub fn input_size(&self) -> usize {
        self.grid * self.patch_size
    }
}

/// Projection MLP between backbone features and slot attention: LN → Linear → GELU → Linear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfig {
    pub in_dim: usize,
    pub hidden_dim: usize,
    pub out_dim: usize,
    pub ln_eps: f32,
}

/// Slot Attention (GRU update, FFN residual) and its learned initial slots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotConfig {
    pub num_slots: usize,
    pub slot_dim: usize,
    pub ffn_dim: usize,
    pub iters: usize,
    /// Added to the per-slot attention sum before re-normalising over tokens.
    pub attn_eps: f32,
    pub ln_eps: f32,
}

/// The whole inference path: backbone → projection → slot attention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub kind: ModelKind,
    pub vit: VitConfig,
    pub project: ProjectConfig,
    pub slots: SlotConfig,
}

/// Image preprocessing, exactly as upstream's eval transform (spec §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square the image is centre-cropped and resized to (antialiased bilinear on uint8).
    pub image_size: usize,
    /// Per-channel mean and std on the 0..255 scale, RGB order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Side the normalised image is bicubically resized to before the backbone.
    pub backbone_size: usize,
    /// Bicubic coefficient (PyTorch: −0.75), half-pixel centres, clamped border.
    pub cubic_a: f32,
    /// True when the bicubic `image_size → backbone_size` resize is inside the ONNX graph;
    /// false when the caller must do it (`msf-export --no-resize`).
    pub backbone_resize_in_graph: bool,
}

/// Upstream COCO eval constants (ImageNet mean/std on the 0..255 scale).
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// Upstream resizes to 256 then scales by 0.875 into the backbone.
pub const IMAGE_SIZE: usize = 256;

impl Preprocess {
    /// The upstream eval preprocessing for a backbone of `backbone_size` pixels.
    pub fn upstream(backbone_size: usize, backbone_resize_in_graph: bool) -> Self {
        Preprocess {
            image_size: IMAGE_SIZE,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            backbone_size,
            cubic_a: -0.75,
            backbone_resize_in_graph,
        }
    }

    /// Side of the image the ONNX graph takes as input.
    pub fn graph_input_size(&self) -> usize {
        if self.backbone_resize_in_graph {
            self.image_size
        } else {
            self.backbone_size
        }
    }
}
