//! msf-runtime: runs exported MSF models on images and video, in pure Rust.
//!
//! Modules:
//! - [`preprocess`](mod@preprocess): upstream eval preprocessing (centre crop, antialiased bilinear to 256 on uint8,
//!   normalise, optional bicubic to the backbone size) from a borrowed pixel buffer.
//! - [`source`]: decoding image files to RGB8 (EXIF orientation, decode limits).
//! - [`model`]: what a loaded model is (MSF metadata, shapes).
//! - [`session`]: inference backends (tract by default, onnxruntime with feature `ort`).
//! - [`decompose`]: the public entry point, [`Decomposer`] → [`Decomposition`].
//! - [`sink`]: writing results: palette PNG masks, overlays, `.npy` slots/attention, `decomposition.json`.
//! - [`track`]: temporal consistency for video streams ([`Tracker`]: carried slots + Hungarian matching).
//! - [`error`]: the crate error type.

pub mod decompose;
pub mod error;
pub mod model;
pub mod preprocess;
pub mod session;
pub mod sink;
pub mod source;
pub mod track;

pub use decompose::{BBox, CropBox, Decomposer, DecomposerBuilder, Decomposition};
pub use error::{Error, Result};
pub use model::ModelInfo;
pub use session::{BackendKind, Provider};
pub use preprocess::{preprocess, preprocess_into, ImageView, PixelFormat, Preprocessor};
pub use source::image::{load_image, DecodeLimits};
pub use track::Tracker;
