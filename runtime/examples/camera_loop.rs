//! A robot's perception loop: read a V4L2 camera, decompose every frame with stable slot ids, and
//! report the objects and the per-frame latency.
//!
//! ```text
//! cargo run --release -p msf-runtime --features camera --example camera_loop -- MODEL.onnx [/dev/video0] [FRAMES]
//! ```
//! The camera delivers frames at its own rate; decomposition runs on the newest frame only, so
//! latency stays bounded when the model is slower than the camera (older queued frames are
//! skipped, the count is printed). The loop ends after FRAMES frames (default 100) or at the end of
//! the stream.

use msf_runtime::source::camera::CameraSource;
use msf_runtime::source::SourceOptions;
use msf_runtime::{Decomposer, Tracker};
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let Some(model) = args.next().map(PathBuf::from) else {
        eprintln!("usage: camera_loop MODEL.onnx [/dev/video0] [FRAMES]");
        std::process::exit(2);
    };
    let device = args.next().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev/video0"));
    let frames: u64 = args.next().and_then(|s| s.to_str()?.parse().ok()).unwrap_or(100);

    let dec = Arc::new(Decomposer::builder().build(&model)?);
    let mut tracker = Tracker::new(Arc::clone(&dec));
    let camera = CameraSource::open(&device, &SourceOptions::default())?;
    let (w, h) = camera.size();
    eprintln!("{}: {w}×{h} {:?}", device.display(), camera.format());

    // Capture on its own thread into a short queue; the loop below always takes the newest frame.
    let (tx, rx) = sync_channel(2);
    std::thread::spawn(move || {
        for f in camera {
            if tx.send((f, Instant::now())).is_err() {
                break;
            }
        }
    });

    let mut skipped = 0u64;
    for i in 0..frames {
        let Ok(mut next) = rx.recv() else { break };
        while let Ok(newer) = rx.try_recv() {
            next = newer;
            skipped += 1;
        }
        let (frame, captured) = next;
        let frame = frame?;
        let d = tracker.step(&frame.view()?)?;
        let visible: Vec<String> = d.areas().iter().enumerate().filter(|(_, &a)| a > 0).map(|(k, a)| format!("#{k}:{a}")).collect();
        println!("frame {i} (camera #{}) latency {:.1} ms  slots {}", frame.index, captured.elapsed().as_secs_f64() * 1e3, visible.join(" "));
    }
    eprintln!("{skipped} stale frames skipped to keep latency bounded");
    Ok(())
}
