//! Upstream MSF checkpoints to ONNX: `checkpoint` (read) → `spec` (validate, infer dims) →
//! `graph` (build ONNX) → `write` (atomic file output).

pub mod checkpoint;
pub mod export;
pub mod graph;
pub mod spec;
#[cfg(feature = "verify")]
pub mod verify;
pub mod write;
