//! `msf.export(ckpt, onnx)`: [`msf_exporter::export::export`], the library behind `msf-export`.

use std::path::PathBuf;

use msf_exporter::export::{export as export_ckpt, ExportOptions};
use msf_exporter::graph::{Precision, MAX_OPSET, MIN_OPSET};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::msf_err;

/// Read an upstream checkpoint (PyTorch zip or safetensors; no pickle code runs), check it and
/// write the ONNX decomposition graph to `onnx` (atomically). Returns what `msf-export` reports.
#[pyfunction]
#[pyo3(signature = (ckpt, onnx, *, slots_in = true, resize_in_graph = true, precision = "fp32", opset = None, external_data = false))]
#[allow(clippy::too_many_arguments)]
pub fn export<'py>(
    py: Python<'py>,
    ckpt: PathBuf,
    onnx: PathBuf,
    slots_in: bool,
    resize_in_graph: bool,
    precision: &str,
    opset: Option<i64>,
    external_data: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let mut opts = ExportOptions::default();
    opts.graph.slots_in = slots_in;
    opts.graph.resize_in_graph = resize_in_graph;
    opts.graph.precision = match precision {
        "fp32" => Precision::Fp32,
        "int8" => Precision::Int8,
        other => return Err(PyValueError::new_err(format!("unknown precision `{other}` (use fp32, int8)"))),
    };
    if let Some(o) = opset {
        if !(MIN_OPSET..=MAX_OPSET).contains(&o) {
            return Err(PyValueError::new_err(format!("opset {o} is not supported (use {MIN_OPSET}..={MAX_OPSET})")));
        }
        opts.graph.opset = o;
    }
    opts.external_data = external_data;
    let r = py.detach(|| export_ckpt(&ckpt, &onnx, &opts)).map_err(|e| msf_err(&e))?;
    let d = PyDict::new(py);
    d.set_item("output", r.output)?;
    d.set_item("data_file", r.data_file)?;
    d.set_item("num_slots", r.config.slots.num_slots)?;
    d.set_item("slot_dim", r.config.slots.slot_dim)?;
    d.set_item("inference_params", r.inference_params)?;
    d.set_item("bytes", r.bytes)?;
    d.set_item("unexpected_keys", r.unexpected_keys)?;
    d.set_item("seconds", r.elapsed.as_secs_f64())?;
    Ok(d)
}
