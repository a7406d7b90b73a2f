//! What the runtime knows about a loaded model: its MSF metadata and the shapes it implies.

use crate::error::{Error, Result};
use msf_models::interface::{ModelMetadata, MetadataError};
use msf_models::{ModelKind, Preprocess};
use std::path::Path;

/// Shapes and preprocessing of a loaded decomposition graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// `None` for a graph without MSF metadata that the caller accepted with explicit preprocessing.
    pub kind: Option<ModelKind>,
    pub metadata: Option<ModelMetadata>,
    pub preprocess: Preprocess,
    pub num_slots: usize,
    pub slot_dim: usize,
    /// Side of the attention grid (16 for ViT-S/14 at 224).
    pub grid: usize,
    /// Side of the mask the graph returns (the preprocessed image size, 256).
    pub mask_size: usize,
    /// The graph has the `slots_init` input (temporal mode possible).
    pub slots_input: bool,
}

impl ModelInfo {
    pub fn from_metadata(meta: ModelMetadata) -> Self {
        ModelInfo {
            kind: Some(meta.config.kind),
            preprocess: meta.preprocess.clone(),
            num_slots: meta.config.slots.num_slots,
            slot_dim: meta.config.slots.slot_dim,
            grid: meta.config.vit.grid,
            mask_size: meta.preprocess.image_size,
            slots_input: meta.slots_input,
            metadata: Some(meta),
        }
    }
}

/// Read the MSF metadata from ONNX metadata pairs; a foreign graph is refused unless the caller
/// supplied the preprocessing (`fallback`), in which case shapes are read from the graph later.
pub(crate) fn metadata_from_props(path: &Path, props: &[(String, String)], fallback: Option<&Preprocess>) -> Result<Option<ModelMetadata>> {
    match ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(m) => Ok(Some(m)),
        Err(MetadataError::NotMsf) if fallback.is_some() => Ok(None),
        Err(source) => Err(Error::Metadata { path: path.to_path_buf(), source }),
    }
}
