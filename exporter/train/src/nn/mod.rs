//! The MSF networks in tch (libtorch), with upstream's parameter names, so that a tch model
//! saves in the upstream key layout and an upstream checkpoint loads into it.
//!
//! Inference path (spec §2): [`backbone`] (DINOv2 ViT) → [`project`] (MLP) → [`slot_attention`];
//! [`encoder`] assembles them, loads upstream weights and gives slots, attention and masks;
//! [`save`] writes a VarStore back in upstream's checkpoint format.
//!
//! Training-only decoders: [`slate`] (SLATE-MSF, in [`model`]) and [`unet`] with the [`ddpm`]
//! noising process (SlotDiffusion-MSF, in [`slotdiffusion`]).

pub mod adam;
pub mod backbone;
pub mod ddpm;
pub mod encoder;
pub mod model;
pub mod project;
pub mod save;
pub mod slate;
pub mod slot_attention;
pub mod slotdiffusion;
pub mod train;
pub mod trainer;
pub mod unet;
pub mod vqvae;

pub use encoder::{Encoder, EncoderOutput};

/// PyTorch's exact (erf) GELU, as upstream uses everywhere.
pub(crate) fn gelu(x: &tch::Tensor) -> tch::Tensor {
    x.gelu("none")
}
