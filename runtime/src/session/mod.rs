//! Inference backends behind one small trait: tract (pure Rust, default) and onnxruntime (`ort`).

use crate::error::{Error, Result};
use crate::model::ModelInfo;
use std::borrow::Cow;

#[cfg(feature = "tract")]
pub mod tract;
#[cfg(feature = "ort")]
pub mod ort;

/// Which engine runs the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// tract: pure Rust, no native libraries; CPU.
    #[default]
    Tract,
    /// onnxruntime through the `ort` crate (feature `ort`): CPU, CUDA, TensorRT.
    Ort,
}

/// Execution provider for the onnxruntime backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
}

crate::names::named_enum!(BackendKind, "backend", { Tract => "tract", Ort => "ort" | "onnxruntime" });
crate::names::named_enum!(Provider, "execution provider", { Cpu => "cpu", Cuda => "cuda", Tensorrt => "tensorrt" });

/// Options shared by all backends.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub backend: BackendKind,
    /// Kernel threads per inference call (`None`: one per CPU core for tract, onnxruntime's own default for ort).
    pub threads: Option<usize>,
    pub provider: Provider,
    /// Use the CPU when the requested provider cannot be used, instead of failing.
    pub allow_fallback: bool,
    /// Preprocessing for graphs without MSF metadata (foreign graphs are refused otherwise).
    pub preprocess_override: Option<msf_models::Preprocess>,
    /// Calls expected at the same time (0 and 1: one). tract serves any number from one plan;
    /// onnxruntime runs one call per session at a time, so it keeps this many sessions.
    pub concurrency: usize,
    /// Bounds on the graph's nodes and tensors (default: documented values or the `MSF_MAX_*`
    /// environment variables); a graph over them is refused before anything large is allocated.
    pub limits: msf_models::Limits,
}

/// Raw outputs of one batch, row-major: slots (B,K,D), attn (B,K,G,G), masks (B,M,M).
#[derive(Clone, Debug, Default)]
pub struct RawOutputs {
    pub batch: usize,
    pub slots: Vec<f32>,
    pub attn: Vec<f32>,
    pub masks: Vec<i64>,
}

/// A loaded model that can run batches. Implementations are `Send + Sync`, so one loaded model
/// serves several threads (each call keeps its own state).
pub trait Backend: Send + Sync {
    /// `tract` or `onnxruntime`.
    fn name(&self) -> &'static str;
    /// The execution provider actually in use (`cpu`, `cuda`, `tensorrt`).
    fn provider(&self) -> &str;
    fn info(&self) -> &ModelInfo;
    /// Run on `image` (B,3,S,S); `slots_init` (B,K,D) only for graphs with that input.
    fn run(&self, image: &[f32], batch: usize, slots_init: Option<&[f32]>) -> Result<RawOutputs>;
    /// The learned initial slots (1,K,D) that an empty `slots_init` stands for.
    fn default_slots(&self) -> Option<&[f32]>;
}

/// What a run feeds `slots_init` (B,K,D): the caller's slots, or the learned ones repeated over
/// the batch. Fed explicitly by both backends, so no runtime relies on a graph-side default.
pub(crate) fn initial_slots<'a>(given: Option<&'a [f32]>, learned: Option<&[f32]>, batch: usize, info: &ModelInfo, backend: &'static str) -> Result<Cow<'a, [f32]>> {
    let want = batch * info.num_slots * info.slot_dim;
    let slots = match (given, learned) {
        (Some(v), _) => Cow::Borrowed(v),
        (None, Some(mean)) => Cow::Owned(mean.repeat(batch)),
        (None, None) => return Err(Error::inference(backend, "the graph needs `slots_init` and has no learned default")),
    };
    if slots.len() != want {
        return Err(Error::SlotsShape { got: slots.len(), expected: want });
    }
    Ok(slots)
}

/// Parse and prepare a checked model with the backend `opts` asks for.
pub(crate) fn load_file(file: crate::model::ModelFile, opts: &SessionOptions) -> Result<Box<dyn Backend>> {
    match opts.backend {
        #[cfg(feature = "tract")]
        BackendKind::Tract => Ok(Box::new(tract::TractBackend::load(file, opts)?)),
        #[cfg(not(feature = "tract"))]
        BackendKind::Tract => Err(crate::error::Error::BackendUnavailable {
            backend: "tract",
            reason: "this build has no `tract` feature".into(),
        }),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(ort::OrtBackend::load(file, opts)?)),
        #[cfg(not(feature = "ort"))]
        BackendKind::Ort => Err(crate::error::Error::BackendUnavailable {
            backend: "onnxruntime",
            reason: "this build has no `ort` feature (rebuild with --features ort)".into(),
        }),
    }
}

/// Read `path` once, check it against the MSF contract, and load it with the backend `opts` asks for.
pub fn load(path: &std::path::Path, opts: &SessionOptions) -> Result<Box<dyn Backend>> {
    let file = crate::model::ModelFile::read(path, opts.preprocess_override.as_ref(), &opts.limits)?;
    load_file(file, opts)
}

/// [`load`] for an ONNX model held in memory (embedded in an application's binary).
pub fn load_bytes(bytes: &[u8], opts: &SessionOptions) -> Result<Box<dyn Backend>> {
    let file = crate::model::ModelFile::from_memory(prost::bytes::Bytes::copy_from_slice(bytes), opts.preprocess_override.as_ref(), &opts.limits)?;
    load_file(file, opts)
}
