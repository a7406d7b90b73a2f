//! Decompose a video frame by frame with stable slot ids, and write an overlay video.
//!
//! ```text
//! cargo run --release -p msf-runtime --features video --example video_loop -- MODEL.onnx INPUT.mp4 [OUT.mp4]
//! ```
//! MODEL: an `msf-export` output; with the `slots_init` input (any export but `--no-slots-in`), slots are carried from frame to frame
//! (temporal mode), otherwise each frame starts from the learned slots and ids are kept by matching.
//! Frames are decoded one at a time (memory stays flat); each frame's per-slot area and box is
//! printed, and the overlay (slot colours, boundaries, the area outside the centre crop dimmed) is
//! encoded to OUT (default `overlay.mp4`).

use msf_runtime::sink::overlay;
use msf_runtime::sink::video::VideoWriter;
use msf_runtime::source::video::VideoSource;
use msf_runtime::source::SourceOptions;
use msf_runtime::{Decomposer, Tracker};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (model, input) = match (args.first(), args.get(1)) {
        (Some(m), Some(i)) => (m, i),
        _ => {
            eprintln!("usage: video_loop MODEL.onnx INPUT.mp4 [OUT.mp4]");
            std::process::exit(2);
        }
    };
    let out = args.get(2).cloned().unwrap_or_else(|| PathBuf::from("overlay.mp4"));

    let dec = Arc::new(Decomposer::builder().build(model)?);
    let mut tracker = Tracker::new(Arc::clone(&dec));
    let video = VideoSource::open(input, &SourceOptions::default())?;
    let (w, h) = video.size();
    let fps = video.fps().unwrap_or(25.0);
    eprintln!("{}: {w}×{h} at {fps:.2} frames/s; temporal mode: {}", input.display(), tracker.is_temporal());
    let mut writer = VideoWriter::create(&out, w, h, fps)?;

    let start = Instant::now();
    let mut n = 0u64;
    for frame in video {
        let frame = frame?;
        let d = tracker.step(&frame.view()?)?;
        let areas = d.areas();
        let objects: Vec<String> = d
            .bboxes()
            .iter()
            .enumerate()
            .filter_map(|(k, b)| b.map(|b| format!("#{k} {}px [{},{})x[{},{})", areas[k], b.x0, b.x1, b.y0, b.y1)))
            .collect();
        println!("{} t={:.3}s {}", frame.name, frame.pts_seconds.unwrap_or(f64::NAN), objects.join("  "));
        let img = overlay::render(&frame.data, frame.width, frame.height, &d.mask_in_frame());
        writer.write_rgb(img.as_raw())?;
        n += 1;
    }
    let written = writer.finish()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{n} frames in {secs:.2} s ({:.1} frames/s); {written} frames written to {}", n as f64 / secs, out.display());
    Ok(())
}
