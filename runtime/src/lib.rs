//! msf-runtime: runs exported MSF models on images and video, in pure Rust.
//!
//! Modules:
//! - [`preprocess`](mod@preprocess): upstream eval preprocessing (centre crop, antialiased bilinear to 256 on uint8,
//!   normalise, optional bicubic to the backbone size) from a borrowed pixel buffer.
//! - [`source`]: decoding image files to RGB8 (EXIF orientation, decode limits).
//! - [`error`]: the crate error type.

pub mod error;
pub mod preprocess;
pub mod source;

pub use error::{Error, Result};
pub use preprocess::{preprocess, preprocess_into, ImageView, PixelFormat, Preprocessor};
pub use source::image::{load_image, DecodeLimits};
