//! `import msf`: the MSF runtime as a Python extension module (`msf._msf`, re-exported by
//! `msf/__init__.py`). A thin shell over `msf_runtime` and `msf_exporter`, as the C ABI
//! (`runtime/capi`) is:
//!
//! - [`image`]: a numpy array → a borrowed [`msf_runtime::ImageView`] (any strides whose pixels are
//!   packed; anything else is copied once), bad arrays refused with `ValueError`/`TypeError`;
//! - [`decompose`]: `Decomposer`, `Decomposition`, `Tracker`; the GIL is released while frames are
//!   decomposed, so Python threads sharing one `Decomposer` run in parallel;
//! - [`frames`]: `msf.frames(source)`, the runtime's sources (image, folder, glob, video, camera);
//! - [`export`]: `msf.export(ckpt, onnx)`, the exporter library;
//! - errors: every library error is an `msf.MsfError` (a `RuntimeError`) carrying the library's
//!   message and its causes on one line.

mod decompose;
mod export;
mod frames;
mod image;

use pyo3::prelude::*;

pyo3::create_exception!(
    msf,
    MsfError,
    pyo3::exceptions::PyRuntimeError,
    "An error from the MSF runtime or exporter (model, input, inference, output); the message is the library's, with its causes."
);

/// A library error as `msf.MsfError`, its cause chain on one line (as `msf-run` prints it).
pub(crate) fn msf_err(e: &(dyn std::error::Error + 'static)) -> PyErr {
    MsfError::new_err(msf_runtime::error::one_line(e))
}

/// A runtime error: `ValueError` for what the caller's array got wrong (empty, short buffer),
/// `msf.MsfError` for everything else.
pub(crate) fn runtime_err(e: msf_runtime::Error) -> PyErr {
    use msf_runtime::Error as E;
    match e {
        E::ZeroSizeView { .. } | E::StrideTooSmall { .. } | E::BufferTooShort { .. } => {
            pyo3::exceptions::PyValueError::new_err(msf_runtime::error::one_line(&e))
        }
        e => msf_err(&e),
    }
}

/// Parse one of the library's named options (`fit`, `backend`, …) or raise `ValueError`.
pub(crate) fn parse_named<T: std::str::FromStr<Err = String>>(s: &str) -> PyResult<T> {
    s.parse().map_err(pyo3::exceptions::PyValueError::new_err)
}

#[pymodule]
#[pyo3(name = "_msf")]
fn msf_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MsfError", m.py().get_type::<MsfError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FEATURES", features())?;
    m.add_class::<decompose::PyDecomposer>()?;
    m.add_class::<decompose::PyDecomposition>()?;
    m.add_class::<decompose::PyTracker>()?;
    m.add_class::<frames::PyFrames>()?;
    m.add_class::<frames::PyFrame>()?;
    m.add_function(wrap_pyfunction!(frames::frames, m)?)?;
    m.add_function(wrap_pyfunction!(frames::sequence_names, m)?)?;
    m.add_function(wrap_pyfunction!(export::export, m)?)?;
    Ok(())
}

/// The optional parts this build has: `ort`, `video`, `camera`.
fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "ort") {
        f.push("ort");
    }
    if cfg!(feature = "video") {
        f.push("video");
    }
    if cfg!(feature = "camera") {
        f.push("camera");
    }
    f
}
