//! One frame's decomposition behind an `MsfResult` handle, and its accessors.
//!
//! The buffers returned by the accessors belong to the result: they stay valid and unchanged until
//! `msf_result_destroy`, and may be read from any thread.

use crate::handle::{self, Kind, MsfResult};
use crate::status::{guard, non_null, FfiResult, Failure, MsfStatus};
use runtime::Decomposition;
use std::sync::OnceLock;

/// Value of `msf_result_mask_frame` pixels outside the centre crop the model saw.
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

/// Where the model-resolution mask lies in the frame: it covers the centre square
/// `[left, left + size) × [top, top + size)` of the `frame_width × frame_height` frame, scaled to
/// `mask_size × mask_size`.
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
    areas: Vec<u64>,
    bboxes: Vec<MsfBBox>,
    /// Frame-resolution mask and its statistics, computed on first use.
    frame: OnceLock<FrameStats>,
}

impl ResultData {
    pub fn new(d: Decomposition) -> Self {
        let (areas, bboxes) = stats(&d.mask, d.mask_size, d.num_slots, None);
        ResultData { d, areas, bboxes, frame: OnceLock::new() }
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
            Err(Failure::invalid(format!("slot {slot} is out of range: the model has {k} slots (0..={})", k - 1)))
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

/// K, the number of slots (the same for every frame of a model).
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

/// The slot vectors, K × D floats row-major (slot `k` starts at `data + k * D`); `*count` = K·D.
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

/// Soft attention of the last slot-attention iteration: K × grid × grid floats (softmax over slots),
/// row-major, on the model's token grid.
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
/// slot index (0..K-1) of each pixel of the centre square crop. See `msf_result_crop` for where it
/// lies in the frame.
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
/// slot index of each pixel (nearest neighbour), `MSF_MASK_VOID` outside the centre crop. Computed
/// on the first call, then kept with the result.
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
/// Errors: `MSF_STATUS_INVALID_ARGUMENT` when `slot >= K`.
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

/// The frame size and the centre crop the model saw.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_result_crop(result: *const MsfResult, out: *mut MsfCrop) -> MsfStatus {
    read("msf_result_crop", result, out, |r| {
        let c = r.d.crop;
        Ok(MsfCrop {
            frame_width: r.d.frame_width,
            frame_height: r.d.frame_height,
            left: c.left,
            top: c.top,
            size: c.size,
            mask_size: r.d.mask_size as u32,
        })
    })
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
            crop: runtime::CropBox::center_square(9, 7),
        };
        let r = ResultData::new(d.clone());
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
}
