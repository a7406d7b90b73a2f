//! msf-runtime: runs exported MSF models on images and video, in pure Rust.
//!
//! Modules:
//! - [`view`]: [`ImageView`], a borrowed frame in any 8-bit pixel layout and stride.
//! - [`preprocess`](mod@preprocess): upstream eval preprocessing (centre crop, antialiased bilinear to 256 on uint8,
//!   normalise, optional bicubic to the backbone size) from a borrowed pixel buffer.
//! - [`source`]: decoding image files to RGB8 (EXIF orientation, decode limits).
//! - [`fit`]: how a frame of any shape is put into the model's square input ([`Fit`]: crop, stretch,
//!   pad, tiles) and how masks map back to the frame.
//! - [`model`]: what a loaded model is (MSF metadata, shapes).
//! - [`session`]: inference backends (tract by default, onnxruntime with feature `ort`).
//! - [`decompose`]: one frame or batch, [`Decomposer`] → [`Decomposition`].
//! - [`pipeline`]: the whole job, [`Pipeline`]: source → decode-ahead → jobs → tracker → [`Sink`]s.
//! - [`sink`]: writing results: palette PNG masks, overlays, `.npy` slots/attention, `decomposition.json`.
//! - [`track`]: temporal consistency for video streams ([`Tracker`]: carried slots + Hungarian matching).
//! - [`eval`]: temporal-consistency measurement (synthetic video with ground truth, identity switches).
//! - [`error`]: the crate error type.
//! - [`process`]: what each command-line tool sets up first (quiet panics, `SIGXFSZ`, temporary names).

pub mod decompose;
pub mod error;
pub mod eval;
pub mod fit;
#[cfg(feature = "video")]
mod ffmpeg;
pub mod memory;
pub mod model;
mod names;
pub mod pipeline;
pub mod process;
pub mod preprocess;
pub mod session;
pub mod sink;
pub mod source;
pub mod track;
pub mod view;

pub use decompose::{BBox, Decomposer, DecomposerBuilder, Decomposition};
pub use error::{Error, Result};
pub use fit::Fit;
pub use model::ModelInfo;
pub use pipeline::{Pipeline, PipelineBuilder, Sink};
pub use session::{BackendKind, Provider};
pub use preprocess::{preprocess, preprocess_into, Preprocessor};
pub use view::{ImageView, PixelFormat};
pub use source::image::{load_image, DecodeLimits};
pub use track::Tracker;
