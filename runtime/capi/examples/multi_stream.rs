//! Aggregate throughput of 1, 2 and 4 camera streams sharing one model, through the C ABI the way a
//! C++ node would use it: one `MsfDecomposer` for the process, one thread and one `MsfTracker` per
//! stream.
//!
//! ```text
//! cargo run --release -p msf-capi --example multi_stream -- MODEL.onnx [--frames N] [--backend tract|ort]
//!     [--threads T] [--concurrency C] [--plain]
//! ```
//!
//! Frames are synthetic 640×480 BGR8 images (a moving-shapes video, different per stream), so no
//! decoding is timed. Each row (1, 2, 4 threads) loads the model with `MsfOptions.concurrency` =
//! the number of threads and `threads` = cores / concurrency, unless `--concurrency` or `--threads`
//! fix them (`--concurrency 1` shows what callers of one onnxruntime session get); `--plain` uses
//! `msf_decompose` instead of a tracker. Build with `--features ort` for `--backend ort`.

use msf_runtime::*;
use std::ffi::CString;
use std::time::Instant;

#[derive(Clone, Copy)]
struct Shared(*mut MsfDecomposer);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

fn check(st: MsfStatus) {
    if st != MsfStatus::Ok {
        let msg = unsafe { std::ffi::CStr::from_ptr(msf_last_error()) };
        eprintln!("error: {st:?}: {}", msg.to_string_lossy());
        std::process::exit(1);
    }
}

/// `n` frames of 640×480 BGR8 for stream `s`: the moving-shapes video (square) padded to 4:3.
fn frames(s: usize, n: usize) -> Vec<Vec<u8>> {
    let video = runtime::eval::synthetic::moving_shapes(n + s * 3, 480);
    video.frames[s * 3..]
        .iter()
        .map(|rgb| {
            let mut bgr = vec![40u8; 640 * 480 * 3];
            for y in 0..480 {
                for x in 0..480 {
                    let i = (y * 480 + x) * 3;
                    let o = (y * 640 + 80 + x) * 3;
                    bgr[o..o + 3].copy_from_slice(&[rgb[i + 2], rgb[i + 1], rgb[i]]);
                }
            }
            bgr
        })
        .collect()
}

fn run_stream(dec: Shared, frames: &[Vec<u8>], plain: bool) {
    let mut tr = std::ptr::null_mut();
    if !plain {
        check(unsafe { msf_tracker_create(dec.0, std::ptr::null(), &mut tr) });
    }
    for f in frames {
        let mut res = std::ptr::null_mut();
        let st = if plain {
            unsafe { msf_decompose(dec.0, f.as_ptr(), 640, 480, 0, MSF_PIXEL_FORMAT_BGR8, &mut res) }
        } else {
            unsafe { msf_tracker_step(tr, f.as_ptr(), 640, 480, 0, MSF_PIXEL_FORMAT_BGR8, &mut res) }
        };
        check(st);
        // What a node typically reads back: the frame-resolution mask.
        let (mut mask, mut w, mut h) = (std::ptr::null(), 0, 0);
        check(unsafe { msf_result_mask_frame(res, &mut mask, &mut w, &mut h) });
        check(msf_result_destroy(res));
    }
    check(msf_tracker_destroy(tr));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut model = None;
    let (mut n, mut threads, mut plain, mut backend, mut concurrency) = (12usize, None, false, MSF_BACKEND_TRACT, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--frames" => n = it.next().and_then(|v| v.parse().ok()).expect("--frames N"),
            "--threads" => threads = Some(it.next().and_then(|v| v.parse().ok()).expect("--threads T")),
            "--concurrency" => concurrency = Some(it.next().and_then(|v| v.parse().ok()).expect("--concurrency C")),
            "--backend" => {
                backend = match it.next().map(String::as_str) {
                    Some("tract") => MSF_BACKEND_TRACT,
                    Some("ort") => MSF_BACKEND_ONNXRUNTIME,
                    other => panic!("--backend tract|ort, not {other:?}"),
                }
            }
            "--plain" => plain = true,
            _ if model.is_none() => model = Some(a.clone()),
            _ => panic!("unexpected argument {a}"),
        }
    }
    let Some(model) = model else {
        eprintln!("usage: multi_stream MODEL.onnx [--frames N] [--backend tract|ort] [--threads T] [--concurrency C] [--plain]");
        std::process::exit(2);
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "model {model}, {} backend, {n} frames of 640x480 BGR8 per stream, {} per stream, {cores} cores; \
         per row: one decomposer with concurrency {} and kernel threads {}",
        if backend == MSF_BACKEND_TRACT { "tract" } else { "onnxruntime" },
        if plain { "msf_decompose" } else { "a tracker" },
        concurrency.map_or("= streams".to_string(), |c: u32| c.to_string()),
        threads.map_or("= cores / concurrency".to_string(), |t: u32| t.to_string()),
    );

    let path = CString::new(model.clone()).unwrap();
    let streams: Vec<Vec<Vec<u8>>> = (0..4).map(|s| frames(s, n)).collect();
    let mut base = 0.0;
    for k in [1usize, 2, 4] {
        // One decomposer per row, made for `k` callers, as a node with `k` cameras would.
        let mut opts = msf_options_default();
        opts.backend = backend;
        opts.concurrency = concurrency.unwrap_or(k as u32);
        opts.threads = threads.unwrap_or((cores / opts.concurrency.max(1) as usize).max(1) as u32);
        let mut dec = std::ptr::null_mut();
        check(unsafe { msf_decomposer_create(path.as_ptr(), &opts, &mut dec) });
        let shared = Shared(dec);
        // Warm-up (plans, scratch buffers) on each stream's first frame.
        std::thread::scope(|sc| {
            for s in &streams[..k] {
                sc.spawn(move || run_stream(shared, &s[..1], plain));
            }
        });
        let t = Instant::now();
        std::thread::scope(|sc| {
            for s in &streams[..k] {
                sc.spawn(move || run_stream(shared, s, plain));
            }
        });
        let secs = t.elapsed().as_secs_f64();
        let fps = (k * n) as f64 / secs;
        if k == 1 {
            base = fps;
        }
        println!(
            "{k} thread{}: {:>7.1} frames/s aggregate, {:>6.1} per thread ({:.2}x one thread; concurrency {}, kernel threads {})",
            if k == 1 { " " } else { "s" },
            fps,
            fps / k as f64,
            fps / base,
            opts.concurrency,
            opts.threads,
        );
        check(msf_decomposer_destroy(dec));
    }
}
