//! The public entry point: load a model once, decompose frames into slots and masks.
//!
//! ```no_run
//! use msf_runtime::{Decomposer, ImageView, PixelFormat};
//! let dec = Decomposer::builder().threads(2).build("slate.onnx")?;
//! let img = msf_runtime::load_image("frame.png".as_ref(), &Default::default())?;
//! let d = dec.decompose(&ImageView::from_rgb_image(&img)?)?;
//! println!("{} slots, slot 0 covers {} pixels", d.num_slots, d.areas()[0]);
//! # Ok::<(), msf_runtime::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::model::ModelInfo;
use crate::preprocess::{ImageView, Preprocessor};
use crate::session::{self, Backend, BackendKind, Provider, RawOutputs, SessionOptions};
use std::path::Path;
use std::sync::Mutex;

/// Where the model's square input came from in the original frame (centre crop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub left: u32,
    pub top: u32,
    pub size: u32,
}

impl CropBox {
    pub fn center_square(width: u32, height: u32) -> Self {
        let size = width.min(height);
        CropBox { left: (width - size) / 2, top: (height - size) / 2, size }
    }
}

/// Axis-aligned box in mask pixels, inclusive-exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// One frame's objects: slot vectors, soft attention and the hard mask (slot index per pixel).
#[derive(Clone, Debug)]
pub struct Decomposition {
    pub num_slots: usize,
    pub slot_dim: usize,
    pub grid: usize,
    /// Side of [`Self::mask`] (the model's 256×256 view of the centre crop).
    pub mask_size: usize,
    /// (K, D) row-major.
    pub slots: Vec<f32>,
    /// (K, G, G) softmax-over-slots attention of the last iteration.
    pub attn: Vec<f32>,
    /// (M, M) slot index per pixel of the centre crop.
    pub mask: Vec<u8>,
    pub frame_width: u32,
    pub frame_height: u32,
    pub crop: CropBox,
}

/// Value used outside the centre crop by [`Decomposition::mask_in_frame`] (DAVIS "void").
pub const VOID: u8 = 255;

impl Decomposition {
    pub fn slot(&self, k: usize) -> &[f32] {
        &self.slots[k * self.slot_dim..(k + 1) * self.slot_dim]
    }

    /// Pixels of the mask assigned to each slot.
    pub fn areas(&self) -> Vec<usize> {
        let mut a = vec![0; self.num_slots];
        for &m in &self.mask {
            a[m as usize] += 1;
        }
        a
    }

    /// Bounding box of each slot's pixels in the mask (None for empty slots).
    pub fn bboxes(&self) -> Vec<Option<BBox>> {
        let m = self.mask_size;
        let mut b: Vec<Option<BBox>> = vec![None; self.num_slots];
        for (i, &s) in self.mask.iter().enumerate() {
            let (x, y) = ((i % m) as u32, (i / m) as u32);
            let e = b[s as usize].get_or_insert(BBox { x0: x, y0: y, x1: x + 1, y1: y + 1 });
            e.x0 = e.x0.min(x);
            e.y0 = e.y0.min(y);
            e.x1 = e.x1.max(x + 1);
            e.y1 = e.y1.max(y + 1);
        }
        b
    }

    /// The mask at the original frame's resolution (nearest neighbour inside the centre crop,
    /// [`VOID`] outside it), row-major `frame_height × frame_width`.
    pub fn mask_in_frame(&self) -> Vec<u8> {
        let (w, h) = (self.frame_width as usize, self.frame_height as usize);
        let c = self.crop;
        let m = self.mask_size;
        let mut out = vec![VOID; w * h];
        let map: Vec<usize> = (0..c.size as usize).map(|i| ((2 * i + 1) * m / (2 * c.size as usize)).min(m - 1)).collect();
        for (yy, my) in map.iter().enumerate() {
            let row = &mut out[(c.top as usize + yy) * w + c.left as usize..][..c.size as usize];
            for (o, mx) in row.iter_mut().zip(&map) {
                *o = self.mask[my * m + mx];
            }
        }
        out
    }

    /// Reorder slots (and relabel the mask) so that new slot `i` is old slot `order[i]`.
    pub fn permute(&mut self, order: &[usize]) {
        let (k, d, g2) = (self.num_slots, self.slot_dim, self.grid * self.grid);
        assert_eq!(order.len(), k, "permutation length");
        let mut inverse = vec![0u8; k];
        for (new, &old) in order.iter().enumerate() {
            inverse[old] = new as u8;
        }
        let slots = self.slots.clone();
        let attn = self.attn.clone();
        for (new, &old) in order.iter().enumerate() {
            self.slots[new * d..(new + 1) * d].copy_from_slice(&slots[old * d..(old + 1) * d]);
            self.attn[new * g2..(new + 1) * g2].copy_from_slice(&attn[old * g2..(old + 1) * g2]);
        }
        for m in &mut self.mask {
            *m = inverse[*m as usize];
        }
    }
}

/// Builder for [`Decomposer`], in the style of `ort`'s session builder.
#[derive(Clone, Debug, Default)]
pub struct DecomposerBuilder {
    opts: SessionOptions,
}

impl DecomposerBuilder {
    pub fn backend(mut self, b: BackendKind) -> Self {
        self.opts.backend = b;
        self
    }
    pub fn threads(mut self, n: usize) -> Self {
        self.opts.threads = Some(n);
        self
    }
    pub fn provider(mut self, p: Provider) -> Self {
        self.opts.provider = p;
        self
    }
    /// Run on the CPU when the requested provider cannot be used (reported by [`Decomposer::provider`]).
    pub fn allow_fallback(mut self, yes: bool) -> Self {
        self.opts.allow_fallback = yes;
        self
    }
    /// Preprocessing for graphs without MSF metadata (e.g. a plain `torch.onnx.export`).
    pub fn preprocess(mut self, p: msf_models::Preprocess) -> Self {
        self.opts.preprocess_override = Some(p);
        self
    }
    pub fn build(self, path: impl AsRef<Path>) -> Result<Decomposer> {
        let backend = session::load(path.as_ref(), &self.opts)?;
        Ok(Decomposer { backend, pool: Mutex::new(Vec::new()) })
    }
}

/// A loaded model. `Send + Sync`: share it with `Arc` across threads and streams.
pub struct Decomposer {
    backend: Box<dyn Backend>,
    /// Reusable preprocessors (scratch buffers), one per concurrent caller.
    pool: Mutex<Vec<Preprocessor>>,
}

impl Decomposer {
    pub fn builder() -> DecomposerBuilder {
        DecomposerBuilder::default()
    }

    pub fn info(&self) -> &ModelInfo {
        self.backend.info()
    }
    /// `tract` or `onnxruntime`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
    /// Execution provider actually used.
    pub fn provider(&self) -> &str {
        self.backend.provider()
    }
    /// Learned initial slots (1,K,D), when the graph has the `slots_init` input.
    pub fn default_slots(&self) -> Option<&[f32]> {
        self.backend.default_slots()
    }

    fn with_preprocessor<T>(&self, f: impl FnOnce(&mut Preprocessor) -> Result<T>) -> Result<T> {
        let taken = self.pool.lock().expect("preprocessor pool").pop();
        let mut pre = match taken {
            Some(p) => p,
            None => Preprocessor::new(&self.info().preprocess)?,
        };
        let r = f(&mut pre);
        self.pool.lock().expect("preprocessor pool").push(pre);
        r
    }

    /// Preprocess frames into one (B,3,S,S) batch.
    pub fn preprocess_batch(&self, views: &[ImageView]) -> Result<Vec<f32>> {
        self.with_preprocessor(|pre| {
            let n = pre.output_len();
            let mut input = vec![0.0; n * views.len()];
            for (v, out) in views.iter().zip(input.chunks_exact_mut(n)) {
                pre.run(v, out)?;
            }
            Ok(input)
        })
    }

    pub fn decompose(&self, view: &ImageView) -> Result<Decomposition> {
        Ok(self.decompose_batch_with_slots(std::slice::from_ref(view), None)?.remove(0))
    }

    pub fn decompose_batch(&self, views: &[ImageView]) -> Result<Vec<Decomposition>> {
        self.decompose_batch_with_slots(views, None)
    }

    /// Decompose with explicit initial slots (B·K·D values), e.g. the previous frame's slots.
    /// Needs a model exported with `--slots-in`.
    pub fn decompose_batch_with_slots(&self, views: &[ImageView], slots_init: Option<&[f32]>) -> Result<Vec<Decomposition>> {
        if views.is_empty() {
            return Ok(vec![]);
        }
        let info = self.info();
        if let Some(s) = slots_init {
            if !info.slots_input {
                return Err(Error::NoSlotsInput);
            }
            let want = views.len() * info.num_slots * info.slot_dim;
            if s.len() != want {
                return Err(Error::SlotsShape { got: s.len(), expected: want });
            }
        }
        let input = self.preprocess_batch(views)?;
        let raw = self.backend.run(&input, views.len(), slots_init)?;
        split_outputs(info, raw, views)
    }
}

fn split_outputs(info: &ModelInfo, raw: RawOutputs, views: &[ImageView]) -> Result<Vec<Decomposition>> {
    let (k, d, g, m) = (info.num_slots, info.slot_dim, info.grid, info.mask_size);
    let b = views.len();
    let bad = |what: &str, got: usize, want: usize| Error::Inference { backend: "output", reason: format!("`{what}` has {got} values, expected {want}") };
    if raw.slots.len() != b * k * d {
        return Err(bad("slots", raw.slots.len(), b * k * d));
    }
    if raw.attn.len() != b * k * g * g {
        return Err(bad("attn", raw.attn.len(), b * k * g * g));
    }
    if raw.masks.len() != b * m * m {
        return Err(bad("masks", raw.masks.len(), b * m * m));
    }
    Ok(views
        .iter()
        .enumerate()
        .map(|(i, v)| Decomposition {
            num_slots: k,
            slot_dim: d,
            grid: g,
            mask_size: m,
            slots: raw.slots[i * k * d..(i + 1) * k * d].to_vec(),
            attn: raw.attn[i * k * g * g..(i + 1) * k * g * g].to_vec(),
            mask: raw.masks[i * m * m..(i + 1) * m * m].iter().map(|&x| x.clamp(0, k as i64 - 1) as u8).collect(),
            frame_width: v.width(),
            frame_height: v.height(),
            crop: CropBox::center_square(v.width(), v.height()),
        })
        .collect())
}
