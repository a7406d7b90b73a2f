//! msf-eval: ARI, FG-ARI, mBO and mIoU of an exported MSF model (or a trivial baseline) on a
//! labelled dataset, computed as upstream does; prints a table and can write JSON. `--davis ROOT
//! --predictions PRED` scores existing video predictions with DAVIS 2017's J, F and J&F instead.

use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use msf_runtime::sink::write_atomic;
use msf_runtime::{BackendKind, Decomposer, Fit};
use msf_train::davis;
use msf_train::data::{write_label_png, CocoPanoptic, Folder, Generated, Sample};
use msf_train::eval::{score_baseline, score_model, score_model_frame, score_prediction, Baseline};
use msf_train::metrics::{summarize, Scores, Summary};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "msf-eval",
    version,
    about = "Score an exported MSF model on a labelled dataset: ARI, FG-ARI, mBO, mIoU (as upstream computes them).",
    long_about = "Score an exported MSF model on a labelled dataset: ARI, FG-ARI, mBO, mIoU, computed per image \
at the model's mask resolution on the centre crop (ground truth resized with nearest-exact), then averaged over \
the images where each metric is defined, as upstream's learn/metric.py does.\n\n\
Datasets: --data DIR (DIR/images/<name>.png|jpg and DIR/masks/<name>.png, an 8-bit grey or palette PNG: \
0 background, 1..254 objects, 255 unannotated) or --generated N (random shapes with exact masks, \
reproducible from --seed). --baseline scores a prediction that ignores the image, the yardstick a trained \
model must beat.\n\n\
DAVIS: --davis ROOT --predictions PRED runs no model: it scores existing predictions PRED/<sequence>/<frame>.png \
(palette or grey PNGs, object ids 1..=20, 0 = nothing) against a DAVIS 2017 folder (annotations in \
ROOT/Annotations_unsupervised/480p, else ROOT/Annotations/480p: 0 background, 255 void) as the official \
davis2017-evaluation scores the unsupervised task: J (region similarity) and F (boundary accuracy) of every \
predicted object against every ground-truth object on every frame, objects matched by the Hungarian method on \
(J + F) / 2, then per object mean, recall (> 0.5) and decay; J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, \
F-Recall, F-Decay over all objects of all sequences.",
    after_help = "Examples:\n  msf-eval --onnx slate.onnx --data coco-val/ --json scores.json\n  \
msf-eval --onnx slate.onnx --generated 200 --seed 1\n  msf-eval --baseline grid --generated 200 --seed 1\n  \
msf-eval --generated 50 --save-data demo-data/   # write the generated images and masks only\n  \
msf-eval --davis DAVIS/ --predictions pred/ --json davis.json   # DAVIS J&F of predictions\n\n\
Exit codes: 0 success; 1 failure (unreadable or inconsistent data, model or predictions; nothing to score); \
2 usage error (unknown, missing or conflicting options, values out of range)."
)]
struct Cli {
    /// The exported model (msf-export output).
    #[arg(long, value_name = "MODEL.onnx")]
    onnx: Option<PathBuf>,
    /// Score a checkpoint (upstream's or msf-train's) through the tch forward instead of an
    /// ONNX model (needs a build with `--features tch`).
    #[arg(long, value_name = "PTH", conflicts_with = "onnx")]
    ckpt: Option<PathBuf>,
    /// Score a baseline instead of a model (`one`: a single segment; `grid`: a fixed grid of --slots cells).
    #[arg(long, value_enum, conflicts_with_all = ["onnx", "ckpt"])]
    baseline: Option<Baseline>,
    /// Number of segments of the grid baseline.
    #[arg(long, default_value_t = 7, value_name = "K", value_parser = clap::value_parser!(u16).range(1..=255).map(usize::from))]
    slots: usize,
    /// A labelled folder: DIR/images/* and DIR/masks/<name>.png.
    #[arg(long, value_name = "DIR", conflicts_with = "generated")]
    data: Option<PathBuf>,
    /// Use N generated images (random shapes, exact masks).
    #[arg(long, value_name = "N", conflicts_with = "coco", value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    generated: Option<usize>,
    /// COCO panoptic in upstream's layout: DIR/val2017/*.jpg, DIR/annotations/panoptic_val2017.json
    /// and DIR/annotations/panoptic_val2017/*.png ("things" are the objects, "stuff" background).
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    coco: Option<PathBuf>,
    /// The COCO split (folder and annotation names).
    #[arg(long, default_value = "val2017", value_name = "SPLIT")]
    coco_split: String,
    /// Seed of the generated dataset.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the generated images, in pixels.
    #[arg(long, default_value_t = 256, value_name = "PX", value_parser = clap::value_parser!(u32).range(16..=4096))]
    size: u32,
    /// Generated frames of this size instead of --size² (e.g. 640x480, 854x480).
    #[arg(long, value_name = "WxH", value_parser = parse_frame, requires = "generated")]
    frame: Option<(u32, u32)>,
    /// Generated scenes with an object crossing each border (at least four objects).
    #[arg(long, requires = "generated")]
    touch_borders: bool,
    /// Score the whole frame at frame resolution with this fit of the frame into the model's
    /// input (crop, stretch, pad, tiles); pixels no view covers (outside crop's square) count as
    /// missed. Without it: upstream's protocol, the centre crop at the model's mask resolution.
    #[arg(long, value_parser = parse_fit, requires = "onnx")]
    fit: Option<Fit>,
    /// Write the generated images and masks to DIR (the --data layout).
    #[arg(long, value_name = "DIR")]
    save_data: Option<PathBuf>,
    /// Inference engine.
    #[arg(long, value_enum, default_value_t = BackendArg::Tract)]
    backend: BackendArg,
    /// Kernel threads per inference call (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    threads: Option<usize>,
    /// Write the summary and every image's scores as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,

    // DAVIS mode: existing predictions, no model (run_davis).
    /// A DAVIS 2017 folder: score the video predictions of --predictions with J, F and J&F
    /// (unsupervised task, as the official evaluation) instead of running a model.
    #[arg(long, value_name = "ROOT", requires = "predictions", conflicts_with_all = ["onnx", "ckpt", "baseline", "data", "generated", "coco", "save_data", "threads"])]
    davis: Option<PathBuf>,
    /// Existing predictions to score instead of running a model. With --davis: PRED/<sequence>/<frame>.png,
    /// one per annotated frame. With --data, --generated or --coco: an msf-run output folder (its
    /// masks/<name>.png at frame resolution, 255 = uncovered, which counts as missed) scored over the
    /// whole frame.
    #[arg(long, value_name = "PRED", conflicts_with_all = ["onnx", "ckpt", "baseline"])]
    predictions: Option<PathBuf>,
    /// Score the sequences of ROOT/ImageSets/2017/<SET>.txt (default: val.txt when there, else
    /// every sequence folder).
    #[arg(long, value_name = "SET", requires = "davis")]
    davis_set: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Tract,
    Ort,
}

enum Dataset {
    Folder(Folder),
    Generated(Generated),
    Coco(CocoPanoptic),
}

impl Dataset {
    fn len(&self) -> usize {
        match self {
            Dataset::Folder(f) => f.len(),
            Dataset::Generated(g) => g.count,
            Dataset::Coco(c) => c.len(),
        }
    }
    fn get(&self, i: usize) -> Result<Sample> {
        Ok(match self {
            Dataset::Folder(f) => f.load(i)?,
            Dataset::Generated(g) => g.sample(i),
            Dataset::Coco(c) => c.load(i)?,
        })
    }
    fn describe(&self) -> String {
        match self {
            Dataset::Folder(f) => format!("{} ({} images)", f.root.display(), f.len()),
            Dataset::Generated(g) => {
                let (w, h) = g.frame.unwrap_or((g.size, g.size));
                let borders = if g.touch_borders { ", objects on every border" } else { "" };
                format!("{} generated {w}×{h} images (seed {}{borders})", g.count, g.seed)
            }
            Dataset::Coco(c) => format!("COCO panoptic {} {} ({} images)", c.root.display(), c.split, c.len()),
        }
    }
}

#[derive(Serialize)]
struct ImageScores<'a> {
    name: &'a str,
    #[serde(flatten)]
    scores: Scores,
}

/// A checkpoint loaded for the tch forward.
#[cfg(feature = "tch")]
struct Checkpoint {
    _vs: tch::nn::VarStore,
    encoder: msf_train::nn::Encoder,
}

#[cfg(feature = "tch")]
impl Checkpoint {
    fn score(&self, sample: &Sample) -> Result<Scores> {
        Ok(msf_train::eval::score_checkpoint(&self.encoder, sample)?)
    }
}

#[cfg(feature = "tch")]
fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    use msf_exporter::{checkpoint, spec};
    let ck = checkpoint::load(path, &checkpoint::Limits::default(), &spec::wants_data).with_context(|| format!("reading {}", path.display()))?;
    let spec = spec::build_spec(ck, &spec::SpecOptions::default()).with_context(|| format!("{}", path.display()))?;
    let (_vs, encoder) = msf_train::nn::Encoder::from_spec(&spec, tch::Device::cuda_if_available()).with_context(|| format!("{}", path.display()))?;
    Ok(Checkpoint { _vs, encoder })
}

/// Without libtorch there is no checkpoint forward; say how to get one.
#[cfg(not(feature = "tch"))]
enum Checkpoint {}

#[cfg(not(feature = "tch"))]
impl Checkpoint {
    fn score(&self, _: &Sample) -> Result<Scores> {
        match *self {}
    }
}

#[cfg(not(feature = "tch"))]
fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    bail!("scoring {} needs the tch forward: this msf-eval was built without the `tch` feature (use --onnx with an export, or rebuild with --features tch)", path.display())
}

#[derive(Serialize)]
struct Report<'a> {
    model: Option<&'a Path>,
    baseline: Option<String>,
    backend: Option<&'static str>,
    dataset: String,
    /// The fit when scored over the whole frame; `None`: upstream's centre-crop protocol.
    fit: Option<&'static str>,
    /// Mean wall time of one model decomposition (preprocess + inference + masks), ms.
    ms_per_image: Option<f64>,
    summary: Summary,
    images: Vec<ImageScores<'a>>,
}

fn main() -> std::process::ExitCode {
    msf_runtime::process::init_tool();
    msf_runtime::process::main_guard("msf-eval", || {
        let cli = Cli::parse();
        {
            use clap::CommandFactory;
            let usage = |msg: &str| Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, msg).exit();
            // clap waives `requires` when a conflicting argument (--baseline, --ckpt) is there.
            if cli.fit.is_some() && cli.onnx.is_none() {
                usage("--fit scores an exported model's masks: give --onnx MODEL.onnx");
            }
            if cli.predictions.is_some() && cli.davis.is_none() && cli.data.is_none() && cli.generated.is_none() && cli.coco.is_none() {
                usage("--predictions needs the ground truth to score them against: --davis ROOT, --data DIR, --generated N or --coco DIR");
            }
        }
        match run(&cli) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("msf-eval: error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

fn save_sample(dir: &Path, s: &Sample) -> Result<()> {
    let (images, masks) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&images).and_then(|_| std::fs::create_dir_all(&masks)).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("{}.png", s.name);
    s.image.save(images.join(&name)).with_context(|| format!("writing {}", images.join(&name).display()))?;
    write_label_png(&s.labels, &masks.join(&name)).with_context(|| format!("writing {}", masks.join(&name).display()))?;
    Ok(())
}

fn run(cli: &Cli) -> Result<()> {
    if let (Some(root), Some(predictions)) = (&cli.davis, &cli.predictions) {
        return run_davis(cli, root, predictions);
    }
    let dataset = match (&cli.data, cli.generated) {
        (Some(dir), _) => Dataset::Folder(Folder::open(dir)?),
        (None, _) if cli.coco.is_some() => Dataset::Coco(CocoPanoptic::open(cli.coco.as_deref().expect("checked"), &cli.coco_split)?),
        (None, Some(count)) => {
            let g = Generated { count, seed: cli.seed, size: cli.size, frame: cli.frame, touch_borders: cli.touch_borders, ..Default::default() };
            g.validate()?;
            Dataset::Generated(g)
        }
        (None, None) => bail!("no dataset: give --data DIR, --coco DIR or --generated N"),
    };
    if cli.save_data.is_some() && !matches!(dataset, Dataset::Generated(_)) {
        bail!("--save-data writes a generated dataset: use it with --generated N");
    }
    let decomposer = match &cli.onnx {
        Some(path) => {
            let backend = match cli.backend {
                BackendArg::Tract => BackendKind::Tract,
                BackendArg::Ort => BackendKind::Ort,
            };
            let mut b = Decomposer::builder().backend(backend).fit(cli.fit.unwrap_or(Fit::Crop));
            if let Some(t) = cli.threads {
                b = b.threads(t);
            }
            Some(b.build(path).with_context(|| format!("loading {}", path.display()))?)
        }
        None => None,
    };
    let checkpoint = match &cli.ckpt {
        Some(path) => Some(load_checkpoint(path)?),
        None => None,
    };
    if decomposer.is_none() && checkpoint.is_none() && cli.baseline.is_none() && cli.save_data.is_none() && cli.predictions.is_none() {
        bail!("nothing to score: give --onnx MODEL.onnx, --ckpt best.pth, --baseline one|grid or --predictions OUT_DIR");
    }
    if dataset.len() == 0 {
        bail!("the dataset is empty");
    }

    let what = match (&cli.onnx, &cli.ckpt, cli.baseline) {
        (Some(p), _, _) => format!("{} ({})", p.display(), decomposer.as_ref().map_or("", |d| d.backend_name())),
        (None, Some(p), _) => format!("{} (tch)", p.display()),
        (None, None, Some(b)) => format!("the {} baseline", format!("{b:?}").to_lowercase()),
        (None, None, None) => match &cli.predictions {
            Some(p) => format!("the predictions in {}", p.display()),
            None => "nothing".into(),
        },
    };
    if !cli.quiet {
        eprintln!("msf-eval: {what} on {}", dataset.describe());
    }
    let bar = progress(cli, dataset.len() as u64);
    let mut scored: Vec<(String, Scores)> = Vec::with_capacity(dataset.len());
    let mut model_seconds = 0.0;
    for i in 0..dataset.len() {
        let sample = dataset.get(i)?;
        if let Some(dir) = &cli.save_data {
            save_sample(dir, &sample)?;
        }
        let scores = match (&decomposer, &checkpoint, cli.baseline) {
            (Some(d), _, _) => {
                let t = std::time::Instant::now();
                let s = match cli.fit {
                    Some(_) => score_model_frame(d, &sample),
                    None => score_model(d, &sample),
                };
                model_seconds += t.elapsed().as_secs_f64();
                Some(s.with_context(|| format!("decomposing {}", sample.name))?)
            }
            (None, Some(c), _) => Some(c.score(&sample).with_context(|| format!("decomposing {}", sample.name))?),
            (None, None, Some(b)) => Some(score_baseline(b, cli.slots, 256, &sample)),
            (None, None, None) => match &cli.predictions {
                Some(dir) => Some(score_prediction(dir, &sample)?),
                None => None,
            },
        };
        if let Some(s) = scores {
            scored.push((sample.name, s));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(dir) = &cli.save_data {
        eprintln!("msf-eval: wrote {} images and masks to {}", dataset.len(), dir.display());
    }
    if scored.is_empty() {
        return Ok(());
    }

    let all: Vec<Scores> = scored.iter().map(|(_, s)| *s).collect();
    let summary = summarize(&all);
    println!("{:<8} {:>8}  {:>6}", "metric", "mean", "images");
    type Metric = fn(&Scores) -> Option<f64>;
    let rows: [(&str, Option<f64>, Metric); 4] = [
        ("ARI", summary.ari, |s| s.ari),
        ("FG-ARI", summary.fg_ari, |s| s.fg_ari),
        ("mBO", summary.mbo, |s| s.mbo),
        ("mIoU", summary.miou, |s| s.miou),
    ];
    for (name, mean, metric) in rows {
        let n = all.iter().filter(|s| metric(s).is_some()).count();
        match mean {
            Some(m) => println!("{name:<8} {:>8.4}  {n:>6}", m),
            None => println!("{name:<8} {:>8}  {n:>6}", "—"),
        }
    }
    let ms_per_image = decomposer.as_ref().map(|_| 1000.0 * model_seconds / all.len() as f64);
    if let Some(ms) = ms_per_image {
        println!("{:<8} {:>8.1}  {:>6}", "ms/image", ms, all.len());
    }

    if let Some(path) = &cli.json {
        let report = Report {
            model: cli.onnx.as_deref().or(cli.ckpt.as_deref()),
            baseline: cli.baseline.map(|b| format!("{b:?}").to_lowercase()),
            backend: decomposer.as_ref().map(|d| d.backend_name()).or(checkpoint.as_ref().map(|_| "tch")),
            dataset: dataset.describe(),
            fit: cli.fit.map(Fit::as_str),
            ms_per_image,
            summary,
            images: scored.iter().map(|(name, scores)| ImageScores { name, scores: *scores }).collect(),
        };
        write_atomic(path, |w| serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other))
            .with_context(|| format!("writing {}", path.display()))?;
        if !cli.quiet {
            eprintln!("msf-eval: wrote {}", path.display());
        }
    }
    Ok(())
}

fn parse_fit(s: &str) -> std::result::Result<Fit, String> {
    s.parse()
}

/// `WxH`, e.g. `640x480`.
fn parse_frame(s: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not WIDTHxHEIGHT (e.g. 640x480)");
    let (w, h) = s.split_once(['x', 'X', '×']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if w.min(h) < 16 || w.max(h) > 8192 {
        return Err(format!("{w}x{h}: each side must be 16..=8192 pixels"));
    }
    Ok((w, h))
}

fn progress(cli: &Cli, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if cli.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} images, {per_sec}, eta {eta}").expect("valid template").progress_chars("=> "));
    }
    bar
}

// ------------------------------------------------------------------------------------------------
// DAVIS mode: J, F and J&F of existing predictions
// ------------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct DavisReport<'a> {
    task: &'static str,
    annotations: &'a Path,
    predictions: &'a Path,
    sequence_list: Option<&'a Path>,
    summary: davis::Summary,
    sequences: Vec<DavisSequence<'a>>,
}

#[derive(Serialize)]
struct DavisSequence<'a> {
    #[serde(rename = "J-Mean")]
    j_mean: Option<f64>,
    #[serde(rename = "F-Mean")]
    f_mean: Option<f64>,
    #[serde(rename = "J&F-Mean")]
    jf_mean: Option<f64>,
    #[serde(flatten)]
    scores: &'a davis::SequenceScores,
}

fn run_davis(cli: &Cli, root: &Path, predictions: &Path) -> Result<()> {
    let data = davis::Davis::open(root, cli.davis_set.as_deref())?;
    if !cli.quiet {
        eprintln!("msf-eval: predictions {} on {}", predictions.display(), data.describe());
    }
    let bar = ProgressBar::new(data.sequences.len() as u64);
    if cli.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} sequences, eta {eta}").expect("valid template").progress_chars("=> "));
    }
    let sequences = data.evaluate(predictions, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let Some(summary) = davis::summarize(&sequences) else {
        bail!("no ground-truth objects in any sequence (a DAVIS sequence's objects are the ids of its first annotation)");
    };
    let num = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.4}"));
    let width = sequences.iter().map(|s| s.name.chars().count()).max().unwrap_or(0).max(8);
    println!("{:<width$} {:>7} {:>8} {:>8} {:>8}", "sequence", "objects", "J-Mean", "F-Mean", "J&F");
    for s in &sequences {
        println!("{:<width$} {:>7} {:>8} {:>8} {:>8}", s.name, s.objects.len(), num(s.j_mean()), num(s.f_mean()), num(s.jf_mean()));
    }
    println!();
    let rows = [
        ("J&F-Mean", summary.jf_mean),
        ("J-Mean", summary.j_mean),
        ("J-Recall", summary.j_recall),
        ("J-Decay", summary.j_decay),
        ("F-Mean", summary.f_mean),
        ("F-Recall", summary.f_recall),
        ("F-Decay", summary.f_decay),
    ];
    println!("{:<8} {:>8}  ({} objects in {} sequences)", "measure", "value", summary.objects, summary.sequences);
    for (name, v) in rows {
        println!("{name:<8} {:>8}", num(Some(v)));
    }
    if let Some(path) = &cli.json {
        let report = DavisReport {
            task: "DAVIS 2017 unsupervised",
            annotations: &data.annotations,
            predictions,
            sequence_list: data.sequence_list.as_deref(),
            summary,
            sequences: sequences.iter().map(|s| DavisSequence { j_mean: s.j_mean(), f_mean: s.f_mean(), jf_mean: s.jf_mean(), scores: s }).collect(),
        };
        write_atomic(path, |w| serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other))
            .with_context(|| format!("writing {}", path.display()))?;
        if !cli.quiet {
            eprintln!("msf-eval: wrote {}", path.display());
        }
    }
    Ok(())
}
