//! Identity switches on a synthetic moving-shapes video, per tracking mode.
//!
//! ```text
//! cargo run -p msf-runtime --release --example identity_switches -- MODEL.onnx [FRAMES] [SIZE]
//! ```
//! MODEL must have the `slots_init` input (temporal modes need it): any `msf-export` output but `--no-slots-in`.
//! The video (default 60 frames of 256×256): a disc, a square and a triangle moving smoothly over a
//! textured background, with per-pixel ground truth ([`msf_runtime::eval::synthetic`]). An identity
//! switch is a change of the slot id that best overlaps a ground-truth object between consecutive
//! frames ([`msf_runtime::eval::identity_switches`]), summed over the 3 objects.
//!
//! Modes: (a) each frame decomposed independently from the learned slots, ids as the model outputs
//! them; (b) slots carried from frame to frame, no matching; (c) carried slots + Hungarian matching;
//! (d) independent frames + Hungarian matching.

use msf_runtime::eval::{identity_switches, synthetic};
use msf_runtime::track::TrackerOptions;
use msf_runtime::{Decomposer, ImageView, PixelFormat, Tracker};
use std::sync::Arc;

/// The modes compared: label, options.
pub fn modes(iou_weight: f32) -> [(&'static str, TrackerOptions); 4] {
    let o = |temporal, matching| TrackerOptions { temporal, matching, iou_weight };
    [
        ("(a) per-frame, no matching", o(false, false)),
        ("(b) carried slots, no matching", o(true, false)),
        ("(c) carried slots + Hungarian", o(true, true)),
        ("(d) per-frame + Hungarian", o(false, true)),
    ]
}

/// What one mode did on a video.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// Identity switches, summed over the objects.
    pub switches: usize,
    /// Frames that the matching reordered (output order ≠ model order).
    pub reordered: usize,
}

/// Identity switches of one mode on `video`.
pub fn measure(dec: &Arc<Decomposer>, video: &synthetic::MovingShapes, opts: TrackerOptions) -> msf_runtime::Result<Measurement> {
    let mut tracker = Tracker::with_options(dec.clone(), opts)?;
    let mut masks = Vec::with_capacity(video.frames.len());
    let mut reordered = 0;
    for f in &video.frames {
        let view = ImageView::packed(f, video.size, video.size, PixelFormat::Rgb8)?;
        let d = tracker.step(&view)?;
        reordered += usize::from(tracker.last_order().iter().enumerate().any(|(i, &o)| i != o));
        // At the frame's resolution (the video is square, so the centre crop is the whole frame).
        masks.push(d.mask_in_frame());
    }
    let switches = identity_switches(video.ids.iter().map(Vec::as_slice).zip(masks.iter().map(Vec::as_slice)), synthetic::NUM_OBJECTS);
    Ok(Measurement { switches, reordered })
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: identity_switches MODEL.onnx [FRAMES=60] [SIZE=256] [IOU_WEIGHT=0.5]   (MODEL not exported with --no-slots-in)");
        std::process::exit(2);
    };
    let frames: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(60);
    let size: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let iou_weight: f32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(TrackerOptions::default().iou_weight);
    let dec = Arc::new(Decomposer::builder().threads(std::thread::available_parallelism().map_or(1, |n| n.get())).build(model)?);
    let info = dec.info();
    println!(
        "model {model}: {} slots of {}, slots input {}; video {frames} frames {size}x{size}, {} objects, {} object-transitions",
        info.num_slots,
        info.slot_dim,
        info.slots_input,
        synthetic::NUM_OBJECTS,
        synthetic::NUM_OBJECTS * frames.saturating_sub(1)
    );
    let video = synthetic::moving_shapes(frames, size);
    println!("matching similarity: {:.2} x mask IoU + {:.2} x slot cosine", iou_weight, 1.0 - iou_weight);
    println!("{:<34} {:>17} {:>16}", "mode", "identity switches", "frames reordered");
    for (label, opts) in modes(iou_weight) {
        let t = std::time::Instant::now();
        let m = measure(&dec, &video, opts)?;
        println!("{label:<34} {:>17} {:>16}   ({:.1} s)", m.switches, m.reordered, t.elapsed().as_secs_f32());
    }
    Ok(())
}
