//! What the runtime knows about a model: the file read once and checked against the MSF contract
//! ([`ModelFile`], for the backends), and its shapes ([`ModelInfo`], for users).

use crate::error::{Error, Result};
use msf_models::interface::ModelMetadata;
use msf_models::{ContractError, GraphContract, Limits, ModelKind, Preprocess};
use prost::bytes::Bytes;
use std::path::{Path, PathBuf};

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
    pub fn from_contract(c: &GraphContract) -> Self {
        ModelInfo {
            kind: c.metadata.as_ref().map(|m| m.config.kind),
            metadata: c.metadata.clone(),
            preprocess: c.preprocess.clone(),
            num_slots: c.shapes.num_slots,
            slot_dim: c.shapes.slot_dim,
            grid: c.shapes.grid,
            mask_size: c.shapes.mask_size,
            slots_input: c.slots_input,
        }
    }
}

/// Where the model comes from, for the loader and for messages.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    File(PathBuf),
    /// An ONNX model held in memory (embedded in the application's binary, say).
    Memory,
}

/// An ONNX file's bytes, read once, and the contract they were checked against: what each
/// backend parses and runs.
pub(crate) struct ModelFile {
    pub bytes: Bytes,
    pub origin: Origin,
    pub contract: GraphContract,
    /// A file's size and modification time once read (`None` in memory).
    stamp: Option<FileStamp>,
}

/// Size and modification time of a model file: while a file keeps them, it is taken to hold the
/// bytes that were checked.
pub(crate) type FileStamp = (u64, Option<std::time::SystemTime>);

fn file_stamp(path: &Path) -> std::io::Result<FileStamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified().ok()))
}

/// Initializers smaller than this stay inline: the graph check reads small constants' values.
const INLINE_MAX: usize = 4096;

/// A model file's graph with its large initializers made external data pointing back into the
/// file itself ([`msf_models::contract::without_inline_data`]): what a backend decodes instead
/// of the whole file, so that it reads each weight from the file as it builds it and never holds
/// a decoded copy beside its own.
pub(crate) struct WeightsInFile {
    pub file: PathBuf,
    stamp: FileStamp,
    /// The re-encoded graph (without the large initializers' bytes).
    pub graph: Vec<u8>,
}

impl WeightsInFile {
    /// The folder the external data is read from.
    pub fn folder(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// The file still has the size and modification time it had when it was read and checked.
    pub fn unchanged(&self) -> bool {
        file_stamp(&self.file).ok() == Some(self.stamp)
    }
}

/// How messages name a model held in memory.
const IN_MEMORY: &str = "(model in memory)";

impl ModelFile {
    /// Read `path` (a regular file: a FIFO or device is refused before it can block) and check it.
    pub fn read(path: &Path, foreign: Option<&Preprocess>, limits: &Limits) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::ModelNotFound { path: path.to_path_buf() });
        }
        let unreadable = |e: std::io::Error| Error::ModelLoad { path: path.to_path_buf(), reason: "cannot read the file".into(), source: Some(e.into()) };
        let before = file_stamp(path).map_err(unreadable)?;
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let after = file_stamp(path).map_err(unreadable)?;
        let mut file = Self::check(Bytes::from(bytes), Origin::File(path.to_path_buf()), foreign, limits)?;
        // A file written to while it was read is not known to hold what was checked: the
        // backends then use the bytes read, not the file.
        file.stamp = (before == after && after.0 == file.bytes.len() as u64).then_some(after);
        Ok(file)
    }

    /// Check an ONNX model held in memory (external data cannot be used then: there is no folder).
    pub fn from_memory(bytes: Bytes, foreign: Option<&Preprocess>, limits: &Limits) -> Result<Self> {
        Self::check(bytes, Origin::Memory, foreign, limits)
    }

    fn check(bytes: Bytes, origin: Origin, foreign: Option<&Preprocess>, limits: &Limits) -> Result<Self> {
        let contract = GraphContract::check_with(bytes.clone(), origin.dir(), foreign, limits).map_err(|e| contract_error(origin.label(), e))?;
        Ok(ModelFile { bytes, origin, contract, stamp: None })
    }

    /// The graph with its large initializers pointing into the file, for a file whose weights are
    /// inline. `None` for a model in memory, one with external data of its own, a file that
    /// changed while it was read, or bytes the rewrite cannot follow: then the backend decodes
    /// [`ModelFile::bytes`].
    pub fn weights_in_file(&self) -> Option<WeightsInFile> {
        let (Origin::File(file), Some(stamp)) = (&self.origin, self.stamp) else { return None };
        if self.contract.external_data {
            return None;
        }
        let name = file.file_name()?.to_str()?;
        let graph = msf_models::contract::without_inline_data(&self.bytes, INLINE_MAX, name)?;
        Some(WeightsInFile { file: file.clone(), stamp, graph })
    }

    /// The path for messages (a placeholder for a model in memory).
    pub fn label(&self) -> &Path {
        self.origin.label()
    }

    /// The model's folder, where external data lives.
    pub fn dir(&self) -> Option<&Path> {
        self.origin.dir()
    }

    /// The path of a model read from a file (onnxruntime loads external data through it).
    #[cfg_attr(not(feature = "ort"), allow(dead_code))]
    pub fn path(&self) -> Option<&Path> {
        match &self.origin {
            Origin::File(p) => Some(p),
            Origin::Memory => None,
        }
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo::from_contract(&self.contract)
    }
}

impl Origin {
    pub fn label(&self) -> &Path {
        match self {
            Origin::File(p) => p,
            Origin::Memory => Path::new(IN_MEMORY),
        }
    }

    fn dir(&self) -> Option<&Path> {
        match self {
            Origin::File(p) => Some(p.parent().unwrap_or(Path::new("."))),
            Origin::Memory => None,
        }
    }
}

fn contract_error(path: &Path, e: ContractError) -> Error {
    let path = path.to_path_buf();
    match e {
        ContractError::NotMsf(reason) => Error::NotMsfGraph { path, reason },
        ContractError::Metadata(source) => Error::Metadata { path, source },
        e @ (ContractError::NotOnnx(_)
        | ContractError::NoGraph
        | ContractError::SlotsDefault(_)
        | ContractError::Limit(_)
        | ContractError::ExternalData { .. }) => {
            Error::ModelLoad { path, reason: e.to_string(), source: None }
        }
    }
}
