//! Load a written model back with the runtime's tract backend (the one users run), run it, and
//! optionally compare with reference outputs.

use msf_models::interface::{ModelMetadata, INPUT_IMAGE, OUTPUT_ATTN, OUTPUT_MASKS, OUTPUT_SLOTS};
use msf_runtime::session::{self, BackendKind, SessionOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("tract could not load {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("tract could not run the model: {0}")]
    Run(String),
    #[error("output `{name}` has {found} values, expected shape {expected:?}")]
    Shape { name: &'static str, expected: Vec<usize>, found: usize },
    #[error("output `{0}` has non-finite values")]
    NonFinite(&'static str),
    #[error("reference file {path}: {reason}")]
    Reference { path: PathBuf, reason: String },
    #[error("outputs differ from the reference: {0}")]
    Mismatch(String),
}

/// Outputs of one run.
pub struct Outputs {
    pub slots: Vec<f32>,
    pub attn: Vec<f32>,
    pub masks: Vec<i64>,
}

/// Comparison against a reference, worst case over the batch.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    pub slots_max_abs: f32,
    pub attn_max_abs: f32,
    pub mask_agreement: f64,
}

/// Run the model at `path` on `input` (B,3,S,S) with the runtime's tract backend (which checks the
/// file against the MSF contract first), and check output sizes, finiteness and mask values.
pub fn run_tract(path: &Path, meta: &ModelMetadata, input: &[f32], batch: usize) -> Result<Outputs, VerifyError> {
    let opts = SessionOptions { backend: BackendKind::Tract, ..Default::default() };
    let reason = |e: msf_runtime::Error| msf_runtime::error::one_line(&e);
    let backend = session::load(path, &opts).map_err(|e| VerifyError::Load { path: path.to_path_buf(), reason: reason(e) })?;
    let out = backend.run(input, batch, None).map_err(|e| VerifyError::Run(reason(e)))?;
    let (k, d) = (meta.config.slots.num_slots, meta.config.slots.slot_dim);
    let (g, m) = (meta.config.vit.grid, meta.preprocess.image_size);
    for (name, found, expected) in [
        (OUTPUT_SLOTS, out.slots.len(), vec![batch, k, d]),
        (OUTPUT_ATTN, out.attn.len(), vec![batch, k, g, g]),
        (OUTPUT_MASKS, out.masks.len(), vec![batch, m, m]),
    ] {
        if found != expected.iter().product::<usize>() {
            return Err(VerifyError::Shape { name, expected, found });
        }
    }
    if out.slots.iter().any(|v| !v.is_finite()) {
        return Err(VerifyError::NonFinite(OUTPUT_SLOTS));
    }
    if out.attn.iter().any(|v| !v.is_finite()) {
        return Err(VerifyError::NonFinite(OUTPUT_ATTN));
    }
    if out.masks.iter().any(|&v| v < 0 || v >= k as i64) {
        return Err(VerifyError::Mismatch(format!("`{OUTPUT_MASKS}` holds values outside 0..{k}")));
    }
    Ok(Outputs { slots: out.slots, attn: out.attn, masks: out.masks })
}

/// A deterministic, image-like normalised input (smooth gradients plus texture), no randomness crate.
pub fn sample_input(batch: usize, size: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(batch * 3 * size * size);
    for b in 0..batch {
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
                    let blob = if ((fx - 0.3).powi(2) + (fy - 0.6).powi(2)) < 0.04 { 1.5 } else { 0.0 };
                    let val = (fx * 3.0 + c as f32 + b as f32).sin() + (fy * 5.0 - c as f32).cos() * 0.5 + blob - 0.2 * c as f32;
                    v.push(val);
                }
            }
        }
    }
    v
}

/// Reference arrays from an `.npz` (`input`, `slots`, `attn`, `masks`).
pub struct Reference {
    pub input: Vec<f32>,
    pub batch: usize,
    pub slots: Vec<f32>,
    pub attn: Vec<f32>,
    pub masks: Vec<i64>,
}

/// Most elements of one reference array (256 MiB of float32): far above any real reference, and
/// checked from the `.npy` header before the array is allocated.
pub const MAX_REFERENCE_ELEMENTS: u64 = 1 << 26;

/// The shape an `.npy` header declares (`{'descr': …, 'shape': (a, b), …}`), from its first bytes.
fn npy_shape(head: &[u8]) -> Option<Vec<u64>> {
    if head.len() < 10 || &head[..6] != b"\x93NUMPY" {
        return None;
    }
    let (len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        _ => (u32::from_le_bytes(head.get(8..12)?.try_into().ok()?) as usize, 12),
    };
    let dict = std::str::from_utf8(head.get(start..start + len)?).ok()?;
    let shape = &dict[dict.find("'shape'")?..];
    let inner = &shape[shape.find('(')? + 1..shape.find(')')?];
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect()
}

/// Refuse any array of the archive whose header declares more than [`MAX_REFERENCE_ELEMENTS`].
fn check_reference_sizes(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().to_string();
        let mut head = Vec::new();
        (&mut entry).take(64 << 10).read_to_end(&mut head).map_err(|e| format!("{name}: {e}"))?;
        let shape = npy_shape(&head).ok_or_else(|| format!("{name}: not an .npy array"))?;
        let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if n.is_none_or(|n| n > MAX_REFERENCE_ELEMENTS) {
            return Err(format!("{name}: shape {shape:?} is over {MAX_REFERENCE_ELEMENTS} elements"));
        }
    }
    Ok(())
}

pub fn load_reference(path: &Path) -> Result<Reference, VerifyError> {
    use ndarray_npy::NpzReader;
    let err = |reason: String| VerifyError::Reference { path: path.to_path_buf(), reason };
    check_reference_sizes(path).map_err(err)?;
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut npz = NpzReader::new(file).map_err(|e| err(e.to_string()))?;
    let names = npz.names().map_err(|e| err(e.to_string()))?;
    let find = |n: &str| names.iter().find(|x| x.as_str() == n || x.as_str() == format!("{n}.npy")).cloned().ok_or_else(|| err(format!("no array `{n}` (has: {})", names.join(", "))));
    let input: ndarray::ArrayD<f32> = npz.by_name(&find("input")?).map_err(|e| err(format!("input: {e}")))?;
    let batch = *input.shape().first().ok_or_else(|| err("`input` is a scalar".into()))?;
    let slots: ndarray::ArrayD<f32> = npz.by_name(&find("slots")?).map_err(|e| err(format!("slots: {e}")))?;
    let attn: ndarray::ArrayD<f32> = npz.by_name(&find("attn")?).map_err(|e| err(format!("attn: {e}")))?;
    let mname = find("masks")?;
    let masks: Vec<i64> = match npz.by_name::<ndarray::OwnedRepr<i64>, ndarray::IxDyn>(&mname) {
        Ok(a) => a.iter().copied().collect(),
        Err(_) => {
            let a: ndarray::ArrayD<u8> = npz.by_name(&mname).map_err(|e| err(format!("masks (int64 or uint8): {e}")))?;
            a.iter().map(|&v| v as i64).collect()
        }
    };
    Ok(Reference {
        input: input.iter().copied().collect(),
        batch,
        slots: slots.iter().copied().collect(),
        attn: attn.iter().copied().collect(),
        masks,
    })
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn compare(out: &Outputs, r: &Reference) -> Result<Diff, VerifyError> {
    for (name, a, b) in [(OUTPUT_SLOTS, out.slots.len(), r.slots.len()), (OUTPUT_ATTN, out.attn.len(), r.attn.len()), (OUTPUT_MASKS, out.masks.len(), r.masks.len())] {
        if a != b {
            return Err(VerifyError::Mismatch(format!("`{name}` has {a} values, the reference {b}")));
        }
    }
    let same = out.masks.iter().zip(&r.masks).filter(|(a, b)| a == b).count();
    Ok(Diff {
        slots_max_abs: max_abs(&out.slots, &r.slots),
        attn_max_abs: max_abs(&out.attn, &r.attn),
        mask_agreement: same as f64 / out.masks.len().max(1) as f64,
    })
}

/// Input name for documentation in messages.
pub const IMAGE: &str = INPUT_IMAGE;
