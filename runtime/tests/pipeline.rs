//! The library pipeline as a Rust user drives it, on a real export of the upstream fixture
//! checkpoint: ordered delivery across jobs and batches, temporal state per stream, the error
//! policy, the stop flag, and what the report keeps.

use msf_runtime::eval::synthetic;
use msf_runtime::pipeline::{ErrorPolicy, FnSink, Outcome, Pipeline, RunReport};
use msf_runtime::source::{open_all, Frame, FrameSource, SourceOptions};
use msf_runtime::{Decomposer, Decomposition, Error, ImageView, PixelFormat, Tracker};
use msf_tests::{require_fixtures, FixtureModel};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Frames handed out from a list (an error is an `Err` item), as a video or a camera would.
struct Listed(VecDeque<msf_runtime::Result<Frame>>);

impl Iterator for Listed {
    type Item = msf_runtime::Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.pop_front()
    }
}

impl FrameSource for Listed {
    fn describe(&self) -> String {
        "listed frames".into()
    }
}

/// `n` frames of the synthetic video, numbered per stream (`stream`, index from 0).
fn video(stream: u32, n: usize, size: u32, phase: usize) -> Vec<Frame> {
    let v = synthetic::moving_shapes(n + phase, size);
    v.frames[phase..]
        .iter()
        .enumerate()
        .map(|(i, rgb)| Frame {
            index: i as u64,
            stream,
            pts_seconds: Some(i as f64 / 25.0),
            name: format!("s{stream}_{i}"),
            width: size,
            height: size,
            data: rgb.clone(),
        })
        .collect()
}

fn collect(pipeline: &Pipeline, frames: Vec<msf_runtime::Result<Frame>>) -> (RunReport, Vec<(String, Decomposition)>) {
    let mut got = Vec::new();
    let mut sink = FnSink::new(|f: &Frame, d: &Decomposition| {
        got.push((f.name.clone(), d.clone()));
        Ok(())
    });
    let report = pipeline.run(Box::new(Listed(frames.into())), &mut [&mut sink]);
    (report, got)
}

#[test]
fn jobs_and_batches_deliver_every_frame_in_order_with_the_same_results() {
    let Some(_) = require_fixtures("jobs_and_batches_deliver_every_frame_in_order_with_the_same_results") else { return };
    let model = FixtureModel::slate(false);
    let frames = video(0, 7, 96, 0);
    let dec = Arc::new(Decomposer::builder().threads(1).build(&model).unwrap());
    let serial: Vec<Decomposition> = frames.iter().map(|f| dec.decompose(&f.view().unwrap()).unwrap()).collect();
    for (jobs, batch) in [(1, 1), (2, 1), (2, 3), (3, 2)] {
        let pipeline = Pipeline::builder().jobs(jobs).batch(batch).threads(1).build(&model).unwrap();
        assert_eq!((pipeline.jobs(), pipeline.batch()), (jobs, batch));
        let (report, got) = collect(&pipeline, frames.iter().cloned().map(Ok).collect());
        assert_eq!(report.outcome, Outcome::Done, "{:?}", report.errors);
        assert_eq!(report.frames, 7);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, frames.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), "jobs {jobs} batch {batch}");
        for ((_, d), s) in got.iter().zip(&serial) {
            assert_eq!(d.mask, s.mask, "jobs {jobs} batch {batch}");
            let worst = d.slots.iter().zip(&s.slots).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-4, "jobs {jobs} batch {batch}: slots differ by {worst}");
        }
    }
}

/// Temporal state follows `Frame::stream`: the second stream's frames come out exactly as a fresh
/// tracker gives them, even though its frame indices do not go down (nothing to guess from).
#[test]
fn temporal_state_starts_again_with_each_stream() {
    let Some(_) = require_fixtures("temporal_state_starts_again_with_each_stream") else { return };
    let model = FixtureModel::slate(true);
    let (a, b) = (video(0, 3, 96, 0), video(1, 3, 96, 5));
    // Stream 1's indices continue stream 0's: an index-based guess would carry the slots over.
    let b: Vec<Frame> = b.into_iter().map(|f| Frame { index: f.index + 3, ..f }).collect();
    let pipeline = Pipeline::builder().temporal(true).build(&model).unwrap();
    assert!(pipeline.is_temporal());
    let (report, got) = collect(&pipeline, a.iter().chain(&b).cloned().map(Ok).collect());
    assert_eq!((report.outcome, report.frames), (Outcome::Done, 6));

    let mut fresh = Tracker::new(pipeline.decomposer().clone());
    for (f, (name, d)) in b.iter().zip(&got[3..]) {
        let want = fresh.step(&f.view().unwrap()).unwrap();
        assert_eq!(name, &f.name);
        assert_eq!(d.slots, want.slots, "{name}: stream 1 must not start from stream 0's slots");
        assert_eq!(d.mask, want.mask);
    }
    // Without the stream change, carrying stream 0's slots changes the first frame of stream 1.
    let mut carried = Tracker::new(pipeline.decomposer().clone());
    for f in &a {
        carried.step(&f.view().unwrap()).unwrap();
    }
    let continued = carried.step(&b[0].view().unwrap()).unwrap();
    assert_ne!(continued.slots, got[3].1.slots, "the test video must be able to tell the two apart");

    // Batches or jobs cannot go with temporal mode.
    let e = Pipeline::builder().temporal(true).batch(2).build(&model).err().unwrap();
    assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
}

#[test]
fn stop_policy_keeps_the_frames_before_a_bad_one_and_skip_policy_goes_on() {
    let Some(_) = require_fixtures("stop_policy_keeps_the_frames_before_a_bad_one_and_skip_policy_goes_on") else { return };
    let model = FixtureModel::slate(false);
    let bad = || Err(Error::InputNotFound { path: "missing.png".into() });
    let frames = || {
        let v = video(0, 5, 64, 0);
        let mut items: Vec<msf_runtime::Result<Frame>> = v.into_iter().map(Ok).collect();
        items.insert(2, bad());
        // A frame whose pixels cannot be viewed fails in the decomposition, not in the source.
        items.push(Ok(Frame { index: 9, stream: 0, pts_seconds: None, name: "short".into(), width: 64, height: 64, data: vec![0; 10] }));
        items
    };
    for jobs in [1, 2] {
        let stop = Pipeline::builder().jobs(jobs).batch(2).build(&model).unwrap();
        let (report, got) = collect(&stop, frames());
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["s0_0", "s0_1"], "jobs {jobs}");
        assert!(report.error_line().unwrap().contains("missing.png"), "{:?}", report.error_line());

        let skip = Pipeline::builder().jobs(jobs).batch(2).on_error(ErrorPolicy::Skip).build(&model).unwrap();
        let (report, got) = collect(&skip, frames());
        assert_eq!(report.outcome, Outcome::Done, "{:?}", report.errors);
        assert_eq!(got.len(), 5, "jobs {jobs}: the five good frames");
        assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
        assert!(report.skipped.iter().any(|s| s.name.as_deref() == Some("short")));
    }
}

#[test]
fn a_failing_sink_ends_the_run_and_every_sink_finishes() {
    let Some(_) = require_fixtures("a_failing_sink_ends_the_run_and_every_sink_finishes") else { return };
    let model = FixtureModel::slate(false);
    let pipeline = Pipeline::builder().jobs(1).build(&model).unwrap();
    let mut seen = 0;
    let mut failing = FnSink::new(|f: &Frame, _: &Decomposition| {
        if f.index == 2 {
            return Err(Error::InvalidConfig("disk full".into()));
        }
        Ok(())
    });
    let mut counting = FnSink::new(|_: &Frame, _: &Decomposition| {
        seen += 1;
        Ok(())
    });
    let frames: VecDeque<_> = video(0, 4, 64, 0).into_iter().map(Ok).collect();
    let report = pipeline.run(Box::new(Listed(frames)), &mut [&mut failing, &mut counting]);
    assert_eq!((report.outcome, report.frames), (Outcome::Failed, 2));
    assert!(report.error_line().unwrap().contains("disk full"));
    assert_eq!(seen, 2, "a frame reaches the next sink only when the earlier ones took it");
}

#[test]
fn the_stop_flag_ends_the_run_after_the_frames_in_flight() {
    let Some(_) = require_fixtures("the_stop_flag_ends_the_run_after_the_frames_in_flight") else { return };
    let model = FixtureModel::slate(false);
    let flag = Arc::new(AtomicBool::new(false));
    let pipeline = Pipeline::builder().jobs(1).stop_flag(flag.clone()).build(&model).unwrap();
    let mut sink = FnSink::new(|f: &Frame, _: &Decomposition| {
        if f.index == 1 {
            flag.store(true, Ordering::SeqCst);
        }
        Ok(())
    });
    let frames: VecDeque<_> = video(0, 6, 64, 0).into_iter().map(Ok).collect();
    let report = pipeline.run(Box::new(Listed(frames)), &mut [&mut sink]);
    assert_eq!((report.outcome, report.frames), (Outcome::Interrupted, 2));
}

/// The same folder through `open_all` (the way msf-run reads it) and through plain decompose calls.
#[test]
fn a_folder_through_the_pipeline_equals_decompose_calls() {
    let Some(fx) = require_fixtures("a_folder_through_the_pipeline_equals_decompose_calls") else { return };
    let model = FixtureModel::slate(false);
    let pipeline = Pipeline::builder().jobs(2).batch(2).build(&model).unwrap();
    let opts = SourceOptions::default();
    let src = open_all(&[fx.join("images")], &opts).unwrap();
    let (report, got) = {
        let mut got = Vec::new();
        let mut sink = FnSink::new(|f: &Frame, d: &Decomposition| {
            got.push((f.name.clone(), f.width, f.height, d.mask.clone()));
            Ok(())
        });
        (pipeline.run(src, &mut [&mut sink]), got)
    };
    assert_eq!(report.outcome, Outcome::Done);
    assert_eq!(report.frames as usize, got.len());
    assert!(got.len() >= 5);
    for f in open_all(&[fx.join("images")], &opts).unwrap() {
        let f = f.unwrap();
        let d = pipeline.decomposer().decompose(&ImageView::packed(&f.data, f.width, f.height, PixelFormat::Rgb8).unwrap()).unwrap();
        let g = got.iter().find(|g| g.0 == f.name).unwrap();
        assert_eq!((g.1, g.2), (f.width, f.height));
        let same = g.3.iter().zip(&d.mask).filter(|(a, b)| a == b).count();
        assert!(same as f64 >= 0.999 * d.mask.len() as f64, "{}: {same} of {} mask pixels equal", f.name, d.mask.len());
    }
}

/// Frames of a list that count how many have been taken from the source.
struct Counted(VecDeque<Frame>, Arc<std::sync::atomic::AtomicUsize>);

impl Iterator for Counted {
    type Item = msf_runtime::Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        let f = self.0.pop_front()?;
        self.1.fetch_add(1, Ordering::SeqCst);
        Some(Ok(f))
    }
}

impl FrameSource for Counted {
    fn describe(&self) -> String {
        "counted frames".into()
    }
}

/// Decoded frames held at once are bounded by bytes, whatever `jobs` and `batch` ask for: with a
/// budget under one frame, the source is never more than two frames ahead of the sinks (one
/// decoded ahead, one being decomposed); by frame count it would be 3 × jobs × batch = 24.
#[test]
fn decode_ahead_is_bounded_by_bytes_not_frames() {
    let Some(_) = require_fixtures("decode_ahead_is_bounded_by_bytes_not_frames") else { return };
    let model = FixtureModel::slate(false);
    let frames = video(0, 24, 64, 0);
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pipeline = Pipeline::builder().jobs(2).batch(4).threads(1).decode_ahead_bytes(1).build(&model).unwrap();
    let mut delivered = 0usize;
    let mut most_ahead = 0usize;
    let mut sink = FnSink::new(|_: &Frame, _: &Decomposition| {
        delivered += 1;
        most_ahead = most_ahead.max(taken.load(Ordering::SeqCst) - delivered);
        Ok(())
    });
    let report = pipeline.run(Box::new(Counted(frames.into(), taken.clone())), &mut [&mut sink]);
    drop(sink);
    assert_eq!((report.outcome, report.frames), (Outcome::Done, 24));
    assert!(most_ahead <= 2, "the source ran {most_ahead} frames ahead of the sinks");
    // The default budget (256 MiB) holds these small frames by the frame count, as before.
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pipeline = Pipeline::builder().jobs(2).batch(4).threads(1).build(&model).unwrap();
    let report = pipeline.run(Box::new(Counted(video(0, 24, 64, 0).into(), taken.clone())), &mut [&mut FnSink::new(|_: &Frame, _: &Decomposition| Ok(()))]);
    assert_eq!(report.frames, 24);
}

/// `temporal_auto` matches ids on any model and carries slots only where the model has the input;
/// `temporal` alone refuses a model without it.
#[test]
fn temporal_auto_carries_slots_only_where_the_model_can() {
    let Some(_) = require_fixtures("temporal_auto_carries_slots_only_where_the_model_can") else { return };
    let plain = Pipeline::builder().temporal_auto(true).build(&FixtureModel::slate(false)).unwrap();
    assert!(plain.is_temporal() && !plain.carries_slots());
    let with_input = Pipeline::builder().temporal_auto(true).build(&FixtureModel::slate(true)).unwrap();
    assert!(with_input.carries_slots());
    assert!(matches!(Pipeline::builder().temporal(true).build(&FixtureModel::slate(false)), Err(Error::NoSlotsInput)));
}
