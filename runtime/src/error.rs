//! The crate error type. One enum so that the CLI and the C ABI can map every failure to a message
//! (and a code) without downcasting; variants carry the offending values so messages are actionable.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A dependency's error (tract's, onnxruntime's), kept whole as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- borrowed pixel buffers (view::ImageView) ----
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
    /// Options that cannot work together or at all: preprocessing sizes or std (zero size, zero
    /// std, ...), pipeline bounds, a fit the tracker cannot follow.
    #[error("invalid configuration: {0}")]
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

    // ---- models and backends (model, session) ----
    /// The model file does not exist.
    #[error("{}: model file not found", path.display())]
    ModelNotFound { path: PathBuf },
    /// The file could not be read, parsed or optimised. `source` is the backend's own error, its
    /// chain kept (the CLI prints it on one line, `one_line`).
    #[error("{}: cannot load the model: {reason}", path.display())]
    ModelLoad {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A valid ONNX file that is not an MSF decomposition graph.
    #[error("{}: not an MSF decomposition graph: {reason}", path.display())]
    NotMsfGraph { path: PathBuf, reason: String },
    /// MSF metadata missing or invalid.
    #[error("{}: {source}", path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: msf_models::MetadataError,
    },
    /// The requested backend or execution provider is not available.
    #[error("{backend} is not available: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: String,
    },
    /// Running the graph failed; `source` is the backend's own error, when it gave one.
    #[error("{backend} inference failed: {reason}")]
    Inference {
        backend: &'static str,
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Initial slots were given to a model exported with `--no-slots-in`.
    #[error("this model has no `slots_init` input (exported with `msf-export --no-slots-in`): re-export it without that flag for temporal mode")]
    NoSlotsInput,
    /// Initial slots of the wrong length.
    #[error("initial slots have {got} values, expected {expected} (batch × slots × dim)")]
    SlotsShape { got: usize, expected: usize },

    // ---- opening inputs (source::open) and writing outputs (sink) ----
    /// An input path that does not exist and is not a glob pattern.
    #[error("{}: input not found", path.display())]
    InputNotFound { path: PathBuf },
    /// An input that names something this build cannot read (unknown extension, or a video/camera
    /// input in a build without that feature).
    #[error("{}: {reason}", path.display())]
    UnsupportedInput { path: PathBuf, reason: String },
    /// A folder or glob pattern that yields no image files.
    #[error("{}: no image files found ({what})", path.display())]
    NoImages { path: PathBuf, what: String },
    /// A malformed glob pattern, or a folder that cannot be listed.
    #[error("{}: cannot list input files: {reason}", path.display())]
    ListInput { path: PathBuf, reason: String },
    /// An output file or folder could not be created or written (nothing is left at `path`).
    /// The output folder holds an earlier run's files (`listed`: its `decomposition.json` says which).
    #[error("{}: the output folder holds {}; choose another folder{}", path.display(),
        if *listed { "an earlier run (decomposition.json)" } else { "files of an earlier run but no decomposition.json to say which" },
        if *listed { " or pass --overwrite to replace that run" } else { " or remove them" })]
    OutputHasRun { path: PathBuf, listed: bool },
    /// Another run (of any process) is writing into this output folder.
    #[error("{}: the output folder is in use by another run; wait for it or choose another folder", path.display())]
    OutputInUse { path: PathBuf },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    // ---- onnxruntime backend (session::ort) ----
    /// libonnxruntime could not be found or loaded (feature `ort`).
    #[error(
        "onnxruntime library: {reason}. Set ORT_DYLIB_PATH (or MSF_ORT_LIB) to libonnxruntime.so, e.g. \
         `export ORT_DYLIB_PATH=$(scripts/ort-lib)` in the repository (it comes from the `onnxruntime` pip wheel)"
    )]
    OrtLibraryNotFound { reason: String },
    /// The requested execution provider (CUDA, TensorRT) cannot be used and CPU fallback was not allowed.
    #[error("the {provider} execution provider cannot be used: {reason}")]
    ProviderUnavailable { provider: &'static str, reason: String },

    // ---- video (source::video, sink::video: feature `video`; source::camera: feature `camera`) ----
    /// FFmpeg cannot open the file or stream, finds no video stream in it, or has no decoder for it.
    #[error("{}: cannot open as video: {reason}", path.display())]
    VideoOpen { path: PathBuf, reason: String },
    /// Decoding stopped at frame `frame` (every frame before it was delivered): damaged or
    /// truncated data, or a decoder failure. `reason` carries FFmpeg's message.
    #[error("{}: video decoding stopped at frame {frame}: {reason}", path.display())]
    VideoDecode { path: PathBuf, frame: u64, reason: String },
    /// A video file could not be written (no encoder, encoder or muxer failure, I/O, wrong frame size).
    #[error("{}: cannot write video: {reason}", path.display())]
    VideoEncode { path: PathBuf, reason: String },
    /// A camera device could not be opened or configured.
    #[error("{}: cannot open camera: {reason}", device.display())]
    CameraOpen { device: PathBuf, reason: String },
    /// Capturing from an opened camera failed at frame `frame`.
    #[error("{}: camera capture failed at frame {frame}: {reason}", device.display())]
    CameraCapture { device: PathBuf, frame: u64, reason: String },

    // ---- the pipeline (pipeline) ----
    /// A worker thread panicked (a bug, or a dependency's panic on hostile input).
    #[error("a decomposition thread panicked: {0}")]
    Panicked(String),
    /// This frame shared an inference call with a frame whose call failed.
    #[error("its batch failed: {0}")]
    InBatch(String),
}

impl Error {
    /// [`Error::ModelLoad`] for a reason of our own.
    pub(crate) fn model_load(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::ModelLoad { path: path.to_path_buf(), reason: reason.into(), source: None }
    }
    /// [`Error::ModelLoad`] for a backend's error: its top message, and the error as the source.
    pub(crate) fn backend_load(path: &std::path::Path, e: impl Into<BoxError>) -> Self {
        let source = e.into();
        Error::ModelLoad { path: path.to_path_buf(), reason: source.to_string(), source: Some(source) }
    }
    /// [`Error::Inference`] for a reason of our own.
    pub(crate) fn inference(backend: &'static str, reason: impl Into<String>) -> Self {
        Error::Inference { backend, reason: reason.into(), source: None }
    }
    /// [`Error::Inference`] for a backend's error, kept as the source.
    pub(crate) fn backend_run(backend: &'static str, e: impl Into<BoxError>) -> Self {
        let source = e.into();
        Error::Inference { backend, reason: source.to_string(), source: Some(source) }
    }
}

/// An error and its causes on one line, each cause once (messages often quote their cause already).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
