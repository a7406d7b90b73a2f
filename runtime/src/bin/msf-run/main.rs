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

mod args;
use args::{check_usage, Cli};

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
    // A model's load peaks at about its size, not twice it (see the function).
    msf_runtime::memory::load_with_mapped_blocks(|| b.build(&cli.onnx))
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
    let load_peak_kib = msf_runtime::memory::peak_rss_kib();
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
            "msf-run: warning: {} has no `slots_init` input (it was exported with `msf-export --no-slots-in`: re-export it without that flag to carry slots between frames); slot ids are matched between frames only",
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
        load_peak_kib,
        peak_kib: msf_runtime::memory::peak_rss_kib(),
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

/// KiB as MiB, to 0.1 (the unit of `ru_maxrss`/1024 and `/usr/bin/time`'s KiB, so they compare).
fn mib(kib: u64) -> f64 {
    (kib as f64 / 102.4).round() / 10.0
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
    /// Per frame, until delivered (see [`msf_runtime::pipeline::RunReport::latency`]).
    latency: msf_runtime::pipeline::Latency,
    /// Peak resident memory once the model was loaded, and at the end (Linux).
    load_peak_kib: Option<u64>,
    peak_kib: Option<u64>,
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
            "peak_rss_mib": {"load": self.load_peak_kib.map(mib), "run": self.peak_kib.map(mib)},
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
