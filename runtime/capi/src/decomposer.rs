//! Loading a model (`msf_decomposer_*`) and decomposing one frame (`msf_decompose`).

use crate::handle::{self, Kind, MsfDecomposer, MsfResult, Object};
use crate::result::ResultData;
use crate::status::{guard, non_null, FfiResult, Failure, MsfStatus};
use runtime::{BackendKind, Decomposer, Fit, ImageView, PixelFormat, Provider};
use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::Arc;

/// Layout of one pixel of an input buffer: one of the `MSF_PIXEL_FORMAT_*` values. A plain integer
/// rather than a C enum so that any value a caller passes is safe (unknown values are refused with
/// `MSF_STATUS_INVALID_ARGUMENT`).
pub type MsfPixelFormat = u32;
/// 3 bytes per pixel, R G B.
pub const MSF_PIXEL_FORMAT_RGB8: MsfPixelFormat = 0;
/// 3 bytes per pixel, B G R (OpenCV's `CV_8UC3`, ROS `bgr8`).
pub const MSF_PIXEL_FORMAT_BGR8: MsfPixelFormat = 1;
/// 4 bytes per pixel, R G B A; alpha is ignored.
pub const MSF_PIXEL_FORMAT_RGBA8: MsfPixelFormat = 2;
/// 4 bytes per pixel, B G R A; alpha is ignored.
pub const MSF_PIXEL_FORMAT_BGRA8: MsfPixelFormat = 3;
/// 1 byte per pixel, grey (replicated to R = G = B).
pub const MSF_PIXEL_FORMAT_GRAY8: MsfPixelFormat = 4;

/// Inference backend: one of the `MSF_BACKEND_*` values.
pub type MsfBackend = u32;
/// tract: pure Rust, CPU, always available (the default).
pub const MSF_BACKEND_TRACT: MsfBackend = 0;
/// onnxruntime, loaded at run time (`ORT_DYLIB_PATH`); only in builds with the `ort` feature,
/// `MSF_STATUS_UNSUPPORTED` otherwise.
pub const MSF_BACKEND_ONNXRUNTIME: MsfBackend = 1;

/// Execution provider of the onnxruntime backend: one of the `MSF_PROVIDER_*` values.
pub type MsfProvider = u32;
/// The CPU (the only provider of the tract backend).
pub const MSF_PROVIDER_CPU: MsfProvider = 0;
/// NVIDIA CUDA (onnxruntime backend).
pub const MSF_PROVIDER_CUDA: MsfProvider = 1;
/// NVIDIA TensorRT (onnxruntime backend).
pub const MSF_PROVIDER_TENSORRT: MsfProvider = 2;

/// How a frame that is not square is put into the model's square input: one of the `MSF_FIT_*`
/// values (a plain integer, as `MsfPixelFormat`: unknown values are refused with
/// `MSF_STATUS_INVALID_ARGUMENT`). Every fit gives a mask for the frame (`msf_result_mask_frame`);
/// `msf_result_view` says where the model-resolution mask lies in it.
pub type MsfFit = u32;
/// Centre crop to the largest square, as upstream MSF evaluates: the sides of a wide frame get no
/// object (`MSF_MASK_VOID` in `msf_result_mask_frame`). What programs built against the headers of
/// version 1 and 2 of `MsfOptions` (without `fit`) get.
pub const MSF_FIT_CROP: MsfFit = 0;
/// The whole frame resized to the square (objects squeezed): the default of `msf_options_default()`.
pub const MSF_FIT_STRETCH: MsfFit = 1;
/// The whole frame resized keeping its aspect ratio, centred on a square of the normalisation's mean
/// colour (fewer pixels per object).
pub const MSF_FIT_PAD: MsfFit = 2;
/// Overlapping squares of the frame's short side along its long side, one inference each, their
/// objects merged into one set of ids: the most accurate and the slowest (2-3 inferences for 4:3 to
/// 16:9). The number of objects then varies per frame and may exceed the model's K (read it with
/// `msf_result_num_slots`); not usable with trackers (`msf_tracker_create` refuses it).
pub const MSF_FIT_TILES: MsfFit = 3;

/// How to load a model. Start from `msf_options_default()` and change fields; `struct_size` lets
/// later versions add fields without breaking programs built against this header.
///
/// Versions: 1 (20 bytes) up to `allow_fallback`, 2 (24 bytes) added `concurrency`, 3 (28 bytes)
/// added `fit`. A program built against an older header passes its smaller `struct_size` and gets
/// the defaults of the fields it does not know, except `fit`, which is then `MSF_FIT_CROP`, the
/// behaviour that program was built for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MsfOptions {
    /// `sizeof(MsfOptions)`; set by `msf_options_default()`.
    pub struct_size: u32,
    /// `MSF_BACKEND_*`.
    pub backend: MsfBackend,
    /// `MSF_PROVIDER_*` (onnxruntime only).
    pub provider: MsfProvider,
    /// Worker threads for the backend's kernels; 0 = the backend's default.
    pub threads: u32,
    /// Non-zero: fall back to the CPU when the requested provider cannot be used, instead of failing.
    pub allow_fallback: u32,
    /// How many threads will call `msf_decompose` (or step trackers) on this model at the same
    /// time; 0 or 1 = one. onnxruntime then keeps this many sessions, so the calls run in parallel
    /// instead of waiting for each other (tract serves any number from one plan). Pair it with
    /// `threads` = cores / concurrency. Added in version 2 of this struct: programs built against
    /// the older header pass a smaller `struct_size` and get one.
    pub concurrency: u32,
    /// `MSF_FIT_*`: how frames that are not square are fitted into the model's input;
    /// `msf_options_default()` sets `MSF_FIT_STRETCH` (masks cover the whole frame). Added in
    /// version 3 of this struct: programs built against an older header pass a smaller
    /// `struct_size` and get `MSF_FIT_CROP`, the centre crop they were built for.
    pub fit: MsfFit,
}

/// `struct_size` of the first `MsfOptions` (without `concurrency`), still accepted.
const OPTIONS_V1_SIZE: u32 = 5 * 4;
/// `struct_size` of the second `MsfOptions` (with `concurrency`, without `fit`), still accepted.
const OPTIONS_V2_SIZE: u32 = 6 * 4;
/// Bytes of `MsfOptions` up to and including `fit`: a `struct_size` below this means a program
/// built before `fit` existed.
const OPTIONS_FIT_END: usize = std::mem::offset_of!(MsfOptions, fit) + std::mem::size_of::<MsfFit>();

/// Shapes of a loaded model.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsfModelInfo {
    /// K: the model's slots (objects) per inference. A result has K objects, except with
    /// `MSF_FIT_TILES`, whose merged results have their own count (possibly more than K): read it
    /// from each result with `msf_result_num_slots`.
    pub num_slots: u32,
    /// D: values per slot vector.
    pub slot_dim: u32,
    /// Side of the attention grid.
    pub grid: u32,
    /// Side of the model-resolution mask (the model's input, 256; see `msf_result_view`).
    pub mask_size: u32,
    /// Non-zero when the graph has the `slots_init` input (every export but `--no-slots-in`): trackers
    /// then carry slots from frame to frame.
    pub slots_input: u32,
}

/// The default options: tract on the CPU with its default thread count, one calling thread,
/// `MSF_FIT_STRETCH`.
#[no_mangle]
pub extern "C" fn msf_options_default() -> MsfOptions {
    MsfOptions {
        struct_size: std::mem::size_of::<MsfOptions>() as u32,
        backend: MSF_BACKEND_TRACT,
        provider: MSF_PROVIDER_CPU,
        threads: 0,
        allow_fallback: 0,
        concurrency: 0,
        fit: MSF_FIT_STRETCH,
    }
}

/// Copy the caller's options, reading only the `struct_size` bytes a caller built against an
/// older header provides; fields it does not know keep their defaults, except `fit`, which is
/// `MSF_FIT_CROP` for callers built before it existed (the behaviour they were built for).
///
/// # Safety
/// `options` must point to at least 4 readable bytes, and to `struct_size` bytes when that is
/// not more than this library's `MsfOptions`.
unsafe fn read_options(options: *const MsfOptions) -> MsfOptions {
    // SAFETY: every version starts with the u32 `struct_size`; read unaligned so that a packed or
    // byte-buffer copy from a foreign language also works.
    let size = unsafe { options.cast::<u32>().read_unaligned() } as usize;
    let mut out = msf_options_default();
    let n = size.min(std::mem::size_of::<MsfOptions>());
    // SAFETY: `n` bytes are readable (the caller's contract) and fit in `out`.
    unsafe { std::ptr::copy_nonoverlapping(options.cast::<u8>(), (&mut out as *mut MsfOptions).cast::<u8>(), n) };
    out.struct_size = size as u32;
    if size < OPTIONS_FIT_END {
        out.fit = MSF_FIT_CROP;
    }
    out
}

fn fit_from(f: MsfFit) -> FfiResult<Fit> {
    Ok(match f {
        MSF_FIT_CROP => Fit::Crop,
        MSF_FIT_STRETCH => Fit::Stretch,
        MSF_FIT_PAD => Fit::Pad,
        MSF_FIT_TILES => Fit::Tiles,
        _ => {
            return Err(Failure::invalid(format!(
                "unknown fit {f} (use one of MSF_FIT_CROP, MSF_FIT_STRETCH, MSF_FIT_PAD, MSF_FIT_TILES: 0..=3)"
            )))
        }
    })
}

/// The `MSF_FIT_*` value of a fit.
pub(crate) fn fit_to_c(f: Fit) -> MsfFit {
    match f {
        Fit::Crop => MSF_FIT_CROP,
        Fit::Stretch => MSF_FIT_STRETCH,
        Fit::Pad => MSF_FIT_PAD,
        Fit::Tiles => MSF_FIT_TILES,
    }
}

fn pixel_format(f: MsfPixelFormat) -> FfiResult<PixelFormat> {
    Ok(match f {
        MSF_PIXEL_FORMAT_RGB8 => PixelFormat::Rgb8,
        MSF_PIXEL_FORMAT_BGR8 => PixelFormat::Bgr8,
        MSF_PIXEL_FORMAT_RGBA8 => PixelFormat::Rgba8,
        MSF_PIXEL_FORMAT_BGRA8 => PixelFormat::Bgra8,
        MSF_PIXEL_FORMAT_GRAY8 => PixelFormat::Gray8,
        _ => return Err(Failure::invalid(format!("unknown pixel format {f} (use one of MSF_PIXEL_FORMAT_*, 0..=4)"))),
    })
}

/// (bytes the buffer must hold, effective stride) for an image, with every size checked.
fn image_layout(width: u32, height: u32, stride: usize, format: MsfPixelFormat) -> FfiResult<(usize, usize, PixelFormat)> {
    let fmt = pixel_format(format)?;
    if width == 0 || height == 0 {
        return Err(Failure::invalid(format!("image is {width}x{height}: width and height must be at least 1")));
    }
    let bpp = fmt.bytes_per_pixel();
    let row = (width as usize)
        .checked_mul(bpp)
        .ok_or_else(|| Failure::invalid(format!("a row of {width} pixels does not fit in memory")))?;
    let stride = if stride == 0 { row } else { stride };
    if stride < row {
        return Err(Failure::invalid(format!(
            "stride {stride} bytes is less than one row of {width} {fmt:?} pixels ({row} bytes)"
        )));
    }
    let need = (height as usize - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(row))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| Failure::invalid(format!("{height} rows of stride {stride} bytes do not fit in memory")))?;
    Ok((need, stride, fmt))
}

/// Borrow the caller's pixels as an [`ImageView`].
///
/// # Safety
/// `data` must be NULL or point to at least `image_layout(..).0` readable bytes that stay unchanged
/// for `'a`.
pub(crate) unsafe fn image_view<'a>(
    data: *const u8,
    width: u32,
    height: u32,
    stride: usize,
    format: MsfPixelFormat,
) -> FfiResult<ImageView<'a>> {
    let (need, stride, fmt) = image_layout(width, height, stride, format)?;
    let data = non_null(data, "data")?;
    // SAFETY: non-null, and the caller promises `need` bytes (the documented contract of `data`).
    let bytes = unsafe { std::slice::from_raw_parts(data, need) };
    Ok(ImageView::new(bytes, width, height, stride, fmt)?)
}

/// How many bytes a frame of this layout must hold: `(height - 1) * stride + width * bytes per
/// pixel` (the last row need not be padded). `stride` 0 means packed rows. The library cannot know
/// the size of the buffers it is given: check yours with this when it comes from elsewhere.
///
/// Errors: `MSF_STATUS_NULL_ARGUMENT` (`out`), `MSF_STATUS_INVALID_ARGUMENT` (zero size, stride
/// smaller than a row, unknown format, size overflow).
///
/// # Safety
/// `out` must be NULL or point to a writable `size_t`.
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
let mut n = 0usize;
assert_eq!(unsafe { msf_image_required_size(640, 480, 2048, MSF_PIXEL_FORMAT_BGR8, &mut n) }, MsfStatus::Ok);
assert_eq!(n, 479 * 2048 + 640 * 3);
assert_eq!(unsafe { msf_image_required_size(640, 480, 100, MSF_PIXEL_FORMAT_BGR8, &mut n) }, MsfStatus::InvalidArgument);
```
"#)]
#[no_mangle]
pub unsafe extern "C" fn msf_image_required_size(
    width: u32,
    height: u32,
    stride: usize,
    format: MsfPixelFormat,
    out: *mut usize,
) -> MsfStatus {
    guard("msf_image_required_size", || {
        let out = non_null(out, "out")?.cast_mut();
        let (need, _, _) = image_layout(width, height, stride, format)?;
        // SAFETY: checked non-null; the caller provides a writable size_t.
        unsafe { out.write(need) };
        Ok(())
    })
}

fn builder_from(opts: &MsfOptions) -> FfiResult<runtime::DecomposerBuilder> {
    let want = std::mem::size_of::<MsfOptions>() as u32;
    if opts.struct_size == 0 {
        return Err(Failure::invalid("MsfOptions.struct_size is 0: start from msf_options_default()"));
    }
    if opts.struct_size != OPTIONS_V1_SIZE && opts.struct_size != OPTIONS_V2_SIZE && opts.struct_size < want {
        return Err(Failure::invalid(format!(
            "MsfOptions.struct_size is {} but this library's MsfOptions has {want} bytes: start from msf_options_default()",
            opts.struct_size
        )));
    }
    let backend = match opts.backend {
        MSF_BACKEND_TRACT => BackendKind::Tract,
        MSF_BACKEND_ONNXRUNTIME => BackendKind::Ort,
        b => return Err(Failure::invalid(format!("unknown backend {b} (use MSF_BACKEND_TRACT or MSF_BACKEND_ONNXRUNTIME)"))),
    };
    let provider = match opts.provider {
        MSF_PROVIDER_CPU => Provider::Cpu,
        MSF_PROVIDER_CUDA => Provider::Cuda,
        MSF_PROVIDER_TENSORRT => Provider::Tensorrt,
        p => return Err(Failure::invalid(format!("unknown provider {p} (use one of MSF_PROVIDER_*)"))),
    };
    let fit = fit_from(opts.fit)?;
    let mut b = Decomposer::builder().backend(backend).provider(provider).allow_fallback(opts.allow_fallback != 0).fit(fit);
    if opts.threads > 0 {
        b = b.threads(opts.threads as usize);
    }
    if opts.concurrency > 1 {
        b = b.concurrency(opts.concurrency as usize);
    }
    Ok(b)
}

fn path_from(p: *const c_char) -> FfiResult<PathBuf> {
    // SAFETY: checked non-null by the caller; the contract is a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid("`onnx_path` is an empty string"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| Failure::invalid("`onnx_path` is not valid UTF-8"))
    }
}

/// Load an exported MSF model (`.onnx`) and write its handle to `*out`.
///
/// `options` may be NULL (defaults). On failure `*out` is set to NULL. The handle is thread-safe:
/// share one decomposer between all the threads and streams that use the same model, and free it
/// with `msf_decomposer_destroy`.
///
/// Errors: `MSF_STATUS_NULL_ARGUMENT` (`onnx_path`, `out`), `MSF_STATUS_INVALID_ARGUMENT` (options:
/// `struct_size`, unknown backend, provider or fit),
/// `MSF_STATUS_IO` (file missing or unreadable), `MSF_STATUS_MODEL` (not an MSF model),
/// `MSF_STATUS_UNSUPPORTED` (backend or provider not available).
///
/// # Safety
/// `onnx_path` must be NULL or a NUL-terminated string; `options` NULL or a valid `MsfOptions`;
/// `out` NULL or writable.
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
# let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
# let path = std::ffi::CString::new(model.path().to_str().unwrap()).unwrap();
let mut opts = msf_options_default();
opts.threads = 2;
let mut dec = std::ptr::null_mut();
let status = unsafe { msf_decomposer_create(path.as_ptr(), &opts, &mut dec) }; // e.g. c"slate.onnx"
assert_eq!(status, MsfStatus::Ok);
// ... msf_decompose(dec, ...) from any number of threads ...
assert_eq!(msf_decomposer_destroy(dec), MsfStatus::Ok);
```
"#)]
#[no_mangle]
pub unsafe extern "C" fn msf_decomposer_create(
    onnx_path: *const c_char,
    options: *const MsfOptions,
    out: *mut *mut MsfDecomposer,
) -> MsfStatus {
    guard("msf_decomposer_create", || {
        let out = non_null(out, "out")?.cast_mut();
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let path = path_from(non_null(onnx_path, "onnx_path")?)?;
        let opts = if options.is_null() {
            msf_options_default()
        } else {
            // SAFETY: non-null; the caller provides a valid MsfOptions of its header's version.
            unsafe { read_options(options) }
        };
        let dec = builder_from(&opts)?.build(&path)?;
        let h = handle::register(Object::Decomposer(Arc::new(dec)));
        // SAFETY: as above.
        unsafe { out.write(h as *mut MsfDecomposer) };
        Ok(())
    })
}

/// Free a decomposer. NULL is a no-op; a handle already destroyed gives
/// `MSF_STATUS_INVALID_HANDLE`. Trackers created from it keep the model loaded until they are
/// destroyed too, and a call running on another thread finishes first.
///
/// Any value is accepted: handles are looked up, never dereferenced.
#[no_mangle]
pub extern "C" fn msf_decomposer_destroy(dec: *mut MsfDecomposer) -> MsfStatus {
    guard("msf_decomposer_destroy", || handle::destroy(dec as usize, Kind::Decomposer, "dec"))
}

/// Shapes of the loaded model.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_decomposer_info(dec: *const MsfDecomposer, out: *mut MsfModelInfo) -> MsfStatus {
    guard("msf_decomposer_info", || {
        let out = non_null(out, "out")?.cast_mut();
        let d = handle::decomposer(dec, "dec")?;
        let i = d.info();
        let info = MsfModelInfo {
            num_slots: i.num_slots as u32,
            slot_dim: i.slot_dim as u32,
            grid: i.grid as u32,
            mask_size: i.mask_size as u32,
            slots_input: u32::from(i.slots_input),
        };
        // SAFETY: checked non-null; the caller provides a writable MsfModelInfo.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// Decompose one frame into slots and masks; the result goes to `*out` (NULL on failure) and is
/// freed with `msf_result_destroy`.
///
/// The frame is read in place and not retained: `data` points to `height` rows of `width` pixels in
/// `format`, each row starting `stride` bytes after the previous one (0 = packed). It must hold at
/// least `(height - 1) * stride + width * bytes_per_pixel` bytes (see `msf_image_required_size`):
/// the library cannot check that. Any aspect ratio works: the decomposer's `MsfOptions.fit` says how
/// the frame is put into the model's square input (stretched by default), and `msf_result_view` where
/// the model-resolution mask lies in the frame. The number of objects is the result's own
/// (`msf_result_num_slots`): the model's K, or with `MSF_FIT_TILES` the merged count.
///
/// Thread-safe: any number of threads may call this on one decomposer at once.
///
/// Errors: `MSF_STATUS_NULL_ARGUMENT` (`data`, `out`; `dec` NULL), `MSF_STATUS_INVALID_HANDLE`
/// (`dec`), `MSF_STATUS_INVALID_ARGUMENT` (sizes, stride, format), `MSF_STATUS_INFERENCE`.
///
/// # Safety
/// `data` must be NULL or hold the bytes described above; `out` NULL or writable.
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
# let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
# let path = std::ffi::CString::new(model.path().to_str().unwrap()).unwrap();
# let mut dec = std::ptr::null_mut();
# assert_eq!(unsafe { msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut dec) }, MsfStatus::Ok);
let (w, h) = (640u32, 480u32);
let bgr = vec![0u8; (w * h * 3) as usize];
let mut res = std::ptr::null_mut();
let st = unsafe { msf_decompose(dec, bgr.as_ptr(), w, h, 0, MSF_PIXEL_FORMAT_BGR8, &mut res) };
assert_eq!(st, MsfStatus::Ok);
let (mut mask, mut mw, mut mh) = (std::ptr::null(), 0, 0);
unsafe { msf_result_mask_frame(res, &mut mask, &mut mw, &mut mh) };
assert_eq!((mw, mh), (w, h)); // slot index per frame pixel (MSF_MASK_VOID outside the crop of MSF_FIT_CROP)
msf_result_destroy(res);
# msf_decomposer_destroy(dec);
```
"#)]
#[no_mangle]
pub unsafe extern "C" fn msf_decompose(
    dec: *const MsfDecomposer,
    data: *const u8,
    width: u32,
    height: u32,
    stride: usize,
    format: MsfPixelFormat,
    out: *mut *mut MsfResult,
) -> MsfStatus {
    guard("msf_decompose", || {
        let out = non_null(out, "out")?.cast_mut();
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let d = handle::decomposer(dec, "dec")?;
        // SAFETY: the documented contract of `data`.
        let view = unsafe { image_view(data, width, height, stride, format) }?;
        let r = d.decompose(&view)?;
        let h = handle::register(Object::Result(Arc::new(ResultData::new(r, d.fit()))));
        // SAFETY: as above.
        unsafe { out.write(h as *mut MsfResult) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(image_layout(4, 3, 0, MSF_PIXEL_FORMAT_RGBA8).unwrap().0, 48);
        assert_eq!(image_layout(4, 3, 20, MSF_PIXEL_FORMAT_RGB8).unwrap().0, 2 * 20 + 12);
        assert_eq!(image_layout(1, 1, 0, MSF_PIXEL_FORMAT_GRAY8).unwrap().0, 1);
        for (w, h, s, f) in [(0, 3, 0, 0), (3, 0, 0, 0), (4, 3, 11, 0), (4, 3, 0, 5), (2, u32::MAX, usize::MAX / 2, 0)] {
            let e = image_layout(w, h, s, f).unwrap_err();
            assert_eq!(e.status, MsfStatus::InvalidArgument, "{w}x{h} stride {s} format {f}: {}", e.message);
        }
    }

    #[test]
    fn options_are_checked() {
        let mut o = msf_options_default();
        assert!(builder_from(&o).is_ok());
        o.struct_size = 0;
        assert!(builder_from(&o).unwrap_err().message.contains("msf_options_default"));
        o = msf_options_default();
        o.backend = 9;
        assert!(builder_from(&o).unwrap_err().message.contains("unknown backend 9"));
        o = msf_options_default();
        o.provider = 3;
        assert_eq!(builder_from(&o).unwrap_err().status, MsfStatus::InvalidArgument);
        o = msf_options_default();
        o.struct_size = OPTIONS_V1_SIZE + 1;
        assert!(builder_from(&o).unwrap_err().message.contains("struct_size"));
        o.struct_size = OPTIONS_V2_SIZE + 1;
        assert!(builder_from(&o).unwrap_err().message.contains("struct_size"));
        o = msf_options_default();
        o.fit = 4;
        let e = builder_from(&o).unwrap_err();
        assert_eq!(e.status, MsfStatus::InvalidArgument);
        assert!(e.message.contains("unknown fit 4") && e.message.contains("MSF_FIT_TILES"), "{}", e.message);
        for (c, f) in [(MSF_FIT_CROP, Fit::Crop), (MSF_FIT_STRETCH, Fit::Stretch), (MSF_FIT_PAD, Fit::Pad), (MSF_FIT_TILES, Fit::Tiles)] {
            assert_eq!((fit_from(c).unwrap(), fit_to_c(f)), (f, c));
        }
    }

    #[test]
    fn the_default_fit_is_the_librarys() {
        assert_eq!(fit_from(msf_options_default().fit).unwrap(), Fit::default());
        assert_eq!(std::mem::size_of::<MsfOptions>(), OPTIONS_FIT_END, "`fit` is the last field of version 3");
        assert_eq!(OPTIONS_FIT_END, 7 * 4);
    }

    /// A program built against the first header passes a 20-byte struct: only those bytes are
    /// read, and `concurrency` keeps its default.
    #[test]
    fn options_of_the_first_version_are_read_as_far_as_they_go() {
        #[repr(C)]
        struct V1 {
            struct_size: u32,
            backend: u32,
            provider: u32,
            threads: u32,
            allow_fallback: u32,
        }
        let v1 = V1 { struct_size: OPTIONS_V1_SIZE, backend: MSF_BACKEND_TRACT, provider: MSF_PROVIDER_CPU, threads: 3, allow_fallback: 1 };
        assert_eq!(std::mem::size_of::<V1>() as u32, OPTIONS_V1_SIZE);
        let o = unsafe { read_options((&v1 as *const V1).cast()) };
        assert_eq!((o.struct_size, o.threads, o.allow_fallback, o.concurrency), (OPTIONS_V1_SIZE, 3, 1, 0));
        assert_eq!(o.fit, MSF_FIT_CROP, "built before `fit`: the centre crop it was built for");
        assert!(builder_from(&o).is_ok());
        let mut v3 = msf_options_default();
        v3.concurrency = 4;
        v3.fit = MSF_FIT_PAD;
        assert_eq!(unsafe { read_options(&v3) }, v3);
    }

    /// A program built against the second header (with `concurrency`, without `fit`) passes 24
    /// bytes: it keeps its concurrency and gets the centre crop.
    #[test]
    fn options_of_the_second_version_get_the_crop() {
        #[repr(C)]
        struct V2 {
            struct_size: u32,
            backend: u32,
            provider: u32,
            threads: u32,
            allow_fallback: u32,
            concurrency: u32,
        }
        assert_eq!(std::mem::size_of::<V2>() as u32, OPTIONS_V2_SIZE);
        // What follows the 24 bytes in the caller's memory must not be read as `fit`.
        #[repr(C)]
        struct Followed {
            v2: V2,
            garbage: u32,
        }
        let v = Followed {
            v2: V2 { struct_size: OPTIONS_V2_SIZE, backend: MSF_BACKEND_TRACT, provider: MSF_PROVIDER_CPU, threads: 2, allow_fallback: 0, concurrency: 3 },
            garbage: 99,
        };
        let o = unsafe { read_options((&v as *const Followed).cast()) };
        assert_eq!((o.struct_size, o.threads, o.concurrency, o.fit), (OPTIONS_V2_SIZE, 2, 3, MSF_FIT_CROP));
        assert!(builder_from(&o).is_ok());
    }
}
