//! Validate a checkpoint against the key schema and infer the architecture from tensor shapes.
//!
//! Nothing about the model's size is assumed: dimensions come from the file (DINOv2 heads from
//! the fixed head dimension of 64), so the fixtures' tiny models and the full ViT-S/14 models go
//! through the same code.

use crate::checkpoint::{Checkpoint, TensorInfo};
use msf_models::keys;
use msf_models::{ModelConfig, ModelKind, ProjectConfig, SlotConfig, VitConfig};
use std::collections::{BTreeMap, BTreeSet};

/// Slot-attention iterations: a config value upstream (3 for every MSF model), not in the file.
pub const DEFAULT_ITERS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("this is a stage-1 MSF VQ-VAE checkpoint (it has `m.encode.*`/`m.quant.*` and no `m.encode_backbone.*`): it has no slot attention; export the stage-2 SLATE-MSF or SlotDiffusion-MSF checkpoint trained on top of it")]
    StageOneVae,
    #[error("not an MSF checkpoint: none of its {count} keys is an MSF key (expected `{}`…, e.g. `{}`); first keys: {first}", keys::PREFIX, keys::VIT_POS_EMBED)]
    NotMsf { count: usize, first: String },
    #[error("cannot tell SLATE-MSF from SlotDiffusion-MSF: neither `{}` nor `{}` is present", keys::SLATE_MARKER, keys::SLOTDIFFUSION_MARKER)]
    UnknownKind,
    #[error("{} key(s) missing from the checkpoint: {}", .0.len(), .0.join(", "))]
    MissingKeys(Vec<String>),
    #[error("`{key}` has shape {found:?}, expected {expected:?}")]
    WrongShape { key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("inconsistent architecture: {0}")]
    Inconsistent(String),
    #[error("`{key}` holds {count} non-finite value(s) (NaN/Inf): refusing to export a broken model")]
    NonFinite { key: String, count: usize },
    #[error("unexpected key(s) in the checkpoint (refused by --strict; without it they are ignored with a warning): {}", .0.join(", "))]
    Unexpected(Vec<String>),
}

/// A validated checkpoint: architecture plus the inference weights by upstream key.
#[derive(Debug)]
pub struct ModelSpec {
    pub config: ModelConfig,
    pub weights: BTreeMap<String, Vec<f32>>,
    pub source_sha256: String,
    /// Keys that are neither inference nor known training-only keys (reported, not fatal by default).
    pub unexpected: Vec<String>,
    /// Parameters in the whole file, and in the exported inference path.
    pub file_params: usize,
    pub inference_params: usize,
}

/// Which keys the exporter needs the data of (the rest is only shape-checked).
pub fn wants_data(key: &str) -> bool {
    key.starts_with(keys::VIT_PREFIX)
        || key.starts_with("m.encode_project.")
        || key.starts_with("m.aggregat.")
        || key == keys::SLOTS_MEAN
}

/// Detect the model kind from marker keys; refuse stage-1 VAE files and foreign files.
pub fn detect_kind(info: &BTreeMap<String, TensorInfo>) -> Result<ModelKind, SpecError> {
    let has_prefix = |p: &str| info.keys().any(|k| k.starts_with(p));
    if !has_prefix(keys::VIT_PREFIX) {
        if keys::VAE_MARKERS.iter().all(|p| has_prefix(p)) {
            return Err(SpecError::StageOneVae);
        }
        if !has_prefix(keys::PREFIX) {
            let first: Vec<&str> = info.keys().take(3).map(|s| s.as_str()).collect();
            return Err(SpecError::NotMsf { count: info.len(), first: first.join(", ") });
        }
    }
    if info.contains_key(keys::SLATE_MARKER) {
        Ok(ModelKind::SlateMsf)
    } else if info.contains_key(keys::SLOTDIFFUSION_MARKER) {
        Ok(ModelKind::SlotDiffusionMsf)
    } else if has_prefix(keys::VIT_PREFIX) {
        Err(SpecError::UnknownKind)
    } else {
        Err(SpecError::MissingKeys(vec![keys::VIT_POS_EMBED.to_string()]))
    }
}

fn shape<'a>(info: &'a BTreeMap<String, TensorInfo>, key: &str) -> Result<&'a [usize], SpecError> {
    info.get(key).map(|t| t.shape.as_slice()).ok_or_else(|| SpecError::MissingKeys(vec![key.to_string()]))
}

fn dim(info: &BTreeMap<String, TensorInfo>, key: &str, rank: usize, axis: usize) -> Result<usize, SpecError> {
    let s = shape(info, key)?;
    if s.len() != rank {
        return Err(SpecError::Inconsistent(format!("`{key}` has rank {} ({s:?}), expected rank {rank}", s.len())));
    }
    Ok(s[axis])
}

/// Infer the architecture from shapes.
pub fn infer_config(info: &BTreeMap<String, TensorInfo>, kind: ModelKind, iters: usize) -> Result<ModelConfig, SpecError> {
    let embed_dim = dim(info, keys::VIT_POS_EMBED, 3, 2)?;
    let tokens = dim(info, keys::VIT_POS_EMBED, 3, 1)?.saturating_sub(1);
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid == 0 || grid * grid != tokens {
        return Err(SpecError::Inconsistent(format!("pos_embed has {tokens} patch tokens, not a square grid")));
    }
    let patch_size = dim(info, keys::VIT_PATCH_WEIGHT, 4, 2)?;
    if embed_dim % VitConfig::HEAD_DIM != 0 {
        return Err(SpecError::Inconsistent(format!(
            "ViT embed dim {embed_dim} is not a multiple of the DINOv2 head dim {}",
            VitConfig::HEAD_DIM
        )));
    }
    let blocks: BTreeSet<usize> = info
        .keys()
        .filter_map(|k| k.strip_prefix(keys::VIT_BLOCKS_PREFIX))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    let depth = blocks.len();
    if depth == 0 {
        return Err(SpecError::MissingKeys(vec![keys::vit_block(0, "norm1.weight")]));
    }
    if let Some(gap) = (0..depth).find(|i| !blocks.contains(i)) {
        return Err(SpecError::MissingKeys(vec![keys::vit_block(gap, "norm1.weight")]));
    }
    // Layer widths come from the biases: a bias cannot be transposed, so a transposed or
    // mis-shaped weight is then reported against the width the rest of the layer agrees on.
    let mlp_dim = dim(info, &keys::vit_block(0, "mlp.fc1.bias"), 1, 0)?;
    let hidden_dim = dim(info, keys::PROJECT_FC1_BIAS, 1, 0)?;
    let out_dim = dim(info, keys::PROJECT_FC2_BIAS, 1, 0)?;
    let num_slots = dim(info, keys::SLOTS_MEAN, 3, 1)?;
    let slot_dim = dim(info, keys::SLOTS_MEAN, 3, 2)?;
    let ffn_dim = dim(info, keys::SA_FFN1_BIAS, 1, 0)?;
    if out_dim != slot_dim {
        return Err(SpecError::Inconsistent(format!(
            "projection output {out_dim} differs from slot dim {slot_dim} (kv_dim ≠ embed_dim is not an MSF configuration)"
        )));
    }
    Ok(ModelConfig {
        kind,
        vit: VitConfig { embed_dim, depth, num_heads: embed_dim / VitConfig::HEAD_DIM, mlp_dim, patch_size, grid, ln_eps: 1e-6 },
        project: ProjectConfig { in_dim: embed_dim, hidden_dim, out_dim, ln_eps: 1e-5 },
        slots: SlotConfig { num_slots, slot_dim, ffn_dim, iters, attn_eps: 1e-5, ln_eps: 1e-5 },
    })
}

/// Expected shape of every inference key under `c`.
pub fn expected_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (e, p, g) = (c.vit.embed_dim, c.vit.patch_size, c.vit.grid);
    let (h, o) = (c.project.hidden_dim, c.project.out_dim);
    let (k, d, f) = (c.slots.num_slots, c.slots.slot_dim, c.slots.ffn_dim);
    let mut v: Vec<(String, Vec<usize>)> = vec![
        (keys::VIT_CLS_TOKEN.into(), vec![1, 1, e]),
        (keys::VIT_POS_EMBED.into(), vec![1, g * g + 1, e]),
        (keys::VIT_PATCH_WEIGHT.into(), vec![e, 3, p, p]),
        (keys::VIT_PATCH_BIAS.into(), vec![e]),
        (keys::VIT_NORM_WEIGHT.into(), vec![e]),
        (keys::VIT_NORM_BIAS.into(), vec![e]),
        (keys::PROJECT_LN_WEIGHT.into(), vec![e]),
        (keys::PROJECT_LN_BIAS.into(), vec![e]),
        (keys::PROJECT_FC1_WEIGHT.into(), vec![h, e]),
        (keys::PROJECT_FC1_BIAS.into(), vec![h]),
        (keys::PROJECT_FC2_WEIGHT.into(), vec![o, h]),
        (keys::PROJECT_FC2_BIAS.into(), vec![o]),
        (keys::SLOTS_MEAN.into(), vec![1, k, d]),
        (keys::SA_NORM_Q_WEIGHT.into(), vec![d]),
        (keys::SA_NORM_Q_BIAS.into(), vec![d]),
        (keys::SA_PROJ_Q.into(), vec![d, d]),
        (keys::SA_NORM_KV_WEIGHT.into(), vec![o]),
        (keys::SA_NORM_KV_BIAS.into(), vec![o]),
        (keys::SA_PROJ_K.into(), vec![d, o]),
        (keys::SA_PROJ_V.into(), vec![d, o]),
        (keys::SA_GRU_W_IH.into(), vec![3 * d, d]),
        (keys::SA_GRU_W_HH.into(), vec![3 * d, d]),
        (keys::SA_GRU_B_IH.into(), vec![3 * d]),
        (keys::SA_GRU_B_HH.into(), vec![3 * d]),
        (keys::SA_NORM2_WEIGHT.into(), vec![d]),
        (keys::SA_NORM2_BIAS.into(), vec![d]),
        (keys::SA_FFN1_WEIGHT.into(), vec![f, d]),
        (keys::SA_FFN1_BIAS.into(), vec![f]),
        (keys::SA_FFN2_WEIGHT.into(), vec![d, f]),
        (keys::SA_FFN2_BIAS.into(), vec![d]),
    ];
    let m = c.vit.mlp_dim;
    for i in 0..c.vit.depth {
        let block: [(&str, Vec<usize>); 14] = [
            ("norm1.weight", vec![e]),
            ("norm1.bias", vec![e]),
            ("attn.qkv.weight", vec![3 * e, e]),
            ("attn.qkv.bias", vec![3 * e]),
            ("attn.proj.weight", vec![e, e]),
            ("attn.proj.bias", vec![e]),
            ("ls1.gamma", vec![e]),
            ("norm2.weight", vec![e]),
            ("norm2.bias", vec![e]),
            ("mlp.fc1.weight", vec![m, e]),
            ("mlp.fc1.bias", vec![m]),
            ("mlp.fc2.weight", vec![e, m]),
            ("mlp.fc2.bias", vec![e]),
            ("ls2.gamma", vec![e]),
        ];
        debug_assert_eq!(block.len(), keys::VIT_BLOCK_PARAMS.len());
        v.extend(block.into_iter().map(|(p, s)| (keys::vit_block(i, p), s)));
    }
    v
}

/// Options that change validation.
#[derive(Clone, Debug)]
pub struct SpecOptions {
    pub iters: usize,
    /// Treat unknown keys as an error instead of a warning.
    pub strict: bool,
}

impl Default for SpecOptions {
    fn default() -> Self {
        SpecOptions { iters: DEFAULT_ITERS, strict: false }
    }
}

/// Validate `ckpt` and take its inference weights (moved out of the checkpoint).
pub fn build_spec(mut ckpt: Checkpoint, opts: &SpecOptions) -> Result<ModelSpec, SpecError> {
    let kind = detect_kind(&ckpt.info)?;
    // Report every missing inference key at once, before any shape reasoning.
    let blocks_probe = infer_config(&ckpt.info, kind, opts.iters);
    let depth = match &blocks_probe {
        Ok(c) => c.vit.depth,
        Err(_) => ckpt
            .info
            .keys()
            .filter_map(|k| k.strip_prefix(keys::VIT_BLOCKS_PREFIX)?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(1, |m| m + 1),
    };
    let missing: Vec<String> =
        keys::inference_keys(depth).into_iter().filter(|k| !ckpt.info.contains_key(k)).collect();
    if !missing.is_empty() {
        return Err(SpecError::MissingKeys(missing));
    }
    let config = blocks_probe?;
    let expected = expected_shapes(&config);
    for (key, shape) in &expected {
        let found = &ckpt.info[key].shape;
        if found != shape {
            return Err(SpecError::WrongShape { key: key.clone(), expected: shape.clone(), found: found.clone() });
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    let unexpected: Vec<String> = ckpt
        .info
        .keys()
        .filter(|k| !known.contains(k.as_str()) && !keys::is_training_only(keys::canonical(k)))
        .cloned()
        .collect();
    if opts.strict && !unexpected.is_empty() {
        return Err(SpecError::Unexpected(unexpected));
    }
    let mut weights = BTreeMap::new();
    for (key, _) in &expected {
        let data = ckpt.data.remove(key).ok_or_else(|| SpecError::MissingKeys(vec![key.clone()]))?;
        let bad = data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(SpecError::NonFinite { key: key.clone(), count: bad });
        }
        weights.insert(key.clone(), data);
    }
    let numel = |t: &TensorInfo| t.shape.iter().product::<usize>();
    Ok(ModelSpec {
        file_params: ckpt.info.values().map(numel).sum(),
        inference_params: weights.values().map(Vec::len).sum(),
        config,
        weights,
        source_sha256: ckpt.sha256,
        unexpected,
    })
}
