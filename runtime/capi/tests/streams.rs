//! Several camera streams in one process, sharing one loaded model: each stream on its own thread
//! with its own tracker, through the Rust API and through the C ABI. Every frame's result must be
//! exactly what the same stream gives when the streams run one after another.

mod common;

use common::{fixture_rgb, require_fixtures, tiny_model};
use msf_runtime as capi;
use runtime::{Decomposer, Decomposition, ImageView, PixelFormat, Tracker};
use std::path::Path;
use std::sync::Arc;

const STREAMS: usize = 4;
const FRAMES: usize = 4;

/// One stream's frames: packed pixels, width, height, format.
struct Frame {
    data: Vec<u8>,
    width: u32,
    height: u32,
    format: PixelFormat,
}

impl Frame {
    fn view(&self) -> ImageView<'_> {
        ImageView::packed(&self.data, self.width, self.height, self.format).unwrap()
    }
}

/// Stream `s` walks the fixture images from a different start, each stream in its own pixel format.
fn streams(fixtures: &Path) -> Vec<Vec<Frame>> {
    let names = ["motorcycle_left.png", "ihc.png", "camera.png", "logo.png", "hubble_deep_field.jpg"];
    let images: Vec<image::RgbImage> = names.iter().map(|n| fixture_rgb(fixtures, n)).collect();
    let formats = [PixelFormat::Rgb8, PixelFormat::Bgr8, PixelFormat::Rgba8, PixelFormat::Bgra8];
    (0..STREAMS)
        .map(|s| {
            (0..FRAMES)
                .map(|f| {
                    let img = &images[(s + 2 * f) % images.len()];
                    let format = formats[s % formats.len()];
                    let data = img
                        .pixels()
                        .flat_map(|p| {
                            let [r, g, b] = p.0;
                            match format {
                                PixelFormat::Rgb8 => vec![r, g, b],
                                PixelFormat::Bgr8 => vec![b, g, r],
                                PixelFormat::Rgba8 => vec![r, g, b, 255],
                                _ => vec![b, g, r, 255],
                            }
                        })
                        .collect();
                    Frame { data, width: img.width(), height: img.height(), format }
                })
                .collect()
        })
        .collect()
}

/// What we compare: slots bit for bit and the mask.
type Out = (Vec<u32>, Vec<u8>);

fn key(d: &Decomposition) -> Out {
    (d.slots.iter().map(|x| x.to_bits()).collect(), d.mask.clone())
}

fn run_stream(dec: &Arc<Decomposer>, frames: &[Frame]) -> Vec<Out> {
    let mut t = Tracker::new(dec.clone());
    frames.iter().map(|f| key(&t.step(&f.view()).unwrap())).collect()
}

fn c_format(f: PixelFormat) -> capi::MsfPixelFormat {
    match f {
        PixelFormat::Rgb8 => capi::MSF_PIXEL_FORMAT_RGB8,
        PixelFormat::Bgr8 => capi::MSF_PIXEL_FORMAT_BGR8,
        PixelFormat::Rgba8 => capi::MSF_PIXEL_FORMAT_RGBA8,
        PixelFormat::Bgra8 => capi::MSF_PIXEL_FORMAT_BGRA8,
        PixelFormat::Gray8 => capi::MSF_PIXEL_FORMAT_GRAY8,
    }
}

/// A raw handle that may cross threads (the C API's decomposer is thread-safe).
#[derive(Clone, Copy)]
struct Shared(*mut capi::MsfDecomposer);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Use through a method so that closures capture the whole `Shared` (not its raw field).
    fn ptr(self) -> *mut capi::MsfDecomposer {
        self.0
    }
}

/// The same stream through the C ABI: a tracker per stream on the shared decomposer handle.
fn run_stream_c(dec: Shared, frames: &[Frame]) -> Vec<Out> {
    use capi::*;
    let mut tr = std::ptr::null_mut();
    assert_eq!(unsafe { msf_tracker_create(dec.ptr(), std::ptr::null(), &mut tr) }, MsfStatus::Ok);
    let outs = frames
        .iter()
        .map(|f| {
            let mut res = std::ptr::null_mut();
            let st = unsafe { msf_tracker_step(tr, f.data.as_ptr(), f.width, f.height, 0, c_format(f.format), &mut res) };
            assert_eq!(st, MsfStatus::Ok);
            let (mut slots, mut n) = (std::ptr::null(), 0usize);
            let (mut mask, mut w, mut h) = (std::ptr::null(), 0u32, 0u32);
            unsafe {
                assert_eq!(msf_result_slots(res, &mut slots, &mut n), MsfStatus::Ok);
                assert_eq!(msf_result_mask(res, &mut mask, &mut w, &mut h), MsfStatus::Ok);
            }
            let out = unsafe {
                (
                    std::slice::from_raw_parts(slots, n).iter().map(|x| x.to_bits()).collect(),
                    std::slice::from_raw_parts(mask, (w * h) as usize).to_vec(),
                )
            };
            assert_eq!(msf_result_destroy(res), MsfStatus::Ok);
            out
        })
        .collect();
    assert_eq!(msf_tracker_destroy(tr), MsfStatus::Ok);
    outs
}

#[test]
fn four_streams_on_one_model_equal_serial_runs() {
    let Some(fixtures) = require_fixtures("four_streams") else { return };
    let model = tiny_model(true);
    let streams = streams(&fixtures);
    let dec = Arc::new(Decomposer::builder().build(&model).unwrap());
    assert!(dec.info().slots_input, "the tracker carries slots (temporal mode)");

    let serial: Vec<Vec<Out>> = streams.iter().map(|s| run_stream(&dec, s)).collect();
    // The streams are really different (so that a mix-up between threads would show).
    for s in 1..STREAMS {
        assert_ne!(serial[0][0], serial[s][0], "streams 0 and {s} start alike");
    }

    // Rust API: one thread and one tracker per stream, one shared Arc<Decomposer>.
    let parallel: Vec<Vec<Out>> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams.iter().map(|s| scope.spawn(|| run_stream(&dec, s))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for s in 0..STREAMS {
        assert!(parallel[s] == serial[s], "stream {s}: threaded Rust results differ from the serial run");
    }

    // C ABI: one decomposer handle shared by four threads, a tracker handle per stream.
    let mut h = std::ptr::null_mut();
    let path = std::ffi::CString::new(model.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { capi::msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut h) }, capi::MsfStatus::Ok);
    let shared = Shared(h);
    let via_c: Vec<Vec<Out>> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams.iter().map(|s| scope.spawn(move || run_stream_c(shared, s))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(capi::msf_decomposer_destroy(h), capi::MsfStatus::Ok);
    for s in 0..STREAMS {
        assert!(via_c[s] == serial[s], "stream {s}: threaded C ABI results differ from the serial run");
    }
}

#[test]
fn concurrent_plain_decompose_through_the_c_abi() {
    use capi::*;
    let Some(fixtures) = require_fixtures("concurrent_decompose") else { return };
    let model = tiny_model(false);
    let streams = streams(&fixtures);
    let dec = Decomposer::builder().build(&model).unwrap();
    let want: Vec<Vec<Out>> =
        streams.iter().map(|s| s.iter().map(|f| key(&dec.decompose(&f.view()).unwrap())).collect()).collect();

    let mut h = std::ptr::null_mut();
    let path = std::ffi::CString::new(model.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut h) }, MsfStatus::Ok);
    let shared = Shared(h);
    let before = live_handle_counts();
    let got: Vec<Vec<Out>> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .iter()
            .map(|s| {
                scope.spawn(move || {
                    s.iter()
                        .map(|f| {
                            let mut res = std::ptr::null_mut();
                            let st = unsafe {
                                msf_decompose(shared.ptr(), f.data.as_ptr(), f.width, f.height, 0, c_format(f.format), &mut res)
                            };
                            assert_eq!(st, MsfStatus::Ok);
                            // A misuse on this thread leaves the other threads' messages alone.
                            assert_eq!(msf_result_destroy(std::ptr::dangling_mut()), MsfStatus::InvalidHandle);
                            let (mut slots, mut n) = (std::ptr::null(), 0usize);
                            let (mut mask, mut w, mut hh) = (std::ptr::null(), 0u32, 0u32);
                            let out = unsafe {
                                assert_eq!(msf_result_slots(res, &mut slots, &mut n), MsfStatus::Ok);
                                assert_eq!(msf_result_mask(res, &mut mask, &mut w, &mut hh), MsfStatus::Ok);
                                (
                                    std::slice::from_raw_parts(slots, n).iter().map(|x| x.to_bits()).collect(),
                                    std::slice::from_raw_parts(mask, (w * hh) as usize).to_vec(),
                                )
                            };
                            assert_eq!(msf_result_destroy(res), MsfStatus::Ok);
                            out
                        })
                        .collect::<Vec<Out>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(msf_decomposer_destroy(h), MsfStatus::Ok);
    for s in 0..STREAMS {
        assert!(got[s] == want[s], "stream {s}: C ABI results differ from the Rust API");
    }
    // Every result was freed (other tests in this process may hold handles of their own, so only
    // this test's results are counted: none left over).
    assert!(live_handle_counts()[2] <= before[2], "results leaked: {:?} -> {:?}", before, live_handle_counts());
}
