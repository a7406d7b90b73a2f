//! The whole decomposition job, in the library so that every surface (msf-run, Rust programs, the
//! C ABI, the Python and ROS 2 surfaces) gets the same behaviour:
//!
//! source → decode-ahead → N jobs of `batch` frames → temporal slot carry-over + [`Tracker`] →
//! frames delivered in order → [`Sink`]s.
//!
//! A live source (a camera, a network stream: [`FrameSource::is_live`]) does not wait for the
//! model: under [`LivePolicy::Newest`] (the default) it is read on its own thread and each round
//! takes the newest frame, dropping the ones there was no time for ([`RunReport::frames_dropped`]);
//! files never drop a frame. [`RunReport::latency`] says how long frames took from decoded (or
//! captured) to delivered to every sink.
//!
//! ```
//! # let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
//! # let folder = msf_tests::fixture_image("camera.png").parent().unwrap().to_path_buf();
//! use msf_runtime::pipeline::{FnSink, Outcome, Pipeline};
//! use msf_runtime::source::{open, SourceOptions};
//! let pipeline = Pipeline::builder().jobs(2).batch(2).build(&model)?; // e.g. "slate.onnx"
//! let frames = open(&folder, &SourceOptions::default())?;           // images, a video, a camera…
//! let mut areas = Vec::new();
//! let mut collect = FnSink::new(|frame, d| {
//!     areas.push((frame.name.clone(), d.areas()));
//!     Ok(())
//! });
//! let report = pipeline.run(frames, &mut [&mut collect]);
//! assert_eq!(report.outcome, Outcome::Done);
//! assert_eq!(report.frames as usize, areas.len()); // every frame, in the source's order
//! # Ok::<(), msf_runtime::Error>(())
//! ```

use crate::decompose::{Decomposer, DecomposerBuilder, Decomposition};
use crate::error::{Error, Result};
use crate::source::{ByteBudget, Frame, FrameSource, Newest, Prefetch};
use crate::track::{Tracker, TrackerOptions};
use crate::view::ImageView;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where decomposed frames go, in source order: the output folder ([`crate::sink::FrameWriter`]),
/// the overlay video, or a closure ([`FnSink`]).
pub trait Sink {
    /// One frame and its decomposition. An error stops the run (the frames before stay delivered).
    fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()>;
    /// The run is over, whatever ended it; `report` says how (sinks earlier in the list have
    /// finished already, and their errors are in it). Returns the files this call wrote.
    fn finish(&mut self, _report: &RunReport) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

/// A [`Sink`] from a closure: what a library user's own code does with each frame.
pub struct FnSink<F>(F);

impl<F: FnMut(&Frame, &Decomposition) -> Result<()>> FnSink<F> {
    pub fn new(f: F) -> Self {
        FnSink(f)
    }
}

impl<F: FnMut(&Frame, &Decomposition) -> Result<()>> Sink for FnSink<F> {
    fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        (self.0)(frame, dec)
    }
}

/// What to do when a frame cannot be decoded or decomposed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop the run at the first failure; the frames before it are still delivered (the default).
    #[default]
    Stop,
    /// Leave the frame out, record it in [`RunReport::skipped`], and go on.
    Skip,
}

crate::names::named_enum!(ErrorPolicy, "error policy", { Stop => "stop", Skip => "skip" });

/// What a live source ([`FrameSource::is_live`]: a camera, a network stream) does with frames
/// decoded while the model is still busy with an earlier one. Files never drop frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LivePolicy {
    /// Keep only the newest decoded frame: older waiting ones are dropped and counted in
    /// [`RunReport::frames_dropped`], so results stay close to real time (the default).
    #[default]
    Newest,
    /// Decompose every frame, however late (the stream's own buffers, or the sender, wait).
    All,
}

crate::names::named_enum!(LivePolicy, "live policy", { Newest => "newest", All => "all" });

/// Latency of delivered frames: from the instant a frame was decoded (a camera's: captured and
/// converted) to the instant the last sink had it. Kept as a histogram with 1 % wide buckets, so
/// that a run of any length takes the same memory; quantiles are exact to within 1 %.
#[derive(Clone, Default)]
pub struct Latency {
    count: u64,
    sum_ms: f64,
    max_ms: f64,
    buckets: Vec<u64>,
}

impl Latency {
    /// Lower edge of the first bucket, ms (shorter latencies count in it).
    const FLOOR_MS: f64 = 1e-3;
    /// Ratio between the edges of a bucket.
    const RATIO: f64 = 1.01;
    /// Buckets up to ~10⁷ ms (longer latencies count in the last).
    const BUCKETS: usize = 2316;

    pub fn record(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        if self.buckets.is_empty() {
            self.buckets = vec![0; Self::BUCKETS];
        }
        let i = ((ms / Self::FLOOR_MS).max(1.0).ln() / Self::RATIO.ln()) as usize;
        self.buckets[i.min(Self::BUCKETS - 1)] += 1;
        self.count += 1;
        self.sum_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    /// Frames measured.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max_ms)
    }

    /// The latency under which a fraction `q` (0..=1) of the frames were delivered.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                // The bucket's geometric middle, never above the largest value seen.
                let mid = Self::FLOOR_MS * Self::RATIO.powf(i as f64 + 0.5);
                return Some(mid.min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }

    pub fn median_ms(&self) -> Option<f64> {
        self.quantile_ms(0.5)
    }

    pub fn p90_ms(&self) -> Option<f64> {
        self.quantile_ms(0.9)
    }

    pub fn p99_ms(&self) -> Option<f64> {
        self.quantile_ms(0.99)
    }

    /// `{"median", "p90", "p99", "max", "mean"}` in ms (rounded to µs), or `null` when no frame was delivered.
    pub fn to_json(&self) -> serde_json::Value {
        let r = |v: Option<f64>| v.map(|v| (v * 1e3).round() / 1e3);
        if self.count == 0 {
            return serde_json::Value::Null;
        }
        serde_json::json!({
            "median": r(self.median_ms()), "p90": r(self.p90_ms()), "p99": r(self.p99_ms()), "max": r(self.max_ms()), "mean": r(self.mean_ms()),
        })
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency")
            .field("count", &self.count)
            .field("median_ms", &self.median_ms())
            .field("p90_ms", &self.p90_ms())
            .field("max_ms", &self.max_ms())
            .finish()
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every frame of the source was delivered (or skipped, with [`ErrorPolicy::Skip`]).
    Done,
    /// The stop flag was raised; the frames finished before are delivered.
    Interrupted,
    /// An error ended the run (see [`RunReport::errors`]).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "ok",
            Outcome::Interrupted => "interrupted",
            Outcome::Failed => "error",
        }
    }
}

/// A frame left out under [`ErrorPolicy::Skip`].
#[derive(Debug)]
pub struct Skipped {
    /// The frame's name, when it was decoded.
    pub name: Option<String>,
    pub error: Error,
}

/// What a run kept, and why it ended.
#[derive(Debug)]
pub struct RunReport {
    pub outcome: Outcome,
    /// Frames delivered to every sink.
    pub frames: u64,
    pub skipped: Vec<Skipped>,
    /// The error that ended the run first, then those of sinks that could not finish.
    pub errors: Vec<Error>,
    /// Seconds from the first frame read to the last frame delivered.
    pub seconds: f64,
    /// Files the sinks wrote when finishing (`decomposition.json`, `overlay.mp4`).
    pub finished_files: Vec<PathBuf>,
    /// Frames of a live source decoded but left out for a newer one ([`LivePolicy::Newest`]).
    pub frames_dropped: u64,
    /// Per delivered frame, until delivered: from the start of its decode when frames are read
    /// one at a time in the frame loop (one job, a file source: decode → mask), else from when
    /// it was decoded (decoded ahead, or a live source's frame).
    pub latency: Latency,
}

impl RunReport {
    /// Frames per second of the frame loop.
    pub fn fps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Every error on one line (`first; and second`), each cause once.
    pub fn error_line(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| self.errors.iter().map(|e| crate::error::one_line(e)).collect::<Vec<_>>().join("; and "))
    }

    fn fail(&mut self, e: Error) {
        self.outcome = Outcome::Failed;
        self.errors.push(e);
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Builder for [`Pipeline`]: the decomposer's options plus how frames are scheduled.
#[derive(Clone, Debug, Default)]
pub struct PipelineBuilder {
    decomposer: DecomposerBuilder,
    threads: Option<usize>,
    jobs: Option<usize>,
    batch: Option<usize>,
    temporal: Option<TrackerOptions>,
    /// Temporal mode carries slots only where the model has the `slots_init` input.
    temporal_auto: bool,
    live: bool,
    live_policy: LivePolicy,
    errors: ErrorPolicy,
    stop: Option<Arc<AtomicBool>>,
    decode_ahead: Option<usize>,
}

/// Default bound on decoded frames held at once (decoded ahead, or waiting for their call).
pub const DEFAULT_DECODE_AHEAD_BYTES: usize = 256 << 20;

impl PipelineBuilder {
    /// Backend, provider and preprocessing of the model (its `threads` and `concurrency` are set by
    /// the pipeline: use [`Self::threads`] and [`Self::jobs`]).
    pub fn decomposer(mut self, b: DecomposerBuilder) -> Self {
        self.decomposer = b;
        self
    }
    /// Kernel threads per inference call (default: the cores shared out between the jobs).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }
    /// Inference calls running side by side (default: [`default_jobs`]).
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = Some(n);
        self
    }
    /// Frames per inference call (default 1; not with temporal mode).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = Some(n);
        self
    }
    /// Temporal mode: each stream's slots carried from frame to frame and slot ids matched to the
    /// previous frame's (needs the `slots_init` input: not `--no-slots-in`); one job, batch 1.
    pub fn temporal(mut self, on: bool) -> Self {
        self.temporal = on.then(|| TrackerOptions { temporal: true, matching: true, ..Default::default() });
        self
    }
    /// Temporal mode with explicit tracker options.
    /// Temporal mode as far as the model allows: slot ids matched between frames always, slots
    /// carried from frame to frame when the model has the `slots_init` input (else
    /// [`Pipeline::carries_slots`] is false and the caller may say so).
    pub fn temporal_auto(mut self, on: bool) -> Self {
        self.temporal_auto = on;
        self.temporal(on)
    }
    pub fn tracker(mut self, opts: TrackerOptions) -> Self {
        self.temporal = Some(opts);
        self
    }
    /// The source is, or includes, a live one (a camera, a network stream: see
    /// [`crate::source::is_live_input`]): each frame's latency matters more than throughput, so
    /// the default is one job, and the source is read on its own thread even before it says it is
    /// live. Which frames may be dropped is still each frame's source's
    /// ([`FrameSource::is_live`]; a source that says so is treated as live without this).
    pub fn live(mut self, yes: bool) -> Self {
        self.live = yes;
        self
    }
    /// What a live source does with frames decoded while the model is busy (default
    /// [`LivePolicy::Newest`]: keep the newest, drop and count the others).
    pub fn live_policy(mut self, policy: LivePolicy) -> Self {
        self.live_policy = policy;
        self
    }
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.errors = policy;
        self
    }
    /// Bytes of decoded frames held at once, decoded ahead or waiting for their call (default
    /// [`DEFAULT_DECODE_AHEAD_BYTES`]). One frame is always allowed, so the peak is this plus one
    /// frame (805 MB for a 16384² image, the default decode limit), whatever `jobs` and `batch`.
    pub fn decode_ahead_bytes(mut self, n: usize) -> Self {
        self.decode_ahead = Some(n);
        self
    }
    /// A flag that stops the run after the frames in flight (Ctrl-C, a robot's shutdown).
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// The jobs this builder will run.
    pub fn resolved_jobs(&self) -> usize {
        self.jobs.unwrap_or_else(|| default_jobs(self.temporal.is_some(), self.live, self.decomposer.wants_gpu())).max(1)
    }

    /// Check the options, load the model (one session per job where the backend needs it).
    pub fn build(self, model: impl AsRef<Path>) -> Result<Pipeline> {
        self.check()?;
        let jobs = self.resolved_jobs();
        let mut b = self.decomposer.clone();
        match self.threads {
            Some(n) => b = b.threads(n),
            None if jobs > 1 => b = b.threads((cores() / jobs).max(1)),
            None => {}
        }
        if jobs > 1 {
            b = b.concurrency(jobs);
        }
        let dec = Arc::new(b.build(model)?);
        self.with_decomposer(dec)
    }

    /// A pipeline over a model already loaded (its threads and concurrency are kept as they are).
    pub fn with_decomposer(self, dec: Arc<Decomposer>) -> Result<Pipeline> {
        self.check()?;
        let jobs = self.resolved_jobs();
        let tracker = match &self.temporal {
            Some(opts) => {
                let carry = opts.temporal && (dec.info().slots_input || !self.temporal_auto);
                Some(Tracker::with_options(dec.clone(), TrackerOptions { temporal: carry, ..opts.clone() })?)
            }
            None => None,
        };
        Ok(Pipeline {
            dec,
            jobs,
            batch: self.batch.unwrap_or(1).max(1),
            tracker: std::sync::Mutex::new(tracker),
            live: self.live,
            live_policy: self.live_policy,
            errors: self.errors,
            stop: self.stop.unwrap_or_default(),
            decode_ahead: self.decode_ahead.unwrap_or(DEFAULT_DECODE_AHEAD_BYTES).max(1),
        })
    }

    fn check(&self) -> Result<()> {
        for (what, v) in [("jobs", self.jobs), ("threads", self.threads), ("batch", self.batch)] {
            if let Some(v) = v.filter(|&v| v > MAX_PARALLEL) {
                return Err(Error::InvalidConfig(format!("{what} {v} is over {MAX_PARALLEL}: each one takes a thread or a frame's memory")));
            }
        }
        if self.temporal.is_some() && self.batch.is_some_and(|b| b > 1) {
            return Err(Error::InvalidConfig("temporal mode feeds each frame's slots into the next, one frame at a time: batch must be 1".into()));
        }
        if self.temporal.is_some() && self.jobs.is_some_and(|j| j > 1) {
            return Err(Error::InvalidConfig("temporal mode feeds each frame's slots into the next, one frame at a time: jobs must be 1".into()));
        }
        Ok(())
    }
}

/// Most jobs, kernel threads or frames per batch a pipeline takes: bounds threads started and
/// frames held, whatever a caller passes.
pub const MAX_PARALLEL: usize = 256;

/// Jobs when none are asked for: every core for files and videos on the CPU, which gives the most
/// frames/s; one for temporal mode, a live source or a GPU provider, where each frame's latency
/// matters (and a GPU runs one call at a time anyway).
pub fn default_jobs(temporal: bool, live: bool, gpu: bool) -> usize {
    if temporal || live || gpu {
        1
    } else {
        cores()
    }
}

/// A loaded model and a schedule for decomposing a stream of frames. See the [module](self) docs.
pub struct Pipeline {
    dec: Arc<Decomposer>,
    jobs: usize,
    batch: usize,
    /// Temporal mode's tracker; reset whenever a frame of another stream arrives.
    tracker: std::sync::Mutex<Option<Tracker>>,
    live: bool,
    live_policy: LivePolicy,
    errors: ErrorPolicy,
    stop: Arc<AtomicBool>,
    decode_ahead: usize,
}

/// The source as the frame loop reads it: each item with the instant it was decoded.
enum Frames {
    /// Decoded when asked for.
    Plain(Box<dyn FrameSource>),
    /// Decoded ahead on a thread, within the byte budget.
    Ahead(Prefetch),
    /// A live source read on a thread, newest frame only.
    Newest(Newest),
}

impl Frames {
    fn next_timed(&mut self) -> Option<(Result<Frame>, Instant)> {
        match self {
            // A file's frame is timed from the start of its decode (what a control loop waits
            // for); a live one from when it is decoded (reading it first waits for the camera).
            Frames::Plain(s) => {
                let start = Instant::now();
                s.next().map(|item| (item, if s.is_live() { Instant::now() } else { start }))
            }
            Frames::Ahead(p) => p.next_timed(),
            Frames::Newest(n) => n.next_timed(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Frames::Newest(n) => n.dropped(),
            _ => 0,
        }
    }
}

impl Pipeline {
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }
    pub fn decomposer(&self) -> &Arc<Decomposer> {
        &self.dec
    }
    pub fn jobs(&self) -> usize {
        self.jobs
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn is_temporal(&self) -> bool {
        self.tracker.lock().expect("tracker lock").is_some()
    }
    /// Each frame's slot attention starts from the previous frame's slots.
    pub fn carries_slots(&self) -> bool {
        self.tracker.lock().expect("tracker lock").as_ref().is_some_and(|t| t.options().temporal)
    }
    /// Raise it (from any thread) to stop after the frames in flight.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
    pub fn live_policy(&self) -> LivePolicy {
        self.live_policy
    }

    /// Decompose every frame of `source` and hand the results to `sinks` in source order; then
    /// let every sink finish. Never panics on a failing frame: how the run ended is in the report.
    pub fn run(&self, source: Box<dyn FrameSource>, sinks: &mut [&mut dyn Sink]) -> RunReport {
        let mut report = RunReport {
            outcome: Outcome::Done,
            frames: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
            seconds: 0.0,
            finished_files: Vec::new(),
            frames_dropped: 0,
            latency: Latency::default(),
        };
        let t0 = Instant::now();
        let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tracker.as_mut() {
            t.reset();
        }
        // A live source is read as it comes, newest frame first; others are decoded ahead while
        // the current frames are decomposed.
        let budget = ByteBudget::new(self.decode_ahead);
        let newest = self.live_policy == LivePolicy::Newest && (self.live || source.is_live());
        let prefetch = !newest && self.jobs > 1;
        let mut frames = if newest {
            Frames::Newest(Newest::new(source).with_stop_flag(self.stop.clone()))
        } else if prefetch {
            Frames::Ahead(Prefetch::new(source, 2 * self.group(), budget.clone()))
        } else {
            Frames::Plain(source)
        };
        self.frame_loop(&mut frames, tracker.as_mut(), sinks, &mut report, prefetch.then_some(&*budget));
        report.frames_dropped = frames.dropped();
        drop(frames);
        report.seconds = t0.elapsed().as_secs_f64();
        for sink in sinks.iter_mut() {
            match sink.finish(&report) {
                Ok(files) => report.finished_files.extend(files),
                Err(e) => report.fail(e),
            }
        }
        report
    }

    /// Frames decomposed per round: `jobs` calls of `batch` frames (one frame in temporal mode).
    fn group(&self) -> usize {
        self.batch * self.jobs
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// `budget`: the decode-ahead's, to release each frame's bytes once it is delivered.
    fn frame_loop(
        &self,
        frames: &mut Frames,
        mut tracker: Option<&mut Tracker>,
        sinks: &mut [&mut dyn Sink],
        report: &mut RunReport,
        budget: Option<&ByteBudget>,
    ) {
        let group = if tracker.is_some() { 1 } else { self.group() };
        let mut pending: Vec<Frame> = Vec::with_capacity(group);
        // When each pending frame was decoded.
        let mut decoded_at: Vec<Instant> = Vec::with_capacity(group);
        let mut stream = None;
        loop {
            if self.stopped() {
                report.outcome = Outcome::Interrupted;
                return;
            }
            let mut source_error = None;
            let mut exhausted = false;
            let mut pending_bytes = 0;
            // A round is `group` frames, or fewer when they are large: the bytes held stay bounded.
            while pending.len() < group && pending_bytes < self.decode_ahead && !self.stopped() {
                match frames.next_timed() {
                    Some((Ok(f), at)) => {
                        pending_bytes += f.data.len();
                        pending.push(f);
                        decoded_at.push(at);
                    }
                    Some((Err(e), _)) if self.errors == ErrorPolicy::Skip => report.skipped.push(Skipped { name: None, error: e }),
                    Some((Err(e), _)) => {
                        source_error = Some(e);
                        break;
                    }
                    None => {
                        // A live source gives up waiting when the stop flag is raised.
                        exhausted = !self.stopped();
                        break;
                    }
                }
            }
            if pending.is_empty() && source_error.is_none() {
                if self.stopped() && !exhausted {
                    report.outcome = Outcome::Interrupted;
                }
                return;
            }
            // Frames read before a bad one are still decomposed and delivered, in order.
            let results: Vec<Result<Decomposition>> = match tracker.as_deref_mut() {
                Some(t) => pending
                    .iter()
                    .map(|f| {
                        // A frame of another stream (the next input) starts a new track.
                        if stream.is_some_and(|s| s != f.stream) {
                            t.reset();
                        }
                        stream = Some(f.stream);
                        t.step(&f.view()?)
                    })
                    .collect(),
                None => self.decompose_groups(&pending),
            };
            for ((frame, result), at) in pending.drain(..).zip(results).zip(decoded_at.drain(..)) {
                let delivered = result.and_then(|d| sinks.iter_mut().try_for_each(|s| s.write(&frame, &d)));
                match delivered {
                    Ok(()) => {
                        report.frames += 1;
                        report.latency.record(at.elapsed());
                    }
                    Err(e) if self.errors == ErrorPolicy::Skip && !matches!(e, Error::Write { .. }) => {
                        report.skipped.push(Skipped { name: Some(frame.name.clone()), error: e })
                    }
                    Err(e) => {
                        report.fail(e);
                        return;
                    }
                }
                if let Some(b) = budget {
                    b.release(frame.data.len());
                }
            }
            if let Some(e) = source_error {
                report.fail(e);
                return;
            }
        }
    }

    /// Decompose `frames` in calls of `batch` frames, the calls on parallel threads; one result per
    /// frame, in order. A frame that cannot be viewed fails alone; a failed call fails its frames.
    fn decompose_groups(&self, frames: &[Frame]) -> Vec<Result<Decomposition>> {
        let call = |chunk: &[Frame]| -> Vec<Result<Decomposition>> {
            let views: Vec<Result<ImageView>> = chunk.iter().map(Frame::view).collect();
            let good: Vec<ImageView> = views.iter().filter_map(|v| v.as_ref().ok().copied()).collect();
            let mut decs = match self.dec.decompose_batch(&good) {
                Ok(ds) => ds.into_iter().map(Ok).collect(),
                Err(e) => call_failed(e, good.len()),
            }
            .into_iter();
            views.into_iter().map(|v| v.and_then(|_| decs.next().unwrap_or(Err(Error::InBatch("no output".into()))))).collect()
        };
        if frames.len() <= self.batch {
            return call(frames);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = frames.chunks(self.batch).map(|c| (c.len(), s.spawn(move || call(c)))).collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| h.join().unwrap_or_else(|p| call_failed(Error::Panicked(crate::error::panic_message(&*p)), n)))
                .collect()
        })
    }
}

/// The results of a failed call of `n` frames: the first carries the error, the others refer to it.
fn call_failed(e: Error, n: usize) -> Vec<Result<Decomposition>> {
    let msg = crate::error::one_line(&e);
    std::iter::once(Err(e)).chain((1..n).map(|_| Err(Error::InBatch(msg.clone())))).take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        assert_eq!(default_jobs(true, false, false), 1);
        assert_eq!(default_jobs(false, true, false), 1);
        assert_eq!(default_jobs(false, false, true), 1);
        assert_eq!(default_jobs(false, false, false), cores());
        let e = Pipeline::builder().temporal(true).batch(2).check().unwrap_err();
        assert!(e.to_string().contains("batch must be 1"), "{e}");
        let e = Pipeline::builder().temporal(true).jobs(2).check().unwrap_err();
        assert!(e.to_string().contains("jobs must be 1"), "{e}");
        assert_eq!(Pipeline::builder().temporal(true).resolved_jobs(), 1);
        assert_eq!("all".parse::<LivePolicy>().unwrap(), LivePolicy::All);
        assert_eq!(LivePolicy::default(), LivePolicy::Newest);
        for &n in LivePolicy::NAMES {
            assert_eq!(n.parse::<LivePolicy>().unwrap().as_str(), n);
        }
    }

    #[test]
    fn latency_quantiles_are_within_a_percent() {
        let mut l = Latency::default();
        assert_eq!((l.median_ms(), l.to_json()), (None, serde_json::Value::Null));
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let close = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() <= want * 0.01;
        assert!(close(l.median_ms(), 500.0), "{:?}", l.median_ms());
        assert!(close(l.p90_ms(), 900.0), "{:?}", l.p90_ms());
        assert_eq!(l.max_ms(), Some(1000.0));
        assert!(close(l.mean_ms(), 500.5));
        assert_eq!(l.count(), 1000);
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(1 << 40));
        assert_eq!(l.count(), 1002);
    }
}
