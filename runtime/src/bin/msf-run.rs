//! `msf-run`: decompose images, folders, videos and cameras into slots and one mask per object.
//!
//! A thin shell over the library: `source::open_all` → `Decomposer` → `sink::FrameWriter`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::{CommandFactory, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use msf_runtime::sink::{overlay, FrameWriter, MaskRes, SinkOptions};
use msf_runtime::source::{self, Frame, FrameSource, SourceOptions};
use msf_runtime::track::TrackerOptions;
use msf_runtime::{BackendKind, Decomposer, Decomposition, Error, Provider, Tracker};
use serde_json::json;

const AFTER_HELP: &str = "\
Inputs:
  image files     png, jpg, bmp, tif, webp, gif (decoded to RGB, EXIF orientation applied)
  folders         the image files directly inside, in natural order (frame2 before frame10)
  glob patterns   quoted so the shell leaves them alone: 'frames/*.jpg'
  video files     mp4, mkv, avi, mov, webm, m4v, ... (build with --features video)
  cameras         /dev/video0 (build with --features camera)
  Several inputs run one after the other; consecutive image files count as one list for
  --start/--every, and --max-frames caps the whole run.

Output folder (-o):
  masks/<name>.png      slot id per pixel, indexed PNG with the DAVIS palette (255 = void: outside
                        the centre crop the model saw); frame size, or 256x256 with --mask-res model
  overlays/<name>.jpg   the frame tinted with one colour per slot, slot boundaries in white
  slots/<name>.npy      slots, float32 (K, D)
  attn/<name>.npy       attention, float32 (K, G, G), with --save-attn
  decomposition.json    model, options, and per frame per slot: area, fraction, bbox [x,y,w,h] and
                        the mask as COCO RLE ({\"size\":[h,w],\"counts\":[...]}, column-major)
  overlay.mp4           the overlays as a video, with --overlay-video
  Every file is written to a temporary name and renamed, so no half-written file is ever left.

Examples:
  msf-export --ckpt best.pth -o slate.onnx
  msf-run --onnx slate.onnx photo.jpg frames/ -o out/
  msf-run --onnx slate.onnx 'shots/*.png' -o out/ --batch 8 --threads 4 --mask-res model
  msf-export --ckpt best.pth -o slate-t.onnx --slots-in
  msf-run --onnx slate-t.onnx video.mp4 -o out/ --temporal --every 2

Exit codes:
  0    all frames decomposed and written
  1    error (model, input or output): one line on stderr says what; frames already written are
       kept, counted in that line, and listed in decomposition.json
  2    bad arguments
  130  interrupted (Ctrl-C): stops after the current frame, keeps the finished frames and writes
       decomposition.json for them (a second Ctrl-C quits at once)";

/// Decompose images, folders, videos or cameras into object slots and one mask per object, with an
/// MSF model exported by `msf-export`.
#[derive(Parser, Debug)]
#[command(name = "msf-run", version, about, long_about, after_long_help = AFTER_HELP)]
struct Cli {
    /// The model: an ONNX file written by `msf-export`.
    #[arg(long, value_name = "FILE.onnx")]
    onnx: PathBuf,
    /// Image files, folders, glob patterns, video files or camera devices (see below).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output folder (created if needed).
    #[arg(short, long, value_name = "OUT_DIR")]
    output: PathBuf,
    /// Inference engine: tract (pure Rust, CPU) or ort (onnxruntime; build with --features ort).
    #[arg(long, value_enum, default_value_t = BackendArg::Tract)]
    backend: BackendArg,
    /// Execution provider of the ort backend.
    #[arg(long, value_enum, default_value_t = ProviderArg::Cpu)]
    provider: ProviderArg,
    /// Run on the CPU when the requested provider cannot be used, instead of failing.
    #[arg(long)]
    allow_fallback: bool,
    /// Kernel threads per inference call (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Frames decomposed at the same time, each call on its own thread (default: one per CPU core
    /// for files and videos, which gives the most frames/s; 1 with --temporal, a camera or a GPU
    /// provider, where each frame's latency matters). Without --threads each job gets
    /// cores/jobs kernel threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Frames per inference call (images of a folder or list; not with --temporal).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Keep every N-th frame of each input.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Skip the first N frames of each input.
    #[arg(long, value_name = "N", default_value_t = 0)]
    start: u64,
    /// Stop after N frames in all.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    /// Also write the soft attention (K, G, G) of each frame to attn/<name>.npy.
    #[arg(long)]
    save_attn: bool,
    /// Do not write overlay images.
    #[arg(long)]
    no_overlay: bool,
    /// Do not write mask PNGs.
    #[arg(long)]
    no_masks: bool,
    /// Do not write slots .npy files.
    #[arg(long)]
    no_slots: bool,
    /// Mask resolution: the frame's (void outside the centre crop) or the model's 256x256 crop.
    #[arg(long, value_enum, default_value_t = MaskResArg::Frame)]
    mask_res: MaskResArg,
    /// Overlay image format.
    #[arg(long, value_enum, default_value_t = OverlayFormatArg::Jpg)]
    overlay_format: OverlayFormatArg,
    /// Video: start each frame's slot attention from the previous frame's slots (needs a model
    /// exported with `msf-export --slots-in`) and match slot ids to the previous frame's, so that
    /// an id keeps meaning one object. Each input is a new stream.
    #[arg(long)]
    temporal: bool,
    /// Also write the overlays as OUT_DIR/overlay.mp4 (build with --features video); frame rate from
    /// the video's timestamps, 25 for images. Frames must all have one size.
    #[arg(long)]
    overlay_video: bool,
    /// Print one JSON summary line on stdout at the end (other messages go to stderr).
    #[arg(long)]
    json: bool,
    /// Print nothing but errors (and the --json line).
    #[arg(short, long)]
    quiet: bool,
    /// Refuse images with more pixels than this, from their header, before decoding (decompression
    /// bombs). The default allows 16384x16384.
    #[arg(long, value_name = "N", default_value_t = msf_runtime::DecodeLimits::default().max_pixels)]
    max_image_pixels: u64,
    /// For ONNX graphs without MSF metadata (e.g. a plain torch.onnx export of the upstream model,
    /// input (B,3,256,256) with the bicubic resize to 224 inside): use the upstream preprocessing.
    #[arg(long)]
    preprocess_upstream: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Tract,
    Ort,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum ProviderArg {
    Cpu,
    Cuda,
    Tensorrt,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MaskResArg {
    Frame,
    Model,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OverlayFormatArg {
    Jpg,
    Png,
}

/// Arguments clap cannot check alone; `Err` is a usage error (exit 2).
fn check_usage(cli: &Cli) -> std::result::Result<(), String> {
    if cli.temporal && cli.batch > 1 {
        return Err("--temporal feeds each frame's slots into the next, one frame at a time: drop --batch".into());
    }
    if cli.temporal && cli.jobs.is_some_and(|j| j > 1) {
        return Err("--temporal feeds each frame's slots into the next, one frame at a time: drop --jobs".into());
    }
    if matches!(cli.backend, BackendArg::Tract) && cli.provider != ProviderArg::Cpu && !cli.allow_fallback {
        return Err(format!(
            "--provider {} needs --backend ort (tract runs on the CPU); add --allow-fallback to run on the CPU anyway",
            provider(cli.provider).as_str()
        ));
    }
    if cli.overlay_video && !cfg!(feature = "video") {
        return Err("--overlay-video needs a build with `--features video` (FFmpeg)".into());
    }
    Ok(())
}

fn provider(p: ProviderArg) -> Provider {
    match p {
        ProviderArg::Cpu => Provider::Cpu,
        ProviderArg::Cuda => Provider::Cuda,
        ProviderArg::Tensorrt => Provider::Tensorrt,
    }
}

/// Messages for people: stdout normally, stderr when stdout carries the --json line, none with --quiet.
struct Say {
    quiet: bool,
    to_stderr: bool,
    bar: ProgressBar,
}

impl Say {
    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        self.bar.suspend(|| if self.to_stderr { eprintln!("{s}") } else { println!("{s}") });
    }
}

/// How the run ended.
enum Outcome {
    Done,
    Interrupted,
    Failed(anyhow::Error),
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--jobs`, or its default: every core for files and videos on the CPU, else one.
fn jobs(cli: &Cli) -> usize {
    if let Some(j) = cli.jobs {
        return j as usize;
    }
    let camera = cli.inputs.iter().any(|p| p.starts_with("/dev"));
    if cli.temporal || camera || cli.provider != ProviderArg::Cpu {
        1
    } else {
        cores()
    }
}

fn load_model(cli: &Cli) -> Result<Decomposer> {
    let mut b = Decomposer::builder()
        .backend(match cli.backend {
            BackendArg::Tract => BackendKind::Tract,
            BackendArg::Ort => BackendKind::Ort,
        })
        .provider(provider(cli.provider))
        .allow_fallback(cli.allow_fallback);
    let jobs = jobs(cli);
    match cli.threads {
        Some(n) => b = b.threads(n as usize),
        None if jobs > 1 => b = b.threads((cores() / jobs).max(1)),
        None => {}
    }
    if jobs > 1 {
        b = b.concurrency(jobs);
    }
    if cli.preprocess_upstream {
        // The upstream graph takes the 256×256 normalised image and resizes to 224 itself.
        b = b.preprocess(msf_models::Preprocess::upstream(224, true));
    }
    b.build(&cli.onnx).map_err(|e| match e {
        Error::Metadata { source: msf_models::MetadataError::NotMsf, .. } => anyhow!(
            "{e}: here, --preprocess-upstream (e.g. for a torch.onnx export of the upstream model)"
        ),
        e => e.into(),
    })
}

/// `--temporal`: the library's [`Tracker`] carries each frame's slots into the next and matches slot
/// ids to the previous frame's (Hungarian), so an id keeps meaning one object.
struct Temporal {
    tracker: Tracker,
    prev_index: Option<u64>,
}

impl Temporal {
    fn new(dec: Arc<Decomposer>) -> Result<Self> {
        let opts = TrackerOptions { temporal: true, matching: true, ..Default::default() };
        Ok(Temporal { tracker: Tracker::with_options(dec, opts)?, prev_index: None })
    }

    fn step(&mut self, frame: &Frame) -> Result<Decomposition> {
        // A frame index that does not increase means the next input started: a new stream.
        if self.prev_index.is_some_and(|p| frame.index <= p) {
            self.tracker.reset();
        }
        self.prev_index = Some(frame.index);
        Ok(self.tracker.step(&frame.view()?)?)
    }
}

/// `--overlay-video`: overlays encoded into `overlay.mp4` (feature `video`). The writer is opened on
/// the second frame, so that the frame rate can be read from the first two timestamps (which also
/// accounts for `--every`); frames without timestamps (images) play at [`DEFAULT_FPS`].
#[cfg(feature = "video")]
struct OverlayVideo {
    path: PathBuf,
    first: Option<(image::RgbImage, Option<f64>)>,
    writer: Option<msf_runtime::sink::video::VideoWriter>,
}

#[cfg(feature = "video")]
const DEFAULT_FPS: f64 = 25.0;

#[cfg(feature = "video")]
impl OverlayVideo {
    fn new(dir: &Path) -> Self {
        OverlayVideo { path: dir.join("overlay.mp4"), first: None, writer: None }
    }

    fn push(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        let img = overlay::render(&frame.data, frame.width, frame.height, &dec.mask_in_frame());
        if self.writer.is_none() {
            match self.first.take() {
                None => {
                    self.first = Some((img, frame.pts_seconds));
                    return Ok(());
                }
                Some((first, pts0)) => {
                    let fps = match (pts0, frame.pts_seconds) {
                        (Some(a), Some(b)) if b > a => 1.0 / (b - a),
                        _ => DEFAULT_FPS,
                    };
                    self.open(&first, fps)?;
                }
            }
        }
        self.writer.as_mut().expect("opened above").write_rgb(img.as_raw())?;
        Ok(())
    }

    fn open(&mut self, first: &image::RgbImage, fps: f64) -> Result<()> {
        let mut w = msf_runtime::sink::video::VideoWriter::create(&self.path, first.width(), first.height(), fps)?;
        w.write_rgb(first.as_raw())?;
        self.writer = Some(w);
        Ok(())
    }

    /// Write the file (if any frame was given); returns its path.
    fn finish(mut self) -> Result<Option<PathBuf>> {
        if let Some((first, _)) = self.first.take() {
            self.open(&first, DEFAULT_FPS)?;
        }
        match self.writer.take() {
            Some(w) => {
                w.finish()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// Stand-in without feature `video` (`check_usage` refuses `--overlay-video` then).
#[cfg(not(feature = "video"))]
struct OverlayVideo;

#[cfg(not(feature = "video"))]
impl OverlayVideo {
    fn new(_: &Path) -> Self {
        OverlayVideo
    }
    fn push(&mut self, _: &Frame, _: &Decomposition) -> Result<()> {
        Ok(())
    }
    fn finish(self) -> Result<Option<PathBuf>> {
        Ok(None)
    }
}

fn progress_bar(cli: &Cli, len: Option<u64>) -> ProgressBar {
    let show = !cli.quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if !show {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    let template = match len {
        Some(_) => "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} frames, {per_sec}, eta {eta}",
        None => "{spinner} {elapsed_precise} {pos} frames, {per_sec}",
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar
}

fn run(cli: &Cli, stop: &AtomicBool) -> Result<(Outcome, Summary)> {
    let t0 = Instant::now();
    let dec = Arc::new(load_model(cli)?);
    let info = dec.info().clone();
    let temporal = if cli.temporal { Some(Temporal::new(dec.clone())?) } else { None };
    let kind = info.kind.map_or("unknown (no MSF metadata)", |k| k.as_str());
    let mut opts = SourceOptions { every: cli.every, start: cli.start, max_frames: cli.max_frames, ..Default::default() };
    opts.decode_limits.max_pixels = cli.max_image_pixels;
    let mut frames = source::open_all(&cli.inputs, &opts)?;
    if jobs(cli) > 1 {
        // Decode the next frames while the current ones are decomposed.
        frames = Box::new(source::Prefetch::new(frames, 2 * jobs(cli) * cli.batch as usize));
    }

    let mask_res = match cli.mask_res {
        MaskResArg::Frame => MaskRes::Frame,
        MaskResArg::Model => MaskRes::Model,
    };
    let sink_opts = SinkOptions {
        masks: !cli.no_masks,
        mask_res,
        overlay: (!cli.no_overlay).then_some(match cli.overlay_format {
            OverlayFormatArg::Jpg => overlay::Format::Jpeg,
            OverlayFormatArg::Png => overlay::Format::Png,
        }),
        slots: !cli.no_slots,
        attn: cli.save_attn,
    };
    let run_info = json!({
        "tool": {"name": "msf-run", "version": env!("CARGO_PKG_VERSION")},
        "model": {
            "path": cli.onnx, "kind": info.kind.map(|k| k.as_str()), "backend": dec.backend_name(),
            "provider": dec.provider(), "num_slots": info.num_slots, "slot_dim": info.slot_dim,
            "grid": info.grid, "mask_size": info.mask_size, "slots_input": info.slots_input,
            "msf_metadata": info.metadata.is_some(),
        },
        "inputs": cli.inputs,
        "options": {
            "mask_res": mask_res.as_str(), "batch": cli.batch, "jobs": jobs(cli), "every": cli.every, "start": cli.start,
            "max_frames": cli.max_frames, "temporal": cli.temporal,
        },
    });
    // Checks (and creates) the output folder before the first frame is decoded.
    let mut writer = FrameWriter::create(&cli.output, sink_opts, run_info)?;

    let bar = progress_bar(cli, frames.len_hint());
    let say = Say { quiet: cli.quiet, to_stderr: cli.json, bar: bar.clone() };
    let requested = provider(cli.provider).as_str();
    let fallback = if dec.provider() != requested { format!(" (requested {requested}, fell back)") } else { String::new() };
    say.line(&format!(
        "msf-run: {} on {} ({}{fallback}): {kind}, {} slots x {}, {}",
        cli.onnx.display(),
        dec.backend_name(),
        dec.provider(),
        info.num_slots,
        info.slot_dim,
        if cli.temporal { "temporal".to_string() } else { format!("frames independent, {} job(s)", jobs(cli)) }
    ));
    say.line(&format!("msf-run: input {}", frames.describe()));

    let t_run = Instant::now();
    let mut video = cli.overlay_video.then(|| OverlayVideo::new(&cli.output));
    let mut outcome = decompose_all(cli, &dec, temporal, frames.as_mut(), &mut writer, video.as_mut(), &bar, stop);
    bar.finish_and_clear();
    // The video keeps the frames done so far, whatever stopped the run.
    let mut extra_files = 0;
    if let Some(v) = video {
        match v.finish() {
            Ok(Some(p)) => {
                extra_files += 1;
                say.line(&format!("msf-run: overlay video {}", p.display()));
            }
            Ok(None) => {}
            Err(e) => {
                outcome = match outcome {
                    Outcome::Failed(first) => Outcome::Failed(anyhow!("{}; and {e}", one_line(&first))),
                    _ => Outcome::Failed(e),
                }
            }
        }
    }

    let seconds = t_run.elapsed().as_secs_f64();
    let mut summary = Summary {
        status: match &outcome {
            Outcome::Done => "ok",
            Outcome::Interrupted => "interrupted",
            Outcome::Failed(_) => "error",
        },
        frames: writer.frames_written(),
        files: writer.files_written() + extra_files,
        seconds,
        total_seconds: 0.0,
        output: cli.output.clone(),
        backend: dec.backend_name().to_string(),
        provider: dec.provider().to_string(),
        error: match &outcome {
            Outcome::Failed(e) => Some(one_line(e)),
            _ => None,
        },
        json_file: None,
    };
    if summary.frames == 0 {
        if let Outcome::Failed(_) = outcome {
            // Nothing to describe: leave the output folder as it was.
            writer.abandon();
            summary.total_seconds = t0.elapsed().as_secs_f64();
            return Ok((outcome, summary));
        }
    }
    match writer.finish(summary.run_log_json()) {
        Ok(p) => {
            summary.files += 1;
            summary.json_file = Some(p);
        }
        // The frames' own files stay; only the run log is missing.
        Err(e) => {
            let outcome = match outcome {
                Outcome::Failed(first) => Outcome::Failed(anyhow!("{}; and {e}", one_line(&first))),
                _ => Outcome::Failed(e.into()),
            };
            summary.total_seconds = t0.elapsed().as_secs_f64();
            return Ok((outcome, summary));
        }
    }
    summary.total_seconds = t0.elapsed().as_secs_f64();
    if !cli.json {
        say.line(&summary.human());
    } else if !cli.quiet {
        eprintln!("{}", summary.human());
    }
    Ok((outcome, summary))
}

/// The frame loop: read up to `--batch` frames, decompose, write; check for Ctrl-C between frames.
#[allow(clippy::too_many_arguments)]
fn decompose_all(
    cli: &Cli,
    dec: &Decomposer,
    mut temporal: Option<Temporal>,
    frames: &mut dyn FrameSource,
    writer: &mut FrameWriter,
    mut video: Option<&mut OverlayVideo>,
    bar: &ProgressBar,
    stop: &AtomicBool,
) -> Outcome {
    let batch = cli.batch as usize;
    // Without --temporal, `jobs` calls of `batch` frames run side by side.
    let group = batch * if temporal.is_some() { 1 } else { jobs(cli) };
    let mut pending: Vec<Frame> = Vec::with_capacity(group);
    loop {
        if stop.load(Ordering::SeqCst) {
            return Outcome::Interrupted;
        }
        let mut source_error = None;
        while pending.len() < group && !stop.load(Ordering::SeqCst) {
            match frames.next() {
                Some(Ok(f)) => pending.push(f),
                Some(Err(e)) => {
                    source_error = Some(e);
                    break;
                }
                None => break,
            }
        }
        if pending.is_empty() && source_error.is_none() {
            return if stop.load(Ordering::SeqCst) { Outcome::Interrupted } else { Outcome::Done };
        }
        // Frames read before a bad one are still decomposed and written.
        let mut step = || -> Result<()> {
            let (decs, failed) = if let Some(t) = temporal.as_mut() {
                (pending.iter().map(|f| t.step(f)).collect::<Result<Vec<_>>>()?, None)
            } else {
                decompose_groups(dec, &pending, batch)
            };
            // In order; when a call failed, the frames before it are still written.
            for (f, d) in pending.iter().zip(&decs) {
                writer.write(f, d)?;
                if let Some(v) = video.as_deref_mut() {
                    v.push(f, d)?;
                }
                bar.inc(1);
            }
            failed.map_or(Ok(()), Err)
        };
        if let Err(e) = step() {
            return Outcome::Failed(e);
        }
        pending.clear();
        if let Some(e) = source_error {
            return Outcome::Failed(e.into());
        }
    }
}

/// Decompose `frames` in calls of `batch` frames, the calls on parallel threads. Returns the
/// results in order up to the first failed call, and that call's error.
fn decompose_groups(dec: &Decomposer, frames: &[Frame], batch: usize) -> (Vec<msf_runtime::Decomposition>, Option<anyhow::Error>) {
    let call = |chunk: &[Frame]| -> Result<Vec<msf_runtime::Decomposition>> {
        let views = chunk.iter().map(Frame::view).collect::<msf_runtime::Result<Vec<_>>>()?;
        Ok(dec.decompose_batch(&views)?)
    };
    let results: Vec<Result<Vec<_>>> = if frames.len() <= batch {
        vec![call(frames)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = frames.chunks(batch).map(|c| s.spawn(move || call(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a decomposition thread panicked")))).collect()
        })
    };
    let mut out = Vec::with_capacity(frames.len());
    for r in results {
        match r {
            Ok(d) => out.extend(d),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// What the run did, for the last line and `--json`.
struct Summary {
    status: &'static str,
    frames: u64,
    files: u64,
    /// Seconds of the frame loop (decode, inference, writing).
    seconds: f64,
    /// Seconds including model loading.
    total_seconds: f64,
    output: PathBuf,
    backend: String,
    provider: String,
    error: Option<String>,
    json_file: Option<PathBuf>,
}

impl Summary {
    fn fps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames as f64 / self.seconds
        } else {
            0.0
        }
    }
    fn to_json(&self) -> serde_json::Value {
        json!({
            "status": self.status, "frames": self.frames, "files": self.files, "seconds": self.seconds,
            "total_seconds": self.total_seconds, "fps": self.fps(), "output": self.output,
            "json": self.json_file, "backend": self.backend, "provider": self.provider, "error": self.error,
        })
    }
    /// The `summary` of `decomposition.json` (the writer adds the frame and file counts).
    fn run_log_json(&self) -> serde_json::Value {
        json!({"status": self.status, "seconds": self.seconds, "fps": self.fps(), "error": self.error})
    }
    fn human(&self) -> String {
        format!(
            "msf-run: {} frames in {:.2} s ({:.2} frames/s), {} files in {}",
            self.frames,
            self.seconds,
            self.fps(),
            self.files,
            self.output.display()
        )
    }
}

/// An error chain on one line, each cause once (library messages often already quote their cause).
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn install_ctrlc() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: quit now (a file being written stays under its temporary name).
            std::process::exit(130);
        }
        eprintln!("msf-run: interrupted, stopping after the current frame (Ctrl-C again to quit now)");
    });
    if let Err(e) = installed {
        eprintln!("msf-run: warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will stop at once");
    }
    stop
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = check_usage(&cli) {
        Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg).exit();
    }
    let stop = install_ctrlc();
    let (outcome, summary) = match run(&cli, &stop) {
        Ok(r) => r,
        // Failed before the first frame: nothing was written.
        Err(e) => {
            eprintln!("msf-run: error: {}", one_line(&e));
            if cli.json {
                println!("{}", json!({"status": "error", "frames": 0, "files": 0, "output": cli.output, "error": one_line(&e)}));
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.json {
        println!("{}", summary.to_json());
    }
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Interrupted => {
            if !cli.quiet {
                eprintln!("msf-run: interrupted after {} frames; they are kept in {}", summary.frames, summary.output.display());
            }
            ExitCode::from(130)
        }
        Outcome::Failed(e) => {
            eprintln!("msf-run: error: {} ({})", one_line(&e), kept(summary.frames, summary.files, &summary.output));
            ExitCode::FAILURE
        }
    }
}

fn kept(frames: u64, files: u64, dir: &Path) -> String {
    match frames {
        0 => format!("no frame was written to {}", dir.display()),
        _ => format!("{frames} frames already written ({files} files) are kept in {}", dir.display()),
    }
}
