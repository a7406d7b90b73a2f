//! Temporal state of one video stream (`msf_tracker_*`): carried slots and stable slot ids.

use crate::decomposer::{image_view, MsfPixelFormat};
use crate::handle::{self, Kind, MsfDecomposer, MsfResult, MsfTracker, Object};
use crate::result::ResultData;
use crate::status::{guard, non_null, FfiResult, Failure, MsfStatus};
use runtime::track::{Tracker, TrackerOptions};
use std::sync::{Arc, Mutex, PoisonError};

/// Whether a tracker starts each frame's slot attention from the previous frame's slots: one of the
/// `MSF_TEMPORAL_*` values.
pub type MsfTemporal = u32;
/// Carry slots when the model has the `slots_init` input (every export but `--no-slots-in`), else not.
pub const MSF_TEMPORAL_AUTO: MsfTemporal = 0;
/// Never carry slots: every frame starts from the learned slots (matching still gives stable ids).
pub const MSF_TEMPORAL_OFF: MsfTemporal = 1;
/// Always carry slots; `msf_tracker_create` fails with `MSF_STATUS_MODEL` for a model without
/// the `slots_init` input.
pub const MSF_TEMPORAL_ON: MsfTemporal = 2;

/// How a tracker links frames. Start from `msf_tracker_options_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MsfTrackerOptions {
    /// `sizeof(MsfTrackerOptions)`; set by `msf_tracker_options_default()`.
    pub struct_size: u32,
    /// `MSF_TEMPORAL_*`.
    pub temporal: MsfTemporal,
    /// Non-zero: reorder each frame's slots by Hungarian matching with the previous frame, so that
    /// slot `k` keeps meaning the same object.
    pub matching: u32,
    /// Weight of mask IoU in the matching similarity, in [0, 1]; the rest is the cosine similarity
    /// of the slot vectors.
    pub iou_weight: f32,
}

/// Defaults: temporal when the model allows it, matching on, IoU weight 0.5.
#[no_mangle]
pub extern "C" fn msf_tracker_options_default() -> MsfTrackerOptions {
    let d = TrackerOptions::default();
    MsfTrackerOptions {
        struct_size: std::mem::size_of::<MsfTrackerOptions>() as u32,
        temporal: MSF_TEMPORAL_AUTO,
        matching: u32::from(d.matching),
        iou_weight: d.iou_weight,
    }
}

fn tracker_options(o: &MsfTrackerOptions, slots_input: bool) -> FfiResult<TrackerOptions> {
    let want = std::mem::size_of::<MsfTrackerOptions>() as u32;
    if o.struct_size < want {
        return Err(Failure::invalid(format!(
            "MsfTrackerOptions.struct_size is {} (expected {want}): start from msf_tracker_options_default()",
            o.struct_size
        )));
    }
    let temporal = match o.temporal {
        MSF_TEMPORAL_AUTO => slots_input,
        MSF_TEMPORAL_OFF => false,
        MSF_TEMPORAL_ON => true,
        t => return Err(Failure::invalid(format!("unknown temporal mode {t} (use one of MSF_TEMPORAL_*)"))),
    };
    if !(0.0..=1.0).contains(&o.iou_weight) {
        return Err(Failure::invalid(format!("iou_weight {} is not in [0, 1]", o.iou_weight)));
    }
    Ok(TrackerOptions { temporal, matching: o.matching != 0, iou_weight: o.iou_weight })
}

/// Start tracking one stream with the model of `dec`; the tracker goes to `*out` (NULL on failure).
///
/// `options` may be NULL (defaults). Use one tracker per camera/stream; trackers of different
/// streams may share a decomposer and run on different threads at once. The tracker keeps the
/// model loaded: `dec` may be destroyed before it.
///
/// Errors: `MSF_STATUS_NULL_ARGUMENT`, `MSF_STATUS_INVALID_HANDLE` (`dec`),
/// `MSF_STATUS_INVALID_ARGUMENT` (options; a decomposer created with `MSF_FIT_TILES`, whose frames
/// have several model views), `MSF_STATUS_MODEL` (`MSF_TEMPORAL_ON` with a model exported with
/// `--no-slots-in`).
///
/// # Safety
/// `options` must be NULL or a valid `MsfTrackerOptions`; `out` NULL or writable.
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
# let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
# let path = std::ffi::CString::new(model.path().to_str().unwrap()).unwrap();
# let mut dec = std::ptr::null_mut();
# assert_eq!(unsafe { msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut dec) }, MsfStatus::Ok);
# let frames: Vec<Vec<u8>> = (0..3u8).map(|t| vec![40 * t; 640 * 480 * 3]).collect();
let mut tr = std::ptr::null_mut();
assert_eq!(unsafe { msf_tracker_create(dec, std::ptr::null(), &mut tr) }, MsfStatus::Ok);
for bgr in &frames {
    let mut res = std::ptr::null_mut();
    if unsafe { msf_tracker_step(tr, bgr.as_ptr(), 640, 480, 0, MSF_PIXEL_FORMAT_BGR8, &mut res) } == MsfStatus::Ok {
        // slot k of `res` is the same object as slot k of the previous frame's result
        msf_result_destroy(res);
    }
}
msf_tracker_destroy(tr);
# msf_decomposer_destroy(dec);
```
"#)]
#[no_mangle]
pub unsafe extern "C" fn msf_tracker_create(
    dec: *const MsfDecomposer,
    options: *const MsfTrackerOptions,
    out: *mut *mut MsfTracker,
) -> MsfStatus {
    guard("msf_tracker_create", || {
        let out = non_null(out, "out")?.cast_mut();
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let d = handle::decomposer(dec, "dec")?;
        let o = if options.is_null() {
            msf_tracker_options_default()
        } else {
            // SAFETY: non-null; the caller provides a valid MsfTrackerOptions.
            unsafe { options.read_unaligned() }
        };
        let opts = tracker_options(&o, d.info().slots_input)?;
        if d.fit() == runtime::Fit::Tiles {
            return Err(Failure::invalid(
                "the decomposer was created with MSF_FIT_TILES, which gives several model views per frame: a tracker \
                 follows one view's slots from frame to frame; create its decomposer with MSF_FIT_CROP, MSF_FIT_STRETCH \
                 or MSF_FIT_PAD",
            ));
        }
        let t = Tracker::with_options(d, opts)?;
        let h = handle::register(Object::Tracker(Arc::new(Mutex::new(t))));
        // SAFETY: as above.
        unsafe { out.write(h as *mut MsfTracker) };
        Ok(())
    })
}

/// Decompose the stream's next frame (same buffer contract as `msf_decompose`); the result, with
/// slots in track order, goes to `*out` (NULL on failure). Calls on one tracker are serialised.
///
/// # Safety
/// As for `msf_decompose`.
#[no_mangle]
pub unsafe extern "C" fn msf_tracker_step(
    tracker: *mut MsfTracker,
    data: *const u8,
    width: u32,
    height: u32,
    stride: usize,
    format: MsfPixelFormat,
    out: *mut *mut MsfResult,
) -> MsfStatus {
    guard("msf_tracker_step", || {
        let out = non_null(out, "out")?.cast_mut();
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let t = handle::tracker(tracker, "tracker")?;
        // SAFETY: the documented contract of `data`.
        let view = unsafe { image_view(data, width, height, stride, format) }?;
        // A panic in an earlier step leaves the tracker's state as it was before that frame.
        let (d, fit) = {
            let mut state = t.lock().unwrap_or_else(PoisonError::into_inner);
            (state.step(&view)?, state.decomposer().fit())
        };
        let h = handle::register(Object::Result(Arc::new(ResultData::new(d, fit))));
        // SAFETY: as above.
        unsafe { out.write(h as *mut MsfResult) };
        Ok(())
    })
}

/// Forget the stream (a new video, a scene cut): the next frame starts afresh.
#[no_mangle]
pub extern "C" fn msf_tracker_reset(tracker: *mut MsfTracker) -> MsfStatus {
    guard("msf_tracker_reset", || {
        handle::tracker(tracker, "tracker")?.lock().unwrap_or_else(PoisonError::into_inner).reset();
        Ok(())
    })
}

/// Frames stepped since creation or the last reset.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_tracker_frames(tracker: *const MsfTracker, out: *mut u64) -> MsfStatus {
    guard("msf_tracker_frames", || {
        let out = non_null(out, "out")?.cast_mut();
        let n = handle::tracker(tracker, "tracker")?.lock().unwrap_or_else(PoisonError::into_inner).frames();
        // SAFETY: checked non-null.
        unsafe { out.write(n) };
        Ok(())
    })
}

/// Non-zero in `*out` when the tracker carries slots from frame to frame.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn msf_tracker_is_temporal(tracker: *const MsfTracker, out: *mut u32) -> MsfStatus {
    guard("msf_tracker_is_temporal", || {
        let out = non_null(out, "out")?.cast_mut();
        let t = handle::tracker(tracker, "tracker")?.lock().unwrap_or_else(PoisonError::into_inner).is_temporal();
        // SAFETY: checked non-null.
        unsafe { out.write(u32::from(t)) };
        Ok(())
    })
}

/// Free a tracker. NULL is a no-op; a tracker already destroyed gives `MSF_STATUS_INVALID_HANDLE`.
///
/// Any value is accepted: handles are looked up, never dereferenced.
#[no_mangle]
pub extern "C" fn msf_tracker_destroy(tracker: *mut MsfTracker) -> MsfStatus {
    guard("msf_tracker_destroy", || handle::destroy(tracker as usize, Kind::Tracker, "tracker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let d = msf_tracker_options_default();
        assert!(tracker_options(&d, true).unwrap().temporal);
        assert!(!tracker_options(&d, false).unwrap().temporal);
        let on = MsfTrackerOptions { temporal: MSF_TEMPORAL_ON, ..d };
        assert!(tracker_options(&on, false).unwrap().temporal); // refused later by Tracker::with_options
        for bad in [
            MsfTrackerOptions { iou_weight: f32::NAN, ..d },
            MsfTrackerOptions { iou_weight: 1.5, ..d },
            MsfTrackerOptions { temporal: 3, ..d },
            MsfTrackerOptions { struct_size: 4, ..d },
        ] {
            assert_eq!(tracker_options(&bad, true).unwrap_err().status, MsfStatus::InvalidArgument, "{bad:?}");
        }
    }
}
