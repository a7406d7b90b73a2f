//! `msf.frames(source)`: the runtime's frame sources ([`msf_runtime::source::open`]) as a Python
//! iterator of `msf.Frame`s (RGB uint8 arrays); decoding runs without the GIL.

use std::path::PathBuf;
use std::sync::Mutex;

use msf_runtime::source::{open, FrameSource, SourceOptions};
use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::runtime_err;

/// The frames of an image file, a folder or glob of images, a video file or stream, or a camera.
#[pyclass(name = "Frames", module = "msf", frozen)]
pub struct PyFrames {
    source: Mutex<Box<dyn FrameSource>>,
    len_hint: Option<u64>,
    description: String,
}

/// One decoded frame.
#[pyclass(name = "Frame", module = "msf", frozen)]
pub struct PyFrame {
    /// H×W×3 uint8 RGB.
    #[pyo3(get)]
    image: Py<PyArray3<u8>>,
    /// The image's file stem, or `frame_000123` for video and camera frames.
    #[pyo3(get)]
    name: String,
    /// Position in the source, counting skipped frames too.
    #[pyo3(get)]
    index: u64,
    /// Presentation time in seconds (video, camera), else None.
    #[pyo3(get)]
    pts: Option<f64>,
}

#[pymethods]
impl PyFrame {
    fn __repr__(&self) -> String {
        format!("msf.Frame({:?}, index={})", self.name, self.index)
    }
}

/// Open `source` as `msf-run` reads an input (see `msf.Frames`).
#[pyfunction]
#[pyo3(signature = (source, *, every = 1, start = 0, max_frames = None))]
pub fn frames(py: Python<'_>, source: PathBuf, every: u64, start: u64, max_frames: Option<u64>) -> PyResult<PyFrames> {
    if every == 0 {
        return Err(PyValueError::new_err("every must be at least 1"));
    }
    let opts = SourceOptions { every, start, max_frames, ..SourceOptions::default() };
    let src = py.detach(|| open(&source, &opts)).map_err(runtime_err)?;
    Ok(PyFrames { len_hint: src.len_hint(), description: src.describe(), source: Mutex::new(src) })
}

/// The sequence name `msf-run --layout davis` gives each input (a folder's name, a video's stem;
/// consecutive image files are one sequence), before repeated names are made unique (`name_2`).
#[pyfunction]
pub fn sequence_names(inputs: Vec<PathBuf>) -> Vec<String> {
    msf_runtime::sink::sequence_names(&inputs)
}

#[pymethods]
impl PyFrames {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyFrame>> {
        let next = py.detach(|| self.source.lock().unwrap_or_else(|p| p.into_inner()).next());
        let Some(frame) = next.transpose().map_err(runtime_err)? else { return Ok(None) };
        let (h, w) = (frame.height as usize, frame.width as usize);
        let image = Array3::from_shape_vec((h, w, 3), frame.data).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Some(PyFrame { image: image.into_pyarray(py).unbind(), name: frame.name, index: frame.index, pts: frame.pts_seconds }))
    }

    /// Frames the source will yield, when known up front (folders, most videos), else None.
    #[getter]
    fn len_hint(&self) -> Option<u64> {
        self.len_hint
    }

    fn __repr__(&self) -> String {
        format!("msf.Frames({})", self.description)
    }
}
