//! msf-train: train SLATE-MSF or SlotDiffusion-MSF in two stages (the MSF VQ-VAE, then slots and
//! decoder), with
//! upstream's recipe, on generated shapes or a folder of images; checkpoints in upstream's
//! format (msf-export reads them unchanged) and an optional ONNX export at the end.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use msf_train::config::TrainConfig;
use msf_train::nn::trainer::{stage1, stage2, Stage2Options, StepReport};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "msf-train",
    version,
    about = "Train SLATE-MSF or SlotDiffusion-MSF (stage 1: the MSF VQ-VAE; stage 2: slots and decoder) on libtorch.",
    long_about = "Train SLATE-MSF or SlotDiffusion-MSF (model.decoder in the config) with upstream's recipe (Adam, linear warm-up + cosine, gradient clipping; \
stage 2 freezes the VQ-VAE and, as configured, the backbone). Data: generated shapes with exact masks \
(default) or data.folder in the config. Checkpoints are written atomically in upstream's torch.save \
layout: OUT/stage1/last.pth, OUT/stage2/last.pth and best.pth (highest validation FG-ARI); msf-export \
reads them unchanged. An interrupted run continues with --resume.",
    after_help = "Examples:\n  msf-train config small > small.toml\n  msf-train stage1 --config small.toml --out runs/demo\n  \
msf-train stage2 --config small.toml --out runs/demo --export runs/demo/slate.onnx\n  \
msf-train stage2 --config coco.toml --out runs/coco --init-from slate-msf-coco.pth   # pretrained DINOv2\n  \
msf-train stage1 --preset small-slotdiffusion --out runs/sd && msf-train stage2 --preset small-slotdiffusion --out runs/sd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a preset configuration as TOML.
    Config {
        #[arg(value_enum)]
        preset: Preset,
    },
    /// Stage 1: train the MSF VQ-VAE. Writes OUT/stage1/last.pth.
    Stage1 {
        #[command(flatten)]
        common: Common,
    },
    /// Stage 2: train SLATE-MSF or SlotDiffusion-MSF against the frozen stage-1 VQ-VAE. Writes
    /// OUT/stage2/{last,best,untrained}.pth.
    Stage2 {
        #[command(flatten)]
        common: Common,
        /// The stage-1 checkpoint (default: OUT/stage1/last.pth).
        #[arg(long, value_name = "PTH")]
        vae: Option<PathBuf>,
        /// Start from the tensors of this checkpoint whose names and shapes fit (an upstream
        /// best.pth brings its pretrained DINOv2).
        #[arg(long, value_name = "PTH")]
        init_from: Option<PathBuf>,
        /// Export the best checkpoint to ONNX at the end (as msf-export does).
        #[arg(long, value_name = "MODEL.onnx")]
        export: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// Configuration file (TOML); default: the small CPU preset.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Preset to use without --config.
    #[arg(long, value_enum, default_value_t = Preset::Small, conflicts_with = "config")]
    preset: Preset,
    /// Output folder of the run.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Override the stage's number of steps.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Override the stage's batch size.
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
    /// Continue from OUT/<stage>/last.pth and its state.json.
    #[arg(long)]
    resume: bool,
    /// No progress bar (one line per validation instead).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// SLATE-MSF for a 2-core CPU (configs/small.toml).
    Small,
    /// Upstream's SLATE-MSF on COCO (configs/coco.toml).
    Coco,
    /// SlotDiffusion-MSF for a 2-core CPU (configs/small-slotdiffusion.toml).
    SmallSlotdiffusion,
    /// Upstream's SlotDiffusion-MSF on COCO (configs/coco-slotdiffusion.toml).
    CocoSlotdiffusion,
}

fn preset(p: Preset) -> TrainConfig {
    match p {
        Preset::Small => TrainConfig::small(),
        Preset::Coco => TrainConfig::coco(),
        Preset::SmallSlotdiffusion => TrainConfig::small_slotdiffusion(),
        Preset::CocoSlotdiffusion => TrainConfig::coco_slotdiffusion(),
    }
}

fn load_config(c: &Common) -> Result<TrainConfig> {
    let mut cfg = match &c.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            TrainConfig::from_toml(&text).with_context(|| format!("{}", path.display()))?
        }
        None => preset(c.preset),
    };
    for r in [&mut cfg.stage1.steps, &mut cfg.stage2.steps] {
        if let Some(s) = c.steps {
            *r = s;
        }
    }
    if let Some(b) = c.batch {
        cfg.stage1.batch = b;
        cfg.stage2.batch = b;
    }
    let problems = cfg.problems();
    if !problems.is_empty() {
        bail!("the configuration does not work: {}", problems.join("; "));
    }
    Ok(cfg)
}

/// Progress bar (terminal) and the run log `log.jsonl` (every step, always).
struct Reporter {
    bar: ProgressBar,
    log: std::fs::File,
    start: Instant,
    quiet: bool,
}

impl Reporter {
    fn new(dir: &Path, steps: usize, quiet: bool, resume: bool) -> Result<Reporter> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("log.jsonl");
        let log = std::fs::OpenOptions::new().create(true).append(resume).write(true).truncate(!resume).open(&path).with_context(|| format!("opening {}", path.display()))?;
        let bar = ProgressBar::new(steps as u64);
        if quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} steps, {msg}").expect("valid template").progress_chars("=> "));
        }
        Ok(Reporter { bar, log, start: Instant::now(), quiet })
    }

    fn step(&mut self, r: &StepReport) {
        let rate = r.step as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position(r.step as u64);
        let codes = r.codes_used.as_ref().map_or(String::new(), |c| {
            format!(", codes used {}", c.iter().map(|[shared, own]| format!("{shared}+{own}")).collect::<Vec<_>>().join(" "))
        });
        self.bar.set_message(format!("loss {:.4}, {:.2} steps/s{codes}", r.loss, rate));
        let _ = writeln!(self.log, "{}", serde_json::to_string(r).expect("report serialises"));
        if let Some(v) = &r.val {
            let f = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.4}"));
            let at = if r.step == 0 { "before training".to_string() } else { format!("step {}/{}: loss {:.4};", r.step, r.steps, r.loss) };
            let line = format!("stage {} {at} validation FG-ARI {} ARI {} mBO {} mIoU {}", r.stage, f(v.fg_ari), f(v.ari), f(v.mbo), f(v.miou));
            if self.quiet {
                eprintln!("msf-train: {line}");
            } else {
                self.bar.println(line);
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    msf_runtime::process::init_tool();
    msf_runtime::process::main_guard("msf-train", || {
        let cli = Cli::parse();
        match run(cli) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msf-train: error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Config { preset: p } => {
            print!("{}", preset(p).to_toml());
            Ok(())
        }
        Command::Stage1 { common } => {
            let cfg = load_config(&common)?;
            let dir = common.out.join("stage1");
            let mut rep = Reporter::new(&dir, cfg.stage1.steps, common.quiet, common.resume)?;
            let start = Instant::now();
            let last = stage1(&cfg, &dir, common.resume, |r| rep.step(r))?;
            rep.bar.finish_and_clear();
            eprintln!("msf-train: stage 1 done in {:.0} s: {}", start.elapsed().as_secs_f64(), last.display());
            Ok(())
        }
        Command::Stage2 { common, vae, init_from, export } => {
            let cfg = load_config(&common)?;
            let vae = vae.unwrap_or_else(|| common.out.join("stage1").join("last.pth"));
            if !vae.is_file() {
                bail!("no stage-1 checkpoint at {} (run `msf-train stage1 --out {}` first, or give --vae)", vae.display(), common.out.display());
            }
            let dir = common.out.join("stage2");
            let mut rep = Reporter::new(&dir, cfg.stage2.steps, common.quiet, common.resume)?;
            let start = Instant::now();
            let opts = Stage2Options { vae: &vae, init_from: init_from.as_deref(), resume: common.resume };
            let best = stage2(&cfg, &dir, &opts, |r| rep.step(r))?;
            rep.bar.finish_and_clear();
            eprintln!("msf-train: stage 2 done in {:.0} s: {}", start.elapsed().as_secs_f64(), best.display());
            if let Some(onnx) = export {
                msf_exporter::export::export(&best, &onnx, &Default::default()).with_context(|| format!("exporting {}", best.display()))?;
                eprintln!("msf-train: exported {}", onnx.display());
            }
            Ok(())
        }
    }
}
