//! The whole export: checkpoint → spec → graph → file, as one call with a report.

use crate::checkpoint::{self, CheckpointError, Limits};
use crate::graph::{self, GraphError, GraphOptions};
use crate::spec::{self, SpecError, SpecOptions};
use crate::write::{self, WriteError};
use msf_models::interface::{ModelMetadata, SPEC_VERSION};
use msf_models::{ModelConfig, Preprocess};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    pub graph: GraphOptions,
    pub spec: SpecOptions,
    pub limits: Limits,
    pub external_data: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The model cannot be described by valid metadata (e.g. more slots than 8-bit masks hold).
    #[error(transparent)]
    Metadata(#[from] msf_models::MetadataError),
}

/// What an export did, for the CLI summary and for callers such as the training crate.
#[derive(Debug)]
pub struct ExportReport {
    pub output: PathBuf,
    pub data_file: Option<PathBuf>,
    pub config: ModelConfig,
    pub metadata: ModelMetadata,
    pub file_params: usize,
    pub inference_params: usize,
    pub bytes: u64,
    pub unexpected_keys: Vec<String>,
    pub elapsed: Duration,
}

/// Metadata for a model exported from `spec` with `opts`.
pub fn metadata_for(spec: &spec::ModelSpec, opts: &GraphOptions) -> ModelMetadata {
    ModelMetadata {
        spec_version: SPEC_VERSION,
        config: spec.config.clone(),
        preprocess: Preprocess::upstream(spec.config.vit.input_size(), opts.resize_in_graph),
        source_sha256: spec.source_sha256.clone(),
        slots_input: opts.slots_in,
        precision: opts.precision.as_str().into(),
        producer: format!("msf-export {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Export an already validated spec to `output`.
pub fn export_spec(spec: &spec::ModelSpec, output: &Path, opts: &ExportOptions) -> Result<(ModelMetadata, write::Written), ExportError> {
    let meta = metadata_for(spec, &opts.graph);
    meta.validate()?;
    let graph = graph::build_graph(spec, &meta.preprocess, &opts.graph)?;
    let model = write::model_proto(graph, opts.graph.opset, &meta);
    let written = write::write_model(model, output, opts.external_data)?;
    Ok((meta, written))
}

/// Read `ckpt`, validate it and write the ONNX model to `output` (atomically).
pub fn export(ckpt: &Path, output: &Path, opts: &ExportOptions) -> Result<ExportReport, ExportError> {
    let t0 = Instant::now();
    let loaded = checkpoint::load(ckpt, &opts.limits, &spec::wants_data)?;
    let spec = spec::build_spec(loaded, &opts.spec)?;
    let (metadata, written) = export_spec(&spec, output, opts)?;
    Ok(ExportReport {
        output: written.model,
        data_file: written.data,
        config: spec.config.clone(),
        metadata,
        file_params: spec.file_params,
        inference_params: spec.inference_params,
        bytes: written.bytes,
        unexpected_keys: spec.unexpected.clone(),
        elapsed: t0.elapsed(),
    })
}
