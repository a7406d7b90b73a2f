//! numpy arrays in: an `H×W×3`, `H×W×4`, `H×W×1` or `H×W` uint8 array becomes a borrowed
//! [`ImageView`] without a copy when each pixel's bytes are packed (any row stride: a crop of a
//! larger image, a padded buffer); other layouts (column steps, negative strides, Fortran order)
//! are copied once into packed rows. The same checks as the C ABI's `msf_decompose`: the library's
//! [`ImageView::new`] checks the stride and buffer length.

use std::borrow::Cow;

use msf_runtime::{ImageView, PixelFormat};
use numpy::{PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// One frame's pixels, borrowed from a numpy array or copied from it.
pub(crate) struct Pixels<'a> {
    data: Cow<'a, [u8]>,
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
}

impl Pixels<'_> {
    pub(crate) fn view(&self) -> PyResult<ImageView<'_>> {
        ImageView::new(&self.data, self.width, self.height, self.stride, self.format).map_err(crate::runtime_err)
    }
}

/// Check that `obj` is a uint8 numpy array and take a read-only borrow of it.
pub(crate) fn borrow_array<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, u8>> {
    let untyped = obj.cast::<PyUntypedArray>().map_err(|_| {
        let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("an image must be a numpy.ndarray of uint8 (H×W×3, H×W×4 or H×W), got {ty}"))
    })?;
    let dtype = untyped.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<u8>(obj.py())) {
        let name = dtype.str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
        return Err(PyValueError::new_err(format!(
            "an image must be a uint8 array, got dtype {name} (convert with .astype(numpy.uint8) after scaling to 0..255)"
        )));
    }
    let typed = obj.cast::<PyArrayDyn<u8>>().map_err(|e| PyValueError::new_err(e.to_string()))?;
    typed.try_readonly().map_err(|e| PyValueError::new_err(format!("the image array cannot be read: {e}")))
}

/// The pixel format of an array of `channels` channels (`None`: 2-D).
fn format_of(channels: Option<usize>, bgr: bool) -> Option<PixelFormat> {
    Some(match (channels, bgr) {
        (None | Some(1), _) => PixelFormat::Gray8,
        (Some(3), false) => PixelFormat::Rgb8,
        (Some(3), true) => PixelFormat::Bgr8,
        (Some(4), false) => PixelFormat::Rgba8,
        (Some(4), true) => PixelFormat::Bgra8,
        _ => return None,
    })
}

/// The pixels of a borrowed array: zero-copy when the pixel bytes are packed and rows go forward.
pub(crate) fn pixels<'a>(arr: &'a PyReadonlyArrayDyn<'_, u8>, bgr: bool) -> PyResult<Pixels<'a>> {
    let a = arr.as_array();
    let shape = a.shape();
    // As numpy prints a shape: (48, 64, 3).
    let shown = format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ") + if shape.len() == 1 { "," } else { "" });
    let channels = match shape.len() {
        2 => None,
        3 => Some(shape[2]),
        _ => None,
    };
    let format = match (shape.len(), format_of(channels, bgr)) {
        (2 | 3, Some(f)) => f,
        _ => {
            return Err(PyValueError::new_err(format!(
                "an image must be H×W×3 (RGB, or BGR with bgr=True), H×W×4 (RGBA/BGRA) or H×W (grey) uint8, got shape {shown}"
            )))
        }
    };
    let (h, w) = (shape[0], shape[1]);
    let (Ok(height), Ok(width)) = (u32::try_from(h), u32::try_from(w)) else {
        return Err(PyValueError::new_err(format!("an image of {w}×{h} pixels is too large")));
    };
    if h == 0 || w == 0 {
        return Err(PyValueError::new_err(format!("an image must have pixels, got shape {shown}")));
    }
    let bpp = format.bytes_per_pixel();
    let strides = a.strides();
    // A step along an axis of length 1 is never taken, so numpy may report anything for it.
    let pixel_step = w == 1 || strides[1] == bpp as isize;
    let channel_step = shape.len() == 2 || shape[2] == 1 || strides[2] == 1;
    let packed_pixels = pixel_step && channel_step;
    let row = w * bpp;
    // Rows forward and not overlapping (a single row may have any stride).
    let stride = if h == 1 { Some(row) } else { usize::try_from(strides[0]).ok().filter(|&s| s >= row) };
    if let (true, Some(stride)) = (packed_pixels, stride) {
        // Safety: the read-only borrow `arr` keeps the array (and its buffer) alive and registered as
        // borrowed for 'a; the rows lie at `stride` bytes apart from the first element, the last row
        // holds `row` bytes: exactly the bytes numpy's shape and strides address.
        let len = (h - 1) * stride + row;
        let data = unsafe { std::slice::from_raw_parts(a.as_ptr(), len) };
        return Ok(Pixels { data: Cow::Borrowed(data), width, height, stride, format });
    }
    // Any other layout: one copy into packed rows, in logical (C) order.
    let data: Vec<u8> = a.iter().copied().collect();
    Ok(Pixels { data: Cow::Owned(data), width, height, stride: row, format })
}
