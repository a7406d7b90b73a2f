//! `msf-run`: decompose images, folders, videos and cameras into slots and one mask per object.
//!
//! A thin shell over the library: it parses arguments, builds a [`Pipeline`] and prints; the
//! pipeline runs `source::open_all` → decomposition → `sink::FrameWriter` (+ the overlay video).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use msf_runtime::error::one_line;
use msf_runtime::pipeline::{ErrorPolicy, FnSink, LivePolicy, Outcome, RunReport};
use msf_runtime::sink::json::JsonLines;
use msf_runtime::sink::coco::{CocoOptions, CocoResults, ImageIds};
use msf_runtime::sink::{overlay, sequence_names, FrameWriter, Layout, MaskRes, SinkOptions, RUN_JSON};
use msf_runtime::source::{self, Frame, SourceOptions};
use msf_runtime::{BackendKind, Decomposer, Decomposition, Error, Fit, Pipeline, Provider, Sink};
use serde_json::json;

const AFTER_HELP: &str = "\
Inputs:
  image files     png, jpg, bmp, tif, webp, gif (decoded to RGB, EXIF orientation applied)
  folders         the image files directly inside, in natural order (frame2 before frame10)
  glob patterns   quoted so the shell leaves them alone: 'frames/*.jpg'
  video files     mp4, mkv, avi, mov, webm, m4v, ... (build with --features video)
  cameras         /dev/video0 (build with --features camera)
  network streams rtsp://, http(s)://, udp://, tcp://, srt:// URLs (--features video); live, like
                  cameras: see --live-policy, --stream-timeout
  Several inputs run one after the other; consecutive image files count as one list for
  --start/--every, and --max-frames caps the whole run.

Output folder (-o):
  masks/<name>.png      slot id per pixel, indexed PNG with the DAVIS palette (255 = void: outside
                        the centre crop the model saw); frame size, or 256x256 with --mask-res model
  overlays/<name>.jpg   the frame tinted with one colour per slot, slot boundaries in white
  slots/<name>.npy      slots, float32 (K, D)
  attn/<name>.npy       attention, float32 (K, G, G), with --save-attn
  decomposition.json    model, options, and per frame per slot: area, fraction, bbox [x,y,w,h] and
                        the mask as COCO compressed RLE ({\"size\":[h,w],\"counts\":\"...\"}, what
                        pycocotools.mask.decode reads as it is); \"schema\": 3
  overlay.mp4           the overlays as a video, with --overlay-video
  --layout davis        one folder per input instead (a folder, a video, consecutive image files),
                        frames numbered by their position in it: masks/<sequence>/00000.png, ...
                        with pixel = slot id + 1 and 0 where no slot is (OUT/masks is a DAVIS
                        results folder); overlays/, slots/ and attn/ the same way
  Every file is written to a temporary name and renamed, so no half-written file is ever left.
  One folder takes one run: a folder in use by a running msf-run is refused, and so is one that
  holds an earlier run unless --overwrite (which removes exactly the files that run listed).

COCO results (--coco-results FILE, with or without -o):
  A JSON array that COCO.loadRes and COCOeval(iouType=\"segm\") take as it is: per frame and
  non-empty slot {image_id, category_id, segmentation: {size, counts} (compressed RLE at frame
  size), score, bbox, area, slot_id}. image_id: the file stem read as a number (000000397133.jpg
  -> 397133), or the id --coco-images ANNOTATIONS.json gives the file name (every frame must be
  there). category_id: --coco-category (default 1; class-agnostic: useCats = 0). score: the slot's
  mean attention over its own mask pixels, in (1/K, 1].

Examples:
  msf-export --ckpt best.pth -o slate.onnx
  msf-run --onnx slate.onnx photo.jpg frames/ -o out/
  msf-run --onnx slate.onnx 'shots/*.png' -o out/ --batch 8 --threads 4 --mask-res model
  msf-export --ckpt best.pth -o slate-t.onnx --slots-in
  msf-run --onnx slate-t.onnx video.mp4 -o out/ --temporal --every 2
  msf-run --onnx slate-t.onnx bear.mp4 car.mp4 -o out/ --temporal --layout davis
  msf-run --onnx slate.onnx val2017/ --coco-results segm.json --coco-images instances_val2017.json
  msf-run --onnx slate-t.onnx /dev/video0 --temporal --jsonl -     # JSON lines on stdout, no files
  msf-run --onnx slate.onnx rtsp://192.168.1.20/stream --jsonl -   # a network camera, newest frame each time

Exit codes:
  0    all frames decomposed and written
  1    error (model, input or output): one line on stderr says what; frames already written are
       kept, counted in that line, and listed in decomposition.json
  2    bad arguments
  3    done, but frames were skipped (--on-error skip): each is named on stderr and under
       summary.skipped in decomposition.json
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP): stops after the current frame, keeps the finished
       frames and writes decomposition.json for them (a second signal quits at once)

Limits (each refused with one line, before anything large is allocated):
  --max-image-pixels   pixels of one input image (default 16384x16384)
  --max-nodes          nodes of the model's graph (default 20000)
  --max-tensor-mb      any one tensor of the graph at the batch size used (default 256 MiB)
  --max-gfma           billions of multiply-adds per frame (default 24; the full-size model needs 6.4)
  --decode-ahead-mb    decoded frames held at once, plus one frame (default 256 MiB)
  --jobs/--threads/--batch at most 256; one output folder is used by one run at a time";

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
    /// Output folder (created if needed). May be left out with --jsonl: then no file is written.
    #[arg(short, long, value_name = "OUT_DIR", required_unless_present_any = ["jsonl", "coco_results"])]
    output: Option<PathBuf>,
    /// Also (or only, without -o) write one JSON line per frame as it finishes, to FILE or to
    /// stdout with `-`: the frame records of decomposition.json, then a {"summary": …} line. For
    /// live sources and pipes; messages then go to stderr.
    #[arg(long, value_name = "FILE|-")]
    jsonl: Option<PathBuf>,
    /// How the output folder is arranged: `flat` (masks/<name>.png, slot ids, 255 = void) or `davis`
    /// (masks/<sequence>/00000.png per input, slot id + 1, 0 = void; see below).
    #[arg(long, value_parser = one_of::<Layout>(&Layout::NAMES), default_value = "flat")]
    layout: Layout,
    /// Also (or only, without -o) write a COCO results file (a JSON array for COCO.loadRes and
    /// COCOeval, masks at frame size; see below), written when the run ends.
    #[arg(long, value_name = "FILE.json")]
    coco_results: Option<PathBuf>,
    /// COCO annotation file whose "images" give each frame's image_id (by file name; a frame not in
    /// it stops the run). Default: the file stem as a number.
    #[arg(long, value_name = "ANNOTATIONS.json", requires = "coco_results")]
    coco_images: Option<PathBuf>,
    /// category_id of every COCO result (class-agnostic).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "coco_results")]
    coco_category: u64,
    /// Inference engine: tract (pure Rust, CPU) or ort (onnxruntime; build with --features ort).
    #[arg(long, value_parser = one_of::<BackendKind>(&BackendKind::NAMES), default_value = "tract")]
    backend: BackendKind,
    /// Execution provider of the ort backend.
    #[arg(long, value_parser = one_of::<Provider>(&Provider::NAMES), default_value = "cpu")]
    provider: Provider,
    /// Run on the CPU when the requested provider cannot be used, instead of failing.
    #[arg(long)]
    allow_fallback: bool,
    /// Kernel threads per inference call (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX))]
    threads: Option<u32>,
    /// Frames decomposed at the same time, each call on its own thread (default: one per CPU core
    /// for files and videos, which gives the most frames/s; 1 with --temporal, a camera, a network
    /// stream or a GPU provider, where each frame's latency matters). Without --threads each job gets
    /// cores/jobs kernel threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX))]
    jobs: Option<u32>,
    /// Frames per inference call (images of a folder or list; not with --temporal).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX))]
    batch: u32,
    /// Keep every N-th frame of each input.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Skip the first N frames of each input.
    #[arg(long, value_name = "N", default_value_t = 0)]
    start: u64,
    /// Stop after N frames in all (of a live source: frames read, dropped ones included).
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
    /// How a frame that is not square is fitted into the model's square input: crop (upstream's
    /// centre crop; the sides get no object), stretch (the whole frame, squeezed), pad (the whole
    /// frame, aspect kept, padded with the mean colour) or tiles (overlapping squares along the long
    /// side, their objects merged by mask overlap and slot similarity; several inferences per frame;
    /// not with --temporal).
    #[arg(long, value_parser = one_of::<Fit>(&Fit::NAMES), default_value = "stretch")]
    fit: Fit,
    /// Mask resolution: the frame's (void where no view covers it: outside the centre crop of
    /// --fit crop) or the model's 256x256 view.
    #[arg(long, value_parser = one_of::<MaskRes>(&MaskRes::NAMES), default_value = "frame")]
    mask_res: MaskRes,
    /// Overlay image format.
    #[arg(long, value_parser = one_of::<overlay::Format>(&overlay::Format::NAMES), default_value = "jpg")]
    overlay_format: overlay::Format,
    /// Video: start each frame's slot attention from the previous frame's slots (needs a model
    /// exported with `msf-export --slots-in`; without it, with a warning, ids are only matched) and
    /// match slot ids to the previous frame's, so that an id keeps meaning one object. Each input
    /// is a new stream.
    #[arg(long)]
    temporal: bool,
    /// Also write the overlays as OUT_DIR/overlay.mp4 (build with --features video); frame rate from
    /// the video's timestamps, 25 for images. Frames must all have one size.
    #[arg(long)]
    overlay_video: bool,
    /// What a frame that cannot be decoded or decomposed does: `stop` the run (the frames before it
    /// are kept), or `skip` it (reported on stderr and in decomposition.json; the run goes on and
    /// ends with exit code 3). Writing errors always stop the run.
    #[arg(long, value_parser = one_of::<ErrorPolicy>(&ErrorPolicy::NAMES), default_value = "stop")]
    on_error: ErrorPolicy,
    /// Replace an earlier run in OUT_DIR: the files its decomposition.json lists (and overlay.mp4)
    /// are removed first. Without it a folder holding an earlier run is refused.
    #[arg(long)]
    overwrite: bool,
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
    /// Refuse models whose graph has more nodes than this (subgraphs included); the full-size
    /// export has ~500. Default 20000, or MSF_MAX_NODES.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_nodes: Option<u64>,
    /// Refuse models that make any one tensor larger than this many MiB at the batch size used,
    /// checked before it is allocated; the full-size model needs ~2 MiB per frame. Default 256,
    /// or MSF_MAX_TENSOR_MB.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    max_tensor_mb: Option<u64>,
    /// Refuse models that need more than this many billion multiply-adds per frame (counted on
    /// the typed graph before anything runs; the full-size model needs 6.4). Default 24, or MSF_MAX_GFMA.
    #[arg(long, value_name = "G", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_gfma: Option<u32>,
    /// MiB of decoded frames held at once (decoded ahead or waiting for their call), whatever
    /// --jobs and --batch; one frame is always allowed.
    #[arg(long, value_name = "MIB", default_value_t = (msf_runtime::pipeline::DEFAULT_DECODE_AHEAD_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    decode_ahead_mb: u64,
    /// Live sources (cameras, network streams) when the model is slower than the frames come:
    /// `newest` decomposes the newest frame and drops the ones it had no time for (counted as
    /// frames_dropped), `all` decomposes every frame however late. Files never drop frames.
    #[arg(long, value_parser = one_of::<LivePolicy>(&LivePolicy::NAMES), default_value = "newest")]
    live_policy: LivePolicy,
    /// Network streams: seconds to wait for a connection or for data before giving up with an error
    /// (udp://: silence this long after frames came ends the run).
    #[arg(long, value_name = "SECONDS", default_value_t = msf_runtime::source::DEFAULT_STREAM_TIMEOUT.as_secs_f64(), value_parser = stream_timeout)]
    stream_timeout: f64,
}

fn stream_timeout(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if (0.001..=86400.0).contains(&t) => Ok(t),
        _ => Err(format!("`{s}` is not a number of seconds in 0.001..=86400")),
    }
}

/// Bound of --jobs, --threads and --batch (the library's).
const MAX: i64 = msf_runtime::pipeline::MAX_PARALLEL as i64;

/// A value parser for one of a library type's names (clap lists them in `--help` and errors).
fn one_of<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    clap::builder::PossibleValuesParser::new(names).map(|s| s.parse().expect("one of the listed names"))
}

/// Arguments clap cannot check alone; `Err` is a usage error (exit 2).
fn check_usage(cli: &Cli) -> std::result::Result<(), String> {
    if cli.temporal && cli.batch > 1 {
        return Err("--temporal feeds each frame's slots into the next, one frame at a time: drop --batch".into());
    }
    if cli.temporal && cli.jobs.is_some_and(|j| j > 1) {
        return Err("--temporal feeds each frame's slots into the next, one frame at a time: drop --jobs".into());
    }
    if cli.backend == BackendKind::Tract && cli.provider != Provider::Cpu && !cli.allow_fallback {
        return Err(format!(
            "--provider {} needs --backend ort (tract runs on the CPU); add --allow-fallback to run on the CPU anyway",
            cli.provider.as_str()
        ));
    }
    if cli.layout == Layout::Davis && cli.output.is_none() {
        return Err("--layout davis arranges the files of OUT_DIR: give -o OUT_DIR".into());
    }
    if cli.overlay_video && cli.output.is_none() {
        return Err("--overlay-video writes OUT_DIR/overlay.mp4: give -o OUT_DIR".into());
    }
    if cli.overlay_video && !cfg!(feature = "video") {
        return Err("--overlay-video needs a build with `--features video` (FFmpeg)".into());
    }
    Ok(())
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

fn pipeline(cli: &Cli, stop: Arc<AtomicBool>) -> Result<Pipeline> {
    let mut limits = msf_models::Limits::default();
    if let Some(n) = cli.max_nodes {
        limits.max_nodes = n as usize;
    }
    if let Some(mb) = cli.max_tensor_mb {
        limits.max_tensor_bytes = mb << 20;
    }
    if let Some(g) = cli.max_gfma {
        limits.max_gfma_per_frame = f64::from(g);
    }
    let mut dec = Decomposer::builder().backend(cli.backend).provider(cli.provider).allow_fallback(cli.allow_fallback).limits(limits).fit(cli.fit);
    if cli.preprocess_upstream {
        // The upstream graph takes the 256×256 normalised image and resizes to 224 itself.
        dec = dec.preprocess(msf_models::Preprocess::upstream(224, true));
    }
    let mut b = Pipeline::builder()
        .decomposer(dec)
        .batch(cli.batch as usize)
        .temporal_auto(cli.temporal)
        .on_error(cli.on_error)
        .decode_ahead_bytes((cli.decode_ahead_mb << 20) as usize)
        .live(cli.inputs.iter().any(|p| source::is_live_input(p)))
        .live_policy(cli.live_policy)
        .stop_flag(stop);
    if let Some(j) = cli.jobs {
        b = b.jobs(j as usize);
    }
    if let Some(t) = cli.threads {
        b = b.threads(t as usize);
    }
    b.build(&cli.onnx)
    .map_err(|e| match e {
        Error::Metadata { source: msf_models::MetadataError::NotMsf, .. } => anyhow!(
            "{e}: here, --preprocess-upstream (e.g. for a torch.onnx export of the upstream model)"
        ),
        e => e.into(),
    })
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

fn run(cli: &Cli, stop: Arc<AtomicBool>) -> Result<(RunReport, Summary)> {
    let t0 = Instant::now();
    let pipeline = pipeline(cli, stop)?;
    let dec = pipeline.decomposer();
    let info = dec.info().clone();
    let kind = info.kind.map_or("unknown (no MSF metadata)", |k| k.as_str());
    let mut opts = SourceOptions { every: cli.every, start: cli.start, max_frames: cli.max_frames, ..Default::default() };
    opts.decode_limits.max_pixels = cli.max_image_pixels;
    opts.stream_timeout = std::time::Duration::from_secs_f64(cli.stream_timeout);
    let frames = source::open_all(&cli.inputs, &opts)?;

    let sink_opts = SinkOptions {
        masks: !cli.no_masks,
        mask_res: cli.mask_res,
        overlay: (!cli.no_overlay).then_some(cli.overlay_format),
        slots: !cli.no_slots,
        attn: cli.save_attn,
        overwrite: cli.overwrite,
        layout: cli.layout,
        sequences: sequence_names(&cli.inputs),
    };
    let run_info = msf_runtime::sink::json::run_info("msf-run", &cli.onnx, &pipeline, &cli.inputs, &opts, &sink_opts);
    // The annotation file is read, and the results file started, before the output folder is touched.
    let mut coco = match &cli.coco_results {
        Some(path) => {
            let image_ids = cli.coco_images.as_deref().map_or(Ok(ImageIds::FromName), ImageIds::from_annotations)?;
            Some(CocoResults::create(path, CocoOptions { category_id: cli.coco_category, image_ids })?)
        }
        None => None,
    };
    // Checks (and creates) the output folder before the first frame is decoded.
    let mut writer = cli.output.as_ref().map(|dir| FrameWriter::create(dir, sink_opts, run_info)).transpose()?;
    let mut lines = cli.jsonl.as_ref().map(|p| JsonLines::open(p, cli.mask_res)).transpose()?;

    let bar = progress_bar(cli, frames.len_hint());
    let say = Say { quiet: cli.quiet, to_stderr: cli.json || jsonl_to_stdout(cli), bar: bar.clone() };
    let requested = cli.provider.as_str();
    let fallback = if dec.provider() != requested { format!(" (requested {requested}, fell back)") } else { String::new() };
    say.line(&format!(
        "msf-run: {} on {} ({}{fallback}): {kind}, {} slots x {}, {}",
        cli.onnx.display(),
        dec.backend_name(),
        dec.provider(),
        info.num_slots,
        info.slot_dim,
        if cli.temporal { "temporal".to_string() } else { format!("frames independent, {} job(s)", pipeline.jobs()) }
    ));
    say.line(&format!("msf-run: input {}", frames.describe()));
    if cli.temporal && !pipeline.carries_slots() {
        // Ids are still matched between frames, which is most of what --temporal is for.
        eprintln!(
            "msf-run: warning: {} has no `slots_init` input (export it with `msf-export --slots-in` to carry slots between frames); slot ids are matched between frames only",
            cli.onnx.display()
        );
    }

    let mut progress = FnSink::new(|_: &Frame, _: &Decomposition| {
        bar.inc(1);
        Ok(())
    });
    // The video finishes first, so that the run log records its failure too.
    let mut video = cli.output.as_ref().filter(|_| cli.overlay_video).map(|dir| overlay_video(dir));
    let mut sinks: Vec<&mut dyn Sink> = Vec::new();
    // First, so that a frame without a COCO image id stops the run before its files are written.
    if let Some(c) = coco.as_mut() {
        sinks.push(c);
    }
    if let Some(v) = video.as_mut() {
        sinks.push(v.as_mut());
    }
    if let Some(w) = writer.as_mut() {
        sinks.push(w);
    }
    if let Some(l) = lines.as_mut() {
        sinks.push(l);
    }
    sinks.push(&mut progress);
    let report = pipeline.run(frames, &mut sinks);
    bar.finish_and_clear();
    for p in report.finished_files.iter().filter(|p| p.extension().is_some_and(|e| e == "mp4")) {
        say.line(&format!("msf-run: overlay video {}", p.display()));
    }
    if let Some(c) = coco.as_ref().filter(|c| report.finished_files.iter().any(|p| p == c.path())) {
        say.line(&format!("msf-run: COCO results {}: {} masks of {} frames", c.path().display(), c.entries(), c.frames()));
    }

    let summary = Summary {
        status: report.outcome.as_str(),
        frames: writer.as_ref().map_or(report.frames, |w| w.frames_written()),
        files: writer.as_ref().map_or(0, |w| w.files_written()) + report.finished_files.len() as u64,
        seconds: report.seconds,
        total_seconds: t0.elapsed().as_secs_f64(),
        output: cli.output.clone(),
        backend: dec.backend_name().to_string(),
        provider: dec.provider().to_string(),
        error: report.error_line(),
        json_file: report.finished_files.iter().find(|p| p.file_name().is_some_and(|n| n == RUN_JSON)).cloned(),
        skipped: report.skipped.len(),
        coco: cli.coco_results.is_some(),
        frames_dropped: report.frames_dropped,
        latency: report.latency.clone(),
        live: cli.inputs.iter().any(|p| source::is_live_input(p)),
    };
    if summary.json_file.is_some() || (summary.output.is_none() && report.outcome != Outcome::Failed) {
        if !cli.json {
            say.line(&summary.human());
        } else if !cli.quiet {
            eprintln!("{}", summary.human());
        }
    }
    Ok((report, summary))
}

/// `--overlay-video`: OUT_DIR/overlay.mp4 (feature `video`; `check_usage` refuses it otherwise).
#[cfg(feature = "video")]
fn overlay_video(dir: &Path) -> Box<dyn Sink> {
    Box::new(msf_runtime::sink::video::OverlayVideo::new(&dir.join("overlay.mp4")))
}

#[cfg(not(feature = "video"))]
fn overlay_video(_: &Path) -> Box<dyn Sink> {
    unreachable!("check_usage refuses --overlay-video without the video feature")
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
    /// `None`: no output folder (--jsonl only).
    output: Option<PathBuf>,
    backend: String,
    provider: String,
    error: Option<String>,
    json_file: Option<PathBuf>,
    /// Frames left out by --on-error skip.
    skipped: usize,
    /// A COCO results file was asked for.
    coco: bool,
    /// Frames of a live source left out for newer ones (--live-policy newest).
    frames_dropped: u64,
    /// Decoded → delivered, per frame.
    latency: msf_runtime::pipeline::Latency,
    /// A camera or network stream was read: say how late the results were.
    live: bool,
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
            "skipped": self.skipped, "frames_dropped": self.frames_dropped, "latency_ms": self.latency.to_json(),
        })
    }
    fn human(&self) -> String {
        let place = match &self.output {
            Some(dir) => format!("{} files in {}", self.files, dir.display()),
            None if self.coco => "as COCO results".to_string(),
            None => "as JSON lines".to_string(),
        };
        let mut line = format!("msf-run: {} frames in {:.2} s ({:.2} frames/s), {place}", self.frames, self.seconds, self.fps());
        if self.live || self.frames_dropped > 0 {
            line += &format!("; {} dropped for newer ones", self.frames_dropped);
            if let (Some(median), Some(p90)) = (self.latency.median_ms(), self.latency.p90_ms()) {
                line += &format!(", latency median {median:.0} ms, p90 {p90:.0} ms");
            }
        }
        line
    }
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
    msf_runtime::process::init_tool();
    msf_runtime::process::main_guard("msf-run", real_main)
}

fn real_main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = check_usage(&cli) {
        Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg).exit();
    }
    let stop = install_ctrlc();
    let (report, summary) = match run(&cli, stop) {
        Ok(r) => r,
        // Failed before the first frame: nothing was written.
        Err(e) => {
            let line = one_line(e.as_ref());
            eprintln!("msf-run: error: {line}");
            if cli.json {
                println!("{}", json!({"status": "error", "frames": 0, "files": 0, "output": cli.output, "error": line}));
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.json {
        println!("{}", summary.to_json());
    }
    for s in &report.skipped {
        eprintln!("msf-run: skipped {}: {}", s.name.as_deref().unwrap_or("a frame"), one_line(&s.error));
    }
    match report.outcome {
        Outcome::Done if !report.skipped.is_empty() => {
            if !cli.quiet {
                eprintln!("msf-run: {} frame(s) skipped, {} written", report.skipped.len(), summary.frames);
            }
            ExitCode::from(3)
        }
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Interrupted => {
            if !cli.quiet {
                eprintln!("msf-run: interrupted after {} frames{}", summary.frames, summary.output.as_ref().map_or(String::new(), |d| format!("; they are kept in {}", d.display())));
            }
            ExitCode::from(130)
        }
        Outcome::Failed => {
            let line = report.error_line().unwrap_or_default();
            eprintln!("msf-run: error: {line} ({})", kept(summary.frames, summary.files, summary.output.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn kept(frames: u64, files: u64, dir: Option<&PathBuf>) -> String {
    match (frames, dir) {
        (0, Some(dir)) => format!("no frame was written to {}", dir.display()),
        (_, Some(dir)) => format!("{frames} frames already written ({files} files) are kept in {}", dir.display()),
        (n, None) => format!("{n} frames were written as JSON lines"),
    }
}

/// `--jsonl -`: the frame lines own stdout, so human messages go to stderr.
fn jsonl_to_stdout(cli: &Cli) -> bool {
    cli.jsonl.as_deref().is_some_and(JsonLines::is_stdout)
}
