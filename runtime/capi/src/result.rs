//! One frame's decomposition behind an `MsfResult` handle, and its accessors.
//!
//! The buffers returned by the accessors belong to the result: they stay valid and unchanged until
//! `msf_result_destroy`, and may be read from any thread. Every per-object accessor takes its count
//! from the result (`msf_result_num_slots`): with `MSF_FIT_TILES` it varies from frame to frame and
//! may exceed the model's K.

use crate::decomposer::{fit_to_c, MsfFit};
use crate::handle::{self, Kind, MsfResult};
use crate::status::{guard, non_null, FfiResult, Failure, MsfStatus};
use runtime::{Decomposition, Fit};
use std::sync::OnceLock;

/// Value of `msf_result_mask_frame` pixels that no model view covered: outside the centre crop of
/// `MSF_FIT_CROP` (the other fits cover the whole frame).
pub const MSF_MASK_VOID: u8 = 255;

/// Axis-aligned box, half-open: columns `x0..x1`, rows `y0..y1`. All zero for an empty slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsfBBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// Where the model-resolution mask of an `MSF_FIT_CROP` result lies in the frame: it covers the
/// centre square `[left, left + size) × [top, top + size)` of the `frame_width × frame_height` frame,
/// scaled to `mask_size × mask_size`. Results of the other fits are not a centre crop:
/// `msf_result_crop` refuses them, `msf_result_view` describes every result.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsfCrop {
    pub frame_width: u32,
    pub frame_height: u32,
    pub left: u32,
    pub top: u32,
    pub size: u32,
    pub mask_size: u32,
}

/// An axis-aligned rectangle in pixels: columns `[x, x + width)`, rows `[y, y + height)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsfRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl From<runtime::fit::Rect> for MsfRect {
    fn from(r: runtime::fit::Rect) -> Self {
        MsfRect { x: r.x, y: r.y, width: r.width, height: r.height }
    }
}

/// How a result's frame was put into the model's square input, and where the model-resolution mask
/// (`msf_result_mask`, `mask_size × mask_size` over the `input_size × input_size` input) lies in the
/// frame: the frame rectangle `frame` was resized into the rectangle `input` of the input; the rest
/// of the input (with `MSF_FIT_PAD`) is padding and the frame outside `frame` (with `MSF_FIT_CROP`)
/// was not seen. Filled by `msf_result_view` for every fit.
///
/// Versioned by `struct_size`: set it to `sizeof(MsfView)` before the call; the library writes no
/// more than that many bytes and sets it to the number it wrote, so later versions can add fields
/// at the end without breaking programs built against this header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsfView {
    /// In: `sizeof(MsfView)` as the caller's header has it. Out: the bytes the library filled.
    pub struct_size: u32,
    /// `MSF_FIT_*` of the decomposer (or tracker) that made the result.
    pub fit: MsfFit,
    pub frame_width: u32,
    pub frame_height: u32,
    /// The part of the frame the model-resolution mask covers (the whole frame but with
    /// `MSF_FIT_CROP`).
    pub frame: MsfRect,
    /// Where `frame` lies in the model's `input_size × input_size` input (the whole square but with
    /// `MSF_FIT_PAD`).
    pub input: MsfRect,
    /// Side of the model's square input, in pixels.
    pub input_size: u32,
    /// Side of the model-resolution mask (it spans the whole `input_size` square).
    pub mask_size: u32,
    /// Model views (inferences) behind this result: 1, or with `MSF_FIT_TILES` on a frame that is
    /// not square the number of overlapping squares merged.
    pub tiles: u32,
    /// Non-zero when several tiles were merged (`tiles > 1`): the objects are the merged ones, the
    /// frame-resolution mask comes from the tiles, and the model-resolution mask and the attention
    /// are an overview of them stretched over the whole frame (`frame` = the frame, `input` = the
    /// whole input).
    pub tiled: u32,
    /// Non-zero when every frame pixel has an object (no `MSF_MASK_VOID` in `msf_result_mask_frame`):
    /// all but `MSF_FIT_CROP` on a frame that is not square.
    pub covers_frame: u32,
}

/// Per-slot areas and boxes of one mask (`side_w` pixels per row), skipping `skip` (void) pixels.
fn stats(mask: &[u8], width: usize, k: usize, skip: Option<u8>) -> (Vec<u64>, Vec<MsfBBox>) {
    let mut areas = vec![0u64; k];
    let mut boxes: Vec<Option<MsfBBox>> = vec![None; k];
    if width > 0 {
        for (y, row) in mask.chunks_exact(width).enumerate() {
            for (x, &s) in row.iter().enumerate() {
                if Some(s) == skip || s as usize >= k {
                    continue;
                }
                let (x, y) = (x as u32, y as u32);
                areas[s as usize] += 1;
                let b = boxes[s as usize].get_or_insert(MsfBBox { x0: x, y0: y, x1: x + 1, y1: y + 1 });
                b.x0 = b.x0.min(x);
                b.y0 = b.y0.min(y);
                b.x1 = b.x1.max(x + 1);
                b.y1 = b.y1.max(y + 1);
            }
        }
    }
    (areas, boxes.into_iter().map(Option::unwrap_or_default).collect())
}

struct FrameStats {
    mask: Vec<u8>,
    areas: Vec<u64>,
    bboxes: Vec<MsfBBox>,
}

pub(crate) struct ResultData {
    pub d: Decomposition,
    /// The fit of the decomposer that made it.
    pub fit: Fit,
    areas: Vec<u64>,
    bboxes: Vec<MsfBBox>,
    /// Frame-resolution mask and its statistics, computed on first use.
    frame: OnceLock<FrameStats>,
}

impl ResultData {
    pub fn new(d: Decomposition, fit: Fit) -> Self {
        let (areas, bboxes) = stats(&d.mask, d.mask_size, d.num_slots, None);
        ResultData { d, fit, areas, bboxes, frame: OnceLock::new() }
    }

    fn view(&self) -> MsfView {
        let (d, p) = (&self.d, self.d.placement);
        let tiles = if d.frame_labels.is_some() {
            self.fit.placements(d.frame_width, d.frame_height, p.size).map_or(1, |v| v.len() as u32)
        } else {
            1
        };
        MsfView {
            struct_size: std::mem::size_of::<MsfView>() as u32,
            fit: fit_to_c(self.fit),
            frame_width: d.frame_width,
            frame_height: d.frame_height,
            frame: p.frame.into(),
            input: p.input.into(),
            input_size: p.size,
            mask_size: d.mask_size as u32,
            tiles,
            tiled: u32::from(d.frame_labels.is_some()),
            covers_frame: u32::from(d.covers_frame()),
        }
    }

    fn frame(&self) -> &FrameStats {
        self.frame.get_or_init(|| {
            let mask = self.d.mask_in_frame();
            let (areas, bboxes) = stats(&mask, self.d.frame_width as usize, self.d.num_slots, Some(MSF_MASK_VOID));
            FrameStats { mask, areas, bboxes }
        })
    }

    fn slot(&self, slot: u32) -> FfiResult<usize> {
        let k = self.d.num_slots;
        if (slot as usize) < k {
            Ok(slot as usize)
        } else {
            Err(Failure::invalid(format!(
                "slot {slot} is out of range: this result has {k} objects (0..={}; msf_result_num_slots)",
                k.saturating_sub(1)
            )))
        }
    }
}

/// Look up `r`, null-check `out` and write `f(result)` to it.
fn read<T>(func: &'static str, r: *const MsfResult, out: *mut T, f: impl FnOnce(&ResultData) -> FfiResult<T>) -> MsfStatus {
    guard(func, || {
        let out = non_null(out, "out")?.cast_mut();
        let data = handle::result(r, "result")?;
        let v = f(&data)?;
        // SAFETY: checked non-null; the caller provides a writable `T`.
        unsafe { out.write(v) };
        Ok(())
    })
}

/// Write a pointer into the result's buffers plus its dimensions. The pointer stays valid after
/// our `Arc` clone is dropped because the handle table holds another reference until
/// `msf_result_destroy`.
fn read_buffer<T>(
    func: &'static str,
    r: *const MsfResult,
    data: *mut *const T,
    dims: [(*mut u32, &str); 2],
    f: impl FnOnce(&ResultData) -> (*const T, [u32; 2]),
) -> MsfStatus {
    guard(func, || {
        let data = non_null(data, "data")?.cast_mut();
        for (p, name) in dims {
            non_null(p, name)?;
        }
        let res = handle::result(r, "result")?;
        let (ptr, vals) = f(&res);
        // SAFETY: all checked non-null; the caller provides writable outputs.
        unsafe {
            data.write(ptr);
            for ((p, _), v) in dims.into_iter().zip(vals) {
                p.write(v);
            }
        }
        Ok(())
    })
}

/// The number of objects (slots) of this result: the valid `slot` arguments of the per-object
/// accessors are `0 .. *out - 1`. Take it from each result, not from the model: it is the model's K
/// (`MsfModelInfo.num_slots`) for one model view, but with `MSF_FIT_TILES` the merged count of the
/// frame's tiles, which varies from frame to frame and may exceed K.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_num_slots(result: *const MsfResult, out: *mut usize) -> MsfStatus {
    read("msf_result_num_slots", result, out, |r| Ok(r.d.num_slots))
}

/// D, the length of each slot vector.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_slot_dim(result: *const MsfResult, out: *mut usize) -> MsfStatus {
    read("msf_result_slot_dim", result, out, |r| Ok(r.d.slot_dim))
}

/// The slot vectors, N × D floats row-major, N = `msf_result_num_slots` (slot `k` starts at
/// `data + k * D`); `*count` = N·D. With `MSF_FIT_TILES` a merged object's vector is the area-weighted
/// mean of its tiles' slots.
///
/// # Safety
/// `data` and `count` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_slots(result: *const MsfResult, data: *mut *const f32, count: *mut usize) -> MsfStatus {
    guard("msf_result_slots", || {
        let data = non_null(data, "data")?.cast_mut();
        let count = non_null(count, "count")?.cast_mut();
        let r = handle::result(result, "result")?;
        // SAFETY: checked non-null; the caller provides writable outputs.
        unsafe {
            data.write(r.d.slots.as_ptr());
            count.write(r.d.slots.len());
        }
        Ok(())
    })
}

/// Soft attention of the last slot-attention iteration: N × grid × grid floats (softmax over slots),
/// row-major, on the model's token grid; N = `msf_result_num_slots`. The grid spans the model's input
/// (see `msf_result_view`; with several tiles, an overview stretched over the whole frame).
///
/// # Safety
/// `data` and `grid` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_attn(result: *const MsfResult, data: *mut *const f32, grid: *mut u32) -> MsfStatus {
    guard("msf_result_attn", || {
        let data = non_null(data, "data")?.cast_mut();
        let grid = non_null(grid, "grid")?.cast_mut();
        let r = handle::result(result, "result")?;
        // SAFETY: checked non-null; the caller provides writable outputs.
        unsafe {
            data.write(r.d.attn.as_ptr());
            grid.write(r.d.grid as u32);
        }
        Ok(())
    })
}

/// The mask at model resolution: `width × height` (= mask_size², 256 × 256) bytes, row-major, the
/// slot index (0..N-1, N = `msf_result_num_slots`) of each pixel of the model's input. See
/// `msf_result_view` for where it lies in the frame.
///
/// # Safety
/// `data`, `width` and `height` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_mask(
    result: *const MsfResult,
    data: *mut *const u8,
    width: *mut u32,
    height: *mut u32,
) -> MsfStatus {
    read_buffer("msf_result_mask", result, data, [(width, "width"), (height, "height")], |r| {
        (r.d.mask.as_ptr(), [r.d.mask_size as u32; 2])
    })
}

/// The mask at the frame's resolution: `width × height` bytes (the frame's size), row-major; the
/// slot index (0..N-1) of each pixel (nearest neighbour), `MSF_MASK_VOID` where no model view covered
/// the frame (outside the centre crop of `MSF_FIT_CROP`). With several tiles, each pixel takes the
/// merged id from the tile whose centre is nearest. Computed on the first call, then kept with the
/// result.
///
/// # Safety
/// `data`, `width` and `height` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_mask_frame(
    result: *const MsfResult,
    data: *mut *const u8,
    width: *mut u32,
    height: *mut u32,
) -> MsfStatus {
    read_buffer("msf_result_mask_frame", result, data, [(width, "width"), (height, "height")], |r| {
        (r.frame().mask.as_ptr(), [r.d.frame_width, r.d.frame_height])
    })
}

/// Pixels of the model-resolution mask assigned to `slot`.
///
/// Errors: `MSF_STATUS_INVALID_ARGUMENT` when `slot >= msf_result_num_slots`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_area(result: *const MsfResult, slot: u32, out: *mut u64) -> MsfStatus {
    read("msf_result_area", result, out, |r| Ok(r.areas[r.slot(slot)?]))
}

/// Pixels of the frame-resolution mask assigned to `slot`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_area_frame(result: *const MsfResult, slot: u32, out: *mut u64) -> MsfStatus {
    read("msf_result_area_frame", result, out, |r| Ok(r.frame().areas[r.slot(slot)?]))
}

/// Bounding box of `slot` in model-mask pixels (all zero when the slot is empty).
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_bbox(result: *const MsfResult, slot: u32, out: *mut MsfBBox) -> MsfStatus {
    read("msf_result_bbox", result, out, |r| Ok(r.bboxes[r.slot(slot)?]))
}

/// Bounding box of `slot` in frame pixels, from the frame-resolution mask (all zero when empty).
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
# let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
# let path = std::ffi::CString::new(model.path().to_str().unwrap()).unwrap();
# let mut dec = std::ptr::null_mut();
# assert_eq!(unsafe { msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut dec) }, MsfStatus::Ok);
# let bgr = vec![90u8; 320 * 240 * 3];
# let mut res = std::ptr::null_mut();
# assert_eq!(unsafe { msf_decompose(dec, bgr.as_ptr(), 320, 240, 0, MSF_PIXEL_FORMAT_BGR8, &mut res) }, MsfStatus::Ok);
let mut k = 0usize;
unsafe { msf_result_num_slots(res, &mut k) };
for slot in 0..k as u32 {
    let mut b = MsfBBox::default();
    let mut area = 0u64;
    unsafe {
        msf_result_bbox_frame(res, slot, &mut b);
        msf_result_area_frame(res, slot, &mut area);
    }
    println!("object {slot}: {area} px in [{}, {}) x [{}, {})", b.x0, b.x1, b.y0, b.y1);
}
# msf_result_destroy(res);
# msf_decomposer_destroy(dec);
```
"#)]
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_bbox_frame(result: *const MsfResult, slot: u32, out: *mut MsfBBox) -> MsfStatus {
    read("msf_result_bbox_frame", result, out, |r| Ok(r.frame().bboxes[r.slot(slot)?]))
}

/// The frame size and the centre crop the model saw, for a result of `MSF_FIT_CROP`.
///
/// Errors: `MSF_STATUS_INVALID_ARGUMENT` for results of the other fits (the default is
/// `MSF_FIT_STRETCH`), which are not a centre crop: use `msf_result_view`, which describes every fit.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_crop(result: *const MsfResult, out: *mut MsfCrop) -> MsfStatus {
    read("msf_result_crop", result, out, |r| {
        if r.fit != Fit::Crop {
            return Err(Failure::invalid(format!(
                "this result was made with fit `{}` ({}), not a centre crop (MSF_FIT_CROP): MsfCrop cannot describe it; \
                 use msf_result_view",
                r.fit,
                fit_name(r.fit)
            )));
        }
        let c = r.d.placement.frame;
        Ok(MsfCrop {
            frame_width: r.d.frame_width,
            frame_height: r.d.frame_height,
            left: c.x,
            top: c.y,
            size: c.width,
            mask_size: r.d.mask_size as u32,
        })
    })
}

/// How this result's frame was put into the model's input and where the model-resolution mask lies
/// in the frame (every fit; see `MsfView`).
///
/// Set `out->struct_size = sizeof(MsfView)` first: the library fills at most that many bytes and
/// sets `struct_size` to the number it filled.
///
/// Errors: `MSF_STATUS_NULL_ARGUMENT` (`out`), `MSF_STATUS_INVALID_ARGUMENT` (`struct_size` smaller
/// than the first version of `MsfView`).
///
/// # Safety
/// `out` must be NULL or point to `out->struct_size` writable bytes (at least 4, the `struct_size`).
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
# let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
# let path = std::ffi::CString::new(model.path().to_str().unwrap()).unwrap();
# let mut dec = std::ptr::null_mut();
# assert_eq!(unsafe { msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut dec) }, MsfStatus::Ok);
# let bgr = vec![90u8; 320 * 240 * 3];
# let mut res = std::ptr::null_mut();
# assert_eq!(unsafe { msf_decompose(dec, bgr.as_ptr(), 320, 240, 0, MSF_PIXEL_FORMAT_BGR8, &mut res) }, MsfStatus::Ok);
let mut v = MsfView { struct_size: std::mem::size_of::<MsfView>() as u32, ..Default::default() };
assert_eq!(unsafe { msf_result_view(res, &mut v) }, MsfStatus::Ok);
// The default fit stretches the whole 320x240 frame over the model's square input.
assert_eq!((v.fit, v.frame, v.covers_frame), (MSF_FIT_STRETCH, MsfRect { x: 0, y: 0, width: 320, height: 240 }, 1));
assert_eq!(v.input, MsfRect { x: 0, y: 0, width: v.input_size, height: v.input_size });
// Not a centre crop: msf_result_crop refuses it.
let mut c = MsfCrop::default();
assert_eq!(unsafe { msf_result_crop(res, &mut c) }, MsfStatus::InvalidArgument);
# msf_result_destroy(res);
# msf_decomposer_destroy(dec);
```
"#)]
#[no_mangle]
pub unsafe extern "C" fn msf_result_view(result: *const MsfResult, out: *mut MsfView) -> MsfStatus {
    guard("msf_result_view", || {
        let out = non_null(out, "out")?.cast_mut();
        // SAFETY: non-null; every version starts with the u32 `struct_size` (read unaligned, as
        // `MsfOptions`).
        let size = unsafe { out.cast::<u32>().read_unaligned() } as usize;
        let ours = std::mem::size_of::<MsfView>();
        if size < VIEW_V1_SIZE {
            return Err(Failure::invalid(format!(
                "MsfView.struct_size is {size} (at least {VIEW_V1_SIZE}): set it to sizeof(MsfView) before the call"
            )));
        }
        let data = handle::result(result, "result")?;
        let mut v = data.view();
        let n = size.min(ours);
        v.struct_size = n as u32;
        // SAFETY: the caller provides `size` ≥ `n` writable bytes; `v` has `ours` ≥ `n` bytes.
        unsafe { std::ptr::copy_nonoverlapping((&v as *const MsfView).cast::<u8>(), out.cast::<u8>(), n) };
        Ok(())
    })
}

/// `struct_size` of the first `MsfView`: the least `msf_result_view` accepts.
const VIEW_V1_SIZE: usize = 17 * 4;

/// The C name of a fit, for messages.
fn fit_name(f: Fit) -> &'static str {
    match f {
        Fit::Crop => "MSF_FIT_CROP",
        Fit::Stretch => "MSF_FIT_STRETCH",
        Fit::Pad => "MSF_FIT_PAD",
        Fit::Tiles => "MSF_FIT_TILES",
    }
}

/// Free a result and every buffer its accessors returned. NULL is a no-op; a result already
/// destroyed gives `MSF_STATUS_INVALID_HANDLE`.
///
/// Any value is accepted: handles are looked up, never dereferenced. Pointers obtained from the
/// accessors must not be used afterwards.
#[no_mangle]
pub extern "C" fn msf_result_destroy(result: *mut MsfResult) -> MsfStatus {
    guard("msf_result_destroy", || handle::destroy(result as usize, Kind::Result, "result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_the_runtime() {
        let m = 6;
        let mask: Vec<u8> = (0..m * m).map(|i| ((i % m) / 2 + (i / m) / 3) as u8 % 4).collect();
        let d = Decomposition {
            num_slots: 5,
            slot_dim: 1,
            grid: 1,
            mask_size: m,
            slots: vec![0.0; 5],
            attn: vec![0.0; 5],
            mask,
            frame_width: 9,
            frame_height: 7,
            placement: runtime::Fit::Crop.placements(9, 7, m as u32).unwrap()[0],
            frame_labels: None,
        };
        let r = ResultData::new(d.clone(), Fit::Crop);
        let want_areas: Vec<u64> = d.areas().into_iter().map(|a| a as u64).collect();
        assert_eq!(r.areas, want_areas);
        for (b, w) in r.bboxes.iter().zip(d.bboxes()) {
            match w {
                Some(w) => assert_eq!((b.x0, b.y0, b.x1, b.y1), (w.x0, w.y0, w.x1, w.y1)),
                None => assert_eq!(*b, MsfBBox::default()),
            }
        }
        assert_eq!(r.areas[4], 0);
        let f = r.frame();
        assert_eq!(f.mask, d.mask_in_frame());
        assert_eq!(f.areas.iter().sum::<u64>(), 7 * 7);
        // Void columns (left = 1, right = 1) are outside every box.
        assert!(f.bboxes.iter().all(|b| *b == MsfBBox::default() || (b.x0 >= 1 && b.x1 <= 8)));
        assert!(r.slot(5).unwrap_err().message.contains("out of range"));
    }

    #[test]
    fn the_view_describes_every_fit_and_the_crop_only_crops() {
        assert_eq!(std::mem::size_of::<MsfView>(), VIEW_V1_SIZE);
        let (m, w, h) = (4usize, 9u32, 6u32);
        let result = |fit: Fit| {
            let d = Decomposition {
                num_slots: 2,
                slot_dim: 1,
                grid: 1,
                mask_size: m,
                slots: vec![0.0; 2],
                attn: vec![0.5; 2],
                mask: vec![1; m * m],
                frame_width: w,
                frame_height: h,
                placement: fit.placements(w, h, 8).unwrap()[0],
                frame_labels: None,
            };
            ResultData::new(d, fit)
        };
        let rect = |x, y, width, height| MsfRect { x, y, width, height };
        let crop = result(Fit::Crop);
        let v = crop.view();
        assert_eq!((v.fit, v.frame, v.input, v.input_size, v.mask_size), (crate::MSF_FIT_CROP, rect(1, 0, 6, 6), rect(0, 0, 8, 8), 8, 4));
        assert_eq!((v.tiles, v.tiled, v.covers_frame, v.frame_width, v.frame_height), (1, 0, 0, w, h));
        let pad = result(Fit::Pad).view();
        assert_eq!((pad.fit, pad.frame, pad.input, pad.covers_frame), (crate::MSF_FIT_PAD, rect(0, 0, 9, 6), rect(0, 1, 8, 5), 1));
        let stretch = result(Fit::Stretch).view();
        assert_eq!((stretch.frame, stretch.input, stretch.covers_frame), (rect(0, 0, 9, 6), rect(0, 0, 8, 8), 1));
        // Through the C entry points (handles of the table).
        let reg = |r: ResultData| handle::register(handle::Object::Result(std::sync::Arc::new(r))) as *mut MsfResult;
        let (c, s) = (reg(crop), reg(result(Fit::Stretch)));
        let mut out = MsfCrop::default();
        assert_eq!(unsafe { msf_result_crop(c, &mut out) }, MsfStatus::Ok);
        assert_eq!((out.left, out.top, out.size, out.mask_size), (1, 0, 6, 4));
        assert_eq!(unsafe { msf_result_crop(s, &mut out) }, MsfStatus::InvalidArgument);
        let msg = unsafe { std::ffi::CStr::from_ptr(crate::msf_last_error()) }.to_string_lossy().into_owned();
        assert!(msg.contains("MSF_FIT_STRETCH") && msg.contains("msf_result_view"), "{msg}");
        // struct_size: unset is refused; larger (a newer header) gets this version's bytes.
        let mut v = MsfView::default();
        assert_eq!(unsafe { msf_result_view(s, &mut v) }, MsfStatus::InvalidArgument);
        #[repr(C)]
        struct Newer {
            v: MsfView,
            more: [u32; 3],
        }
        let mut n = Newer { v: MsfView { struct_size: std::mem::size_of::<Newer>() as u32, ..MsfView::default() }, more: [7; 3] };
        assert_eq!(unsafe { msf_result_view(s, (&mut n as *mut Newer).cast()) }, MsfStatus::Ok);
        assert_eq!(n.v, stretch);
        assert_eq!(n.more, [7; 3], "bytes past this version's MsfView are left alone");
        for h in [c, s] {
            assert_eq!(msf_result_destroy(h), MsfStatus::Ok);
        }
    }
}
