//! Upstream MSF checkpoints to ONNX: `checkpoint` (read) → `spec` (validate, infer dims) →
//! `graph` (build ONNX) → `write` (atomic file output).
