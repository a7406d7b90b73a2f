//! The crate error type. One enum so that the CLI and the C ABI can map every failure to a message
//! (and a code) without downcasting; variants carry the offending values so messages are actionable.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- borrowed pixel buffers (preprocess::ImageView) ----
    /// A view of zero width or height: there is nothing to crop.
    #[error("image view has zero size ({width}x{height})")]
    ZeroSizeView { width: u32, height: u32 },
    /// `stride` (bytes per row) is smaller than one row of pixels.
    #[error("image view stride {stride} bytes is less than a row of {width} pixels ({min} bytes)")]
    StrideTooSmall {
        stride: usize,
        width: u32,
        min: usize,
    },
    /// The buffer ends before the last pixel of the last row.
    #[error(
        "image view buffer has {len} bytes, {width}x{height} with stride {stride} needs {need}"
    )]
    BufferTooShort {
        len: usize,
        need: usize,
        width: u32,
        height: u32,
        stride: usize,
    },

    // ---- preprocessing ----
    /// The caller's output slice does not have the (3, S, S) length.
    #[error("preprocess output has {got} floats, expected {expected} (3x{size}x{size})")]
    OutputSize {
        got: usize,
        expected: usize,
        size: usize,
    },
    /// Sizes or std in `msf_models::Preprocess` that cannot work (zero size, zero std, ...).
    #[error("invalid preprocessing config: {0}")]
    InvalidConfig(String),

    // ---- image files (source::image) ----
    /// The file could not be opened or read.
    #[error("{}: cannot read image file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The header claims more pixels than the configured limit; refused before any allocation.
    #[error("{}: image is {width}x{height}, over the decode limit ({limit})", path.display())]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        limit: String,
    },
    /// The header says width or height is 0.
    #[error("{}: image has zero size ({width}x{height})", path.display())]
    EmptyImage {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    /// Unknown format, corrupt or truncated data, unsupported feature of a format.
    #[error("{}: cannot decode image: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}
