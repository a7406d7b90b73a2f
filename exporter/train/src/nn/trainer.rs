//! The two training stages (upstream recipe, spec §3): stage 1 trains the MSF VQ-VAE; stage 2
//! trains SLATE-MSF or SlotDiffusion-MSF (projection, slots, Slot Attention, decoder) against the
//! frozen VQ-VAE (its codes, or its encoding), with validation metrics on held-out images.
//! Batches are made ahead on loader threads; checkpoints are written atomically in upstream's
//! format, so an interrupted run loses at most `save_every` steps and `--resume` picks up from
//! the last one, Adam's moments included.

use super::adam::Adam;
use super::encoder::{checkpoint_tensors, load_weights, Encoder, LoadError};
use super::model::{SlateMsf, Stage2Model};
use super::save::{save_tensors, save_var_store, CheckpointWriteError};
use super::slate::SlateConfig;
use super::slotdiffusion::SlotDiffusionMsf;
use super::train::{cosine_linear, image_tensor, linear_cosine, log_cosine, normalised_chw};
use super::unet::UNetConfig;
use super::vqvae::{stage1_loss, VqVae, VqVaeConfig};
use crate::config::{Decoder, TrainConfig, UNET_GROUPS};
use crate::data::{Folder, Generated, Sample};
use crate::eval::labels_in_model_view;
use crate::metrics::{score, summarize, Summary};
use msf_exporter::checkpoint;
use msf_exporter::checkpoint::save::TensorOut;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tch::{nn, Device, Kind, Tensor};

/// Side of the validation images: upstream's 256, the exported model's input.
pub const IMAGE_SIZE: u32 = 256;
/// Offset of the validation stream in the generated dataset's seeds (disjoint from training).
const VAL_SEED_OFFSET: u64 = 1_000_003;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("{path}: {source}")]
    Checkpoint { path: PathBuf, source: checkpoint::CheckpointError },
    #[error("{path}: {reason}")]
    Incompatible { path: PathBuf, reason: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Save(#[from] CheckpointWriteError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the loss became {0} at step {1}: lower the learning rate")]
    Diverged(f64, usize),
    #[error("loading training images: {0}")]
    Loader(String),
}

/// What the caller hears after each step.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub stage: u8,
    pub step: usize,
    pub steps: usize,
    /// NaN (JSON null) for the validation before the first step.
    pub loss: f64,
    pub lr: f64,
    /// Validation metrics, on the steps that ran them.
    pub val: Option<Summary>,
    /// Stage 1: distinct codes the batch used, per scale as [shared, own] (a collapsing
    /// codebook shows here long before the reconstructions suffer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codes_used: Option<Vec<[usize; 2]>>,
}

/// Kept beside `last.pth` so that `--resume` continues the schedules where they stopped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    pub step: usize,
    pub best_fg_ari: Option<f64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

fn read_checkpoint(path: &Path) -> Result<checkpoint::Checkpoint, TrainError> {
    checkpoint::load(path, &checkpoint::Limits::default(), &|_| true).map_err(|source| TrainError::Checkpoint { path: path.to_path_buf(), source })
}

/// Where the training images come from.
#[derive(Clone)]
enum Source {
    Generated(Generated),
    /// A folder, and the side its images are resized to.
    Folder(Folder, u32),
}

impl Source {
    fn new(cfg: &TrainConfig) -> Result<Source, TrainError> {
        Ok(match &cfg.data.folder {
            Some(dir) => Source::Folder(Folder::open(dir)?, cfg.data.size),
            None => {
                let g = Generated { count: cfg.data.generated.max(1), seed: cfg.data.seed, size: cfg.data.size, ..Default::default() };
                g.validate()?;
                Source::Generated(g)
            }
        })
    }

    fn size(&self) -> u32 {
        match self {
            Source::Generated(g) => g.size,
            Source::Folder(_, size) => *size,
        }
    }

    fn image(&self, index: usize) -> Result<image::RgbImage, TrainError> {
        Ok(match self {
            Source::Generated(g) => g.sample(index % g.count).image,
            Source::Folder(f, size) => {
                let path = &f.images[index % f.len()];
                let img = image::open(path).map_err(|e| TrainError::Io { path: path.clone(), source: std::io::Error::other(e) })?.to_rgb8();
                // Upstream's eval crop: the centre square, resized to the training size.
                let s = img.width().min(img.height());
                let crop = image::imageops::crop_imm(&img, (img.width() - s) / 2, (img.height() - s) / 2, s, s).to_image();
                image::imageops::resize(&crop, *size, *size, image::imageops::FilterType::Triangle)
            }
        })
    }
}

/// Batches of normalised images for steps `start..end`, made on `threads` loader threads and
/// handed over in step order.
struct Loader {
    rx: mpsc::Receiver<(usize, Result<Vec<f32>, String>)>,
    pending: BTreeMap<usize, Result<Vec<f32>, String>>,
    next: usize,
    batch: usize,
    size: u32,
}

impl Loader {
    fn start(source: Source, batch: usize, start: usize, end: usize, threads: usize) -> Loader {
        let threads = threads.max(1);
        let size = source.size();
        let (tx, rx) = mpsc::sync_channel(2 * threads);
        for t in 0..threads {
            let (tx, source) = (tx.clone(), source.clone());
            std::thread::spawn(move || {
                for step in (start + t..end).step_by(threads) {
                    let mut data = Vec::with_capacity(batch * 3 * (size * size) as usize);
                    let made = (0..batch).try_for_each(|j| {
                        let img = source.image(step * batch + j).map_err(|e| e.to_string())?;
                        data.extend(normalised_chw(&img));
                        Ok::<(), String>(())
                    });
                    if tx.send((step, made.map(|_| data))).is_err() {
                        return; // the trainer stopped
                    }
                }
            });
        }
        Loader { rx, pending: BTreeMap::new(), next: start, batch, size }
    }

    fn next_batch(&mut self) -> Result<Tensor, TrainError> {
        loop {
            if let Some(b) = self.pending.remove(&self.next) {
                self.next += 1;
                let data = b.map_err(TrainError::Loader)?;
                let s = self.size as i64;
                return Ok(Tensor::from_slice(&data).view([self.batch as i64, 3, s, s]));
            }
            let (step, b) = self.rx.recv().map_err(|_| TrainError::Loader("the loader threads stopped".into()))?;
            self.pending.insert(step, b);
        }
    }
}

/// How many distinct values an index tensor holds.
fn distinct(idx: &Tensor) -> usize {
    idx.flatten(0, -1).bincount(None::<Tensor>, 0).gt(0).sum(Kind::Int64).int64_value(&[]) as usize
}

/// One optimiser step on `loss` (gradient clipped to `clip`); its value, or an error if it is
/// not finite (nothing is applied then).
fn optimise(opt: &mut Adam, loss: &Tensor, clip: f64, step: usize) -> Result<f64, TrainError> {
    let value = loss.double_value(&[]);
    if !value.is_finite() {
        return Err(TrainError::Diverged(value, step));
    }
    opt.zero_grad();
    loss.backward();
    opt.clip_grad_norm(clip);
    opt.step();
    Ok(value)
}

fn vq_config(cfg: &TrainConfig) -> VqVaeConfig {
    let m = &cfg.model;
    VqVaeConfig { code_dim: m.code_dim, codes: m.codes, codebook_dim: m.codebook_dim, scales: 3, channels: m.vae_channels }
}

fn slate_config(cfg: &TrainConfig) -> SlateConfig {
    let m = &cfg.model;
    // One token per 16×16 pixels of the training image (the VQ-VAE's scale-0 grid).
    let grid = (cfg.data.size / 16) as usize;
    SlateConfig { dim: m.slot_dim, layers: m.decoder_layers, heads: m.decoder_heads, ffn_dim: m.decoder_ffn, tokens: grid * grid, codes: m.codes }
}

fn unet_config(cfg: &TrainConfig) -> UNetConfig {
    let m = &cfg.model;
    UNetConfig {
        in_channels: m.code_dim,
        out_channels: m.code_dim,
        block_channels: m.unet_channels.clone(),
        layers_per_block: m.unet_layers,
        heads: m.unet_heads,
        cross_attention_dim: m.slot_dim,
        norm_groups: UNET_GROUPS,
        ..UNetConfig::default()
    }
}

/// The stage-2 model the config names, in `vs` under upstream's names.
fn stage2_model(cfg: &TrainConfig, vs: &nn::VarStore) -> Box<dyn Stage2Model> {
    match cfg.model.decoder {
        Decoder::Slate => {
            let mut model = SlateMsf::new(&vs.root(), &cfg.model_config(), &vq_config(cfg), &slate_config(cfg));
            model.mediat_noise = cfg.stage2.mediat_noise;
            Box::new(model)
        }
        Decoder::SlotDiffusion => Box::new(SlotDiffusionMsf::new(&vs.root(), &cfg.model_config(), &vq_config(cfg), &unet_config(cfg))),
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The optimiser's moments beside `last.pth`.
const OPTIMIZER_STATE: &str = "last.adam.pth";

/// `dir/last.pth`, the optimiser's state and `state.json`: everything `--resume` needs.
fn save_run(vs: &nn::VarStore, opt: &Adam, dir: &Path, state: &RunState) -> Result<(), TrainError> {
    save_var_store(vs, &dir.join("last.pth"))?;
    save_tensors(opt.state(), &dir.join(OPTIMIZER_STATE))?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    msf_exporter::write::write_atomic(&state_path(dir), &json).map_err(|e| TrainError::Save(e.into()))
}

/// Adam's moments saved by the run being resumed (a run saved without them restarts them).
fn resume_optimizer(opt: &mut Adam, dir: &Path, resume: bool) -> Result<(), TrainError> {
    let path = dir.join(OPTIMIZER_STATE);
    if resume && path.is_file() {
        let ck = read_checkpoint(&path)?;
        opt.load_state(&ck).map_err(|e| TrainError::Incompatible { path, reason: format!("optimiser state does not fit this model ({e})") })?;
    }
    Ok(())
}

/// `dir/last.pth` and its state when resuming, else a fresh start.
fn resume_from(vs: &nn::VarStore, dir: &Path, resume: bool) -> Result<RunState, TrainError> {
    let last = dir.join("last.pth");
    if !resume || !last.is_file() {
        return Ok(RunState::default());
    }
    let ck = read_checkpoint(&last)?;
    let rest = load_weights(vs, checkpoint_tensors(&ck))?;
    if !rest.is_empty() {
        return Err(TrainError::Incompatible { path: last, reason: format!("does not fit this config (no {})", rest.join(", ")) });
    }
    let text = std::fs::read(state_path(dir)).map_err(io(&state_path(dir)))?;
    serde_json::from_slice(&text).map_err(|e| TrainError::Io { path: state_path(dir), source: std::io::Error::other(e) })
}

/// Stage 1: the MSF VQ-VAE alone (upstream `vqvae-*-msf.py`). Writes `dir/last.pth` in the
/// stage-1 key layout (`m.encode.*`, `m.quant.*`, `m.decode.*`) and returns its path.
pub fn stage1(cfg: &TrainConfig, dir: &Path, resume: bool, mut report: impl FnMut(&StepReport)) -> Result<PathBuf, TrainError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(TrainError::Config(problems));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Same config, same run (on the CPU): initialisation and noise come from the data seed.
    tch::manual_seed(cfg.data.seed as i64);
    let r = &cfg.stage1;
    let vs = nn::VarStore::new(Device::cuda_if_available());
    let vae = VqVae::new(&(vs.root() / "m"), &vq_config(cfg), true);
    let mut state = resume_from(&vs, dir, resume)?;
    let mut opt = Adam::new(&vs, r.lr);
    resume_optimizer(&mut opt, dir, resume)?;
    let warmup = (r.steps as f64 * r.warmup) as usize;
    let mut loader = Loader::start(Source::new(cfg)?, r.batch, state.step, r.steps, cfg.data.loader_threads);
    while state.step < r.steps {
        let step = state.step;
        let images = loader.next_batch()?.to_device(vs.device());
        let lr = linear_cosine(step, warmup, r.steps, 0.0, r.lr, r.lr / 1e3);
        opt.lr = lr;
        let noise = log_cosine(step, r.steps, r.noise[0], r.noise[1]);
        let alpha = cosine_linear(step, r.steps / 2, r.steps, 1.0, 0.0, 0.0);
        let out = vae.forward(&images, noise, alpha, true);
        let (loss, _) = stage1_loss(&images, &out);
        let value = optimise(&mut opt, &loss, r.clip, step)?;
        let codes_used = Some(out.zidxs.iter().map(|z| [0, 1].map(|k| distinct(&z.select(1, k)))).collect());
        state.step += 1;
        if state.step % r.save_every.max(1) == 0 || state.step == r.steps {
            save_run(&vs, &opt, dir, &state)?;
        }
        report(&StepReport { stage: 1, step: state.step, steps: r.steps, loss: value, lr, val: None, codes_used });
    }
    Ok(dir.join("last.pth"))
}

/// The validation set: `n` generated images from a stream disjoint from the training one.
pub fn validation_set(cfg: &TrainConfig) -> Vec<Sample> {
    let g = Generated { count: cfg.data.val, seed: cfg.data.seed.wrapping_add(VAL_SEED_OFFSET), size: IMAGE_SIZE, ..Default::default() };
    g.iter().collect()
}

/// Metrics of the model's masks on labelled samples (eval mode, no noise).
pub fn validate(encoder: &Encoder, samples: &[Sample], device: Device) -> Summary {
    let mut scores = vec![];
    for chunk in samples.chunks(8) {
        let batch = Tensor::stack(&chunk.iter().map(|s| image_tensor(&s.image)).collect::<Vec<_>>(), 0).to_device(device);
        let out = tch::no_grad(|| encoder.forward(&batch, false));
        let masks = out.masks.to_kind(Kind::Uint8).to_device(Device::Cpu);
        let size = masks.size()[1] as usize;
        for (i, s) in chunk.iter().enumerate() {
            let m: Vec<u8> = Vec::try_from(masks.get(i as i64).flatten(0, -1)).expect("u8 masks");
            scores.push(score(&m, &labels_in_model_view(&s.labels, size)));
        }
    }
    summarize(&scores)
}

/// Options of stage 2 beyond the config.
pub struct Stage2Options<'a> {
    /// The stage-1 checkpoint (its `m.encode.*` / `m.quant.*` become the frozen `m.mediat.*`).
    pub vae: &'a Path,
    /// An upstream (or msf-train) checkpoint whose tensors of matching name and shape start
    /// the model (e.g. the pretrained DINOv2 of a released SLATE-MSF).
    pub init_from: Option<&'a Path>,
    pub resume: bool,
}

/// Stage 2: SLATE-MSF or SlotDiffusion-MSF (`model.decoder`). Writes `dir/last.pth`,
/// `dir/best.pth` (highest validation FG-ARI) and `dir/untrained.pth` (the model before its first
/// step), all exportable by `msf-export`, and returns the best one's path.
pub fn stage2(cfg: &TrainConfig, dir: &Path, opts: &Stage2Options, mut report: impl FnMut(&StepReport)) -> Result<PathBuf, TrainError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(TrainError::Config(problems));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    tch::manual_seed(cfg.data.seed.wrapping_add(1) as i64);
    let r = &cfg.stage2;
    let vs = nn::VarStore::new(Device::cuda_if_available());
    let model = stage2_model(cfg, &vs);

    if let Some(init) = opts.init_from {
        let ck = read_checkpoint(init)?;
        let vars = vs.variables();
        let fits = |t: &TensorOut| vars.get(t.name).is_some_and(|v| v.size().iter().map(|&d| d as usize).eq(t.shape.iter().copied()));
        let taken: Vec<TensorOut> = checkpoint_tensors(&ck).filter(fits).collect();
        if taken.is_empty() {
            return Err(TrainError::Incompatible { path: init.to_path_buf(), reason: "no tensor of it fits this model (names and shapes differ)".into() });
        }
        load_weights(&vs, taken)?;
    }
    // The stage-1 VQ-VAE, renamed into the model (upstream's ckpt_map).
    let ck = read_checkpoint(opts.vae)?;
    let renamed: Vec<(String, &str)> = ck
        .data
        .keys()
        .filter_map(|k| {
            let to = k.strip_prefix("m.encode.").map(|r| format!("m.mediat.encode.{r}")).or_else(|| k.strip_prefix("m.quant.").map(|r| format!("m.mediat.quant.{r}")))?;
            Some((to, k.as_str()))
        })
        .collect();
    let rest = load_weights(&vs, renamed.iter().map(|(to, from)| TensorOut { name: to, shape: &ck.info[*from].shape, data: &ck.data[*from] }))
        .map_err(|e| TrainError::Incompatible { path: opts.vae.to_path_buf(), reason: format!("not a stage-1 checkpoint for this config ({e})") })?;
    let missing: Vec<String> = rest.into_iter().filter(|k| k.starts_with("m.mediat.")).collect();
    if !missing.is_empty() {
        return Err(TrainError::Incompatible { path: opts.vae.to_path_buf(), reason: format!("not a stage-1 checkpoint for this config (lacks {})", missing.join(", ")) });
    }

    let mut state = resume_from(&vs, dir, opts.resume)?;
    for (k, v) in vs.variables() {
        if k.starts_with("m.mediat.") || (r.freeze_backbone && k.starts_with("m.encode_backbone.")) {
            let _ = v.set_requires_grad(false);
        }
    }
    let mut opt = Adam::new(&vs, r.lr);
    resume_optimizer(&mut opt, dir, opts.resume)?;
    let warmup = (r.steps as f64 * r.warmup) as usize;
    let val = validation_set(cfg);
    if state.step == 0 {
        // The untrained model, kept so that it can be scored on any data (the floor training
        // must rise above).
        save_var_store(&vs, &dir.join("untrained.pth"))?;
    }
    if state.step == 0 && !val.is_empty() {
        let summary = validate(model.encoder(), &val, vs.device());
        report(&StepReport { stage: 2, step: 0, steps: r.steps, loss: f64::NAN, lr: 0.0, val: Some(summary), codes_used: None });
    }
    let mut loader = Loader::start(Source::new(cfg)?, r.batch, state.step, r.steps, cfg.data.loader_threads);
    while state.step < r.steps {
        let step = state.step;
        let images = loader.next_batch()?.to_device(vs.device());
        let lr = linear_cosine(step, warmup, r.steps, 0.0, r.lr, r.lr / 1e3);
        opt.lr = lr;
        let out = model.stage2(&images, true);
        let value = optimise(&mut opt, &out.loss, r.clip, step)?;
        state.step += 1;
        let done = state.step == r.steps;
        let summary = ((state.step % r.val_every.max(1) == 0 || done) && !val.is_empty()).then(|| validate(model.encoder(), &val, vs.device()));
        if let Some(fg) = summary.and_then(|s| s.fg_ari) {
            if state.best_fg_ari.is_none_or(|b| fg > b) {
                state.best_fg_ari = Some(fg);
                save_var_store(&vs, &dir.join("best.pth"))?;
            }
        }
        if state.step % r.save_every.max(1) == 0 || done {
            save_run(&vs, &opt, dir, &state)?;
        }
        report(&StepReport { stage: 2, step: state.step, steps: r.steps, loss: value, lr, val: summary, codes_used: None });
    }
    let best = dir.join("best.pth");
    Ok(if best.is_file() { best } else { dir.join("last.pth") })
}
