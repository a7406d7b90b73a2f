//! `msf.Decomposer`, `msf.Decomposition` and `msf.Tracker`: [`msf_runtime::Decomposer`],
//! [`msf_runtime::Decomposition`] and [`msf_runtime::Tracker`] with numpy arrays in and out. Every
//! call that runs the model (and loading one) releases the GIL.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use msf_runtime::sink::{davis, json, npy, png, LabelMap, MaskRes};
use msf_runtime::track::TrackerOptions;
use msf_runtime::{BackendKind, Decomposer, Decomposition, Fit, ImageView, Provider, Tracker};
use numpy::ndarray::{Array1, Array2, Array3};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::image::{borrow_array, pixels};
use crate::{msf_err, parse_named, runtime_err};

/// A loaded model; safe to share between threads (the GIL is released while it runs).
#[pyclass(name = "Decomposer", module = "msf", frozen)]
pub struct PyDecomposer {
    pub(crate) inner: Arc<Decomposer>,
}

#[pymethods]
impl PyDecomposer {
    /// Load an ONNX model written by `msf-export` / `msf.export` (a path, or the file's bytes).
    #[new]
    #[pyo3(signature = (model, backend = "tract", threads = None, fit = None, concurrency = 1, provider = "cpu", allow_fallback = false))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        backend: &str,
        threads: Option<usize>,
        fit: Option<&str>,
        concurrency: usize,
        provider: &str,
        allow_fallback: bool,
    ) -> PyResult<Self> {
        let mut b = Decomposer::builder()
            .backend(parse_named::<BackendKind>(backend)?)
            .provider(parse_named::<Provider>(provider)?)
            .concurrency(concurrency.max(1))
            .allow_fallback(allow_fallback);
        if let Some(t) = threads {
            if t == 0 {
                return Err(PyValueError::new_err("threads must be at least 1 (None: the backend's default)"));
            }
            b = b.threads(t);
        }
        if let Some(f) = fit {
            b = b.fit(parse_named::<Fit>(f)?);
        }
        let dec = if let Ok(bytes) = model.cast::<PyBytes>() {
            let bytes = bytes.as_bytes().to_vec();
            py.detach(move || b.build_from_bytes(&bytes))
        } else {
            let path: PathBuf = model
                .extract()
                .map_err(|_| pyo3::exceptions::PyTypeError::new_err("model must be a path (str or os.PathLike) or the ONNX file's bytes"))?;
            py.detach(move || b.build(&path))
        }
        .map_err(|e| msf_err(&e))?;
        Ok(PyDecomposer { inner: Arc::new(dec) })
    }

    /// Decompose one frame: an H×W×3 (RGB; BGR with `bgr=True`), H×W×4 (RGBA/BGRA) or H×W (grey)
    /// uint8 array, any strides.
    #[pyo3(signature = (image, *, bgr = false))]
    fn decompose(&self, py: Python<'_>, image: &Bound<'_, PyAny>, bgr: bool) -> PyResult<PyDecomposition> {
        let arr = borrow_array(image)?;
        let px = pixels(&arr, bgr)?;
        let view = px.view()?;
        let d = py.detach(|| self.inner.decompose(&view)).map_err(runtime_err)?;
        Ok(PyDecomposition { d })
    }

    /// Decompose several frames in one inference call (sizes may differ).
    #[pyo3(signature = (images, *, bgr = false))]
    fn decompose_batch(&self, py: Python<'_>, images: Vec<Bound<'_, PyAny>>, bgr: bool) -> PyResult<Vec<PyDecomposition>> {
        let arrs = images.iter().map(borrow_array).collect::<PyResult<Vec<_>>>()?;
        let pxs = arrs.iter().map(|a| pixels(a, bgr)).collect::<PyResult<Vec<_>>>()?;
        let views = pxs.iter().map(|p| p.view()).collect::<PyResult<Vec<ImageView>>>()?;
        let ds = py.detach(|| self.inner.decompose_batch(&views)).map_err(runtime_err)?;
        Ok(ds.into_iter().map(|d| PyDecomposition { d }).collect())
    }

    /// K: slots per model view.
    #[getter]
    fn num_slots(&self) -> usize {
        self.inner.info().num_slots
    }
    /// D: values per slot vector.
    #[getter]
    fn slot_dim(&self) -> usize {
        self.inner.info().slot_dim
    }
    /// Side of the attention grid.
    #[getter]
    fn grid(&self) -> usize {
        self.inner.info().grid
    }
    /// Side of the model-resolution mask (the model's input).
    #[getter]
    fn mask_size(&self) -> usize {
        self.inner.info().mask_size
    }
    /// Whether the model has the `slots_init` input (a `Tracker` then carries slots).
    #[getter]
    fn slots_input(&self) -> bool {
        self.inner.info().slots_input
    }
    /// `tract` or `onnxruntime`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.inner.backend_name()
    }
    /// The execution provider in use.
    #[getter]
    fn provider(&self) -> String {
        self.inner.provider().to_string()
    }
    /// How frames are fitted into the model's square input: crop, stretch, pad or tiles.
    #[getter]
    fn fit(&self) -> &'static str {
        self.inner.fit().as_str()
    }
    /// The learned initial slots (K×D float32), when the model has the `slots_init` input.
    #[getter]
    fn default_slots<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray2<f32>>>> {
        let info = self.inner.info();
        self.inner.default_slots().map(|s| array2(py, info.num_slots, info.slot_dim, s.to_vec())).transpose()
    }

    fn __repr__(&self) -> String {
        let i = self.inner.info();
        format!(
            "msf.Decomposer(backend={:?}, fit={:?}, slots={}×{}, grid={}, mask={})",
            self.inner.backend_name(),
            self.inner.fit().as_str(),
            i.num_slots,
            i.slot_dim,
            i.grid,
            i.mask_size
        )
    }
}

fn array2<T: numpy::Element>(py: Python<'_>, rows: usize, cols: usize, v: Vec<T>) -> PyResult<Bound<'_, PyArray2<T>>> {
    Array2::from_shape_vec((rows, cols), v).map(|a| a.into_pyarray(py)).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// One frame's objects.
#[pyclass(name = "Decomposition", module = "msf", frozen)]
pub struct PyDecomposition {
    pub(crate) d: Decomposition,
}

impl PyDecomposition {
    fn labels(&self) -> LabelMap {
        LabelMap::new(&self.d, MaskRes::Frame)
    }
}

#[pymethods]
impl PyDecomposition {
    /// H×W uint8: the slot id of every frame pixel (255 where no model view covers it: outside the
    /// centre crop of fit "crop"). What `msf-run` writes to `masks/<name>.png`.
    #[getter]
    fn masks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u8>>> {
        array2(py, self.d.frame_height as usize, self.d.frame_width as usize, self.d.mask_in_frame())
    }
    /// M×M uint8: the model's own mask of its (first) view, before it is mapped to the frame.
    #[getter]
    fn view_mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u8>>> {
        array2(py, self.d.mask_size, self.d.mask_size, self.d.mask.clone())
    }
    /// K×D float32 slot vectors.
    #[getter]
    fn slots<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        array2(py, self.d.num_slots, self.d.slot_dim, self.d.slots.clone())
    }
    /// K×G×G float32: the last slot-attention iteration's softmax over slots, per grid cell.
    #[getter]
    fn attention<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let g = self.d.grid;
        Array3::from_shape_vec((self.d.num_slots, g, g), self.d.attn.clone())
            .map(|a| a.into_pyarray(py))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }
    /// K×4 int64 boxes `[x, y, width, height]` (COCO order) of each slot's pixels in `masks`;
    /// all zeros for a slot with no pixel.
    #[getter]
    fn boxes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let k = self.d.num_slots;
        let v = self.labels().extents(k).iter().flat_map(|e| e.bbox.unwrap_or([0; 4]).map(i64::from)).collect();
        array2(py, k, 4, v)
    }
    /// K int64: pixels of `masks` each slot has.
    #[getter]
    fn areas<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let a: Vec<i64> = self.labels().extents(self.d.num_slots).iter().map(|e| e.area as i64).collect();
        Array1::from_vec(a).into_pyarray(py)
    }
    /// Number of objects (K; with fit "tiles" the merged count, which may exceed K).
    #[getter]
    fn num_slots(&self) -> usize {
        self.d.num_slots
    }
    #[getter]
    fn width(&self) -> u32 {
        self.d.frame_width
    }
    #[getter]
    fn height(&self) -> u32 {
        self.d.frame_height
    }
    /// Whether every frame pixel has a slot (no 255 in `masks`).
    #[getter]
    fn covers_frame(&self) -> bool {
        self.d.covers_frame()
    }
    /// Where the model's view lies: `{"frame": [x, y, w, h], "input": [x, y, w, h], "size": S,
    /// "tiled": bool}` (frame pixels; the rectangle of the S×S model input they fill).
    #[getter]
    fn view<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.d.placement;
        let r = |r: msf_runtime::fit::Rect| [r.x, r.y, r.width, r.height];
        let dict = PyDict::new(py);
        dict.set_item("frame", r(p.frame).to_vec())?;
        dict.set_item("input", r(p.input).to_vec())?;
        dict.set_item("size", p.size)?;
        dict.set_item("tiled", self.d.frame_labels.is_some())?;
        Ok(dict)
    }

    /// COCO compressed RLE of each slot's mask (`{"size": [h, w], "counts": str}`), as
    /// `decomposition.json` holds them; `pycocotools.mask.decode` reads them as they are.
    fn coco_rle<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let map = self.labels();
        let out = PyList::empty(py);
        for counts in json::rle_counts(&map, self.d.num_slots) {
            let rle = PyDict::new(py);
            rle.set_item("size", [map.height, map.width].to_vec())?;
            rle.set_item("counts", json::rle_string(&counts))?;
            out.append(rle)?;
        }
        Ok(out)
    }

    /// Write `masks` as `msf-run` does: a palette PNG of slot ids (255 = void), or with `davis=True`
    /// its `--layout davis` form (slot id + 1, 0 = no slot). Written atomically; the folder must exist.
    #[pyo3(signature = (path, *, davis = false))]
    fn save_mask(&self, py: Python<'_>, path: PathBuf, davis: bool) -> PyResult<()> {
        let map = self.labels();
        let map = if davis { davis::davis_labels(&map) } else { map };
        py.detach(|| png::write_mask(&path, &map)).map_err(|e| msf_err(&e))
    }
    /// Write `slots` as a K×D float32 `.npy`, as `msf-run` does (`slots/<name>.npy`).
    fn save_slots(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let d = &self.d;
        py.detach(|| npy::write_f32(&path, &[d.num_slots, d.slot_dim], &d.slots)).map_err(|e| msf_err(&e))
    }
    /// Write `attention` as a K×G×G float32 `.npy` (`msf-run --save-attn`).
    fn save_attention(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let d = &self.d;
        py.detach(|| npy::write_f32(&path, &[d.num_slots, d.grid, d.grid], &d.attn)).map_err(|e| msf_err(&e))
    }

    fn __repr__(&self) -> String {
        format!("msf.Decomposition({}×{} frame, {} slots of {})", self.d.frame_width, self.d.frame_height, self.d.num_slots, self.d.slot_dim)
    }
}

/// One video stream: slots carried from frame to frame, ids kept by Hungarian matching.
#[pyclass(name = "Tracker", module = "msf", frozen)]
pub struct PyTracker {
    inner: Mutex<Tracker>,
}

#[pymethods]
impl PyTracker {
    /// `temporal=None`: carry slots when the model has the `slots_init` input.
    #[new]
    #[pyo3(signature = (decomposer, *, temporal = None, matching = true, iou_weight = 0.5))]
    fn new(decomposer: &PyDecomposer, temporal: Option<bool>, matching: bool, iou_weight: f32) -> PyResult<Self> {
        let dec = Arc::clone(&decomposer.inner);
        let temporal = temporal.unwrap_or(dec.info().slots_input);
        let t = Tracker::with_options(dec, TrackerOptions { temporal, matching, iou_weight }).map_err(|e| msf_err(&e))?;
        Ok(PyTracker { inner: Mutex::new(t) })
    }

    /// Decompose the stream's next frame (same arrays as `Decomposer.decompose`).
    #[pyo3(signature = (image, *, bgr = false))]
    fn step(&self, py: Python<'_>, image: &Bound<'_, PyAny>, bgr: bool) -> PyResult<PyDecomposition> {
        let arr = borrow_array(image)?;
        let px = pixels(&arr, bgr)?;
        let view = px.view()?;
        let d = py.detach(|| self.lock().step(&view)).map_err(runtime_err)?;
        Ok(PyDecomposition { d })
    }

    /// Forget the stream (a new video, a scene cut).
    fn reset(&self) {
        self.lock().reset()
    }
    /// Frames since creation or the last `reset()`.
    #[getter]
    fn frames(&self) -> u64 {
        self.lock().frames()
    }
    /// Whether slots are carried from frame to frame.
    #[getter]
    fn temporal(&self) -> bool {
        self.lock().is_temporal()
    }
    /// Output slot i of the last frame is the model's slot `last_order[i]`.
    #[getter]
    fn last_order(&self) -> Vec<usize> {
        self.lock().last_order().to_vec()
    }
}

impl PyTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A panic inside `step` is raised in Python; the tracker's state stays usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
