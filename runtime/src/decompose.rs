//! The public entry point: load a model once, decompose frames into slots and masks.
//!
//! ```
//! # let model = msf_tests::FixtureModel::slate(false); // a real export of an upstream checkpoint
//! use msf_runtime::{load_image, Decomposer, ImageView};
//! # let photo = msf_tests::fixture_image("motorcycle_left.png");
//! let dec = Decomposer::builder().threads(2).build(&model)?; // e.g. "slate.onnx" from msf-export
//! let img = load_image(&photo, &Default::default())?;       // any png/jpg/…, EXIF-rotated
//! let d = dec.decompose(&ImageView::from_rgb_image(&img)?)?;
//! println!("{} slots of {} values; slot 0 covers {} mask pixels", d.num_slots, d.slot_dim, d.areas()[0]);
//! assert_eq!(d.areas().iter().sum::<usize>(), d.mask_size * d.mask_size);
//! # Ok::<(), msf_runtime::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::fit::{Fit, Placement};
use crate::model::ModelInfo;
use crate::preprocess::Preprocessor;
use crate::view::ImageView;
use crate::session::{self, Backend, BackendKind, Provider, RawOutputs, SessionOptions};
use std::path::Path;
use std::sync::Mutex;

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
    /// Side of [`Self::mask`] (the model's 256×256 view).
    pub mask_size: usize,
    /// (K, D) row-major.
    pub slots: Vec<f32>,
    /// (K, G, G) softmax-over-slots attention of the last iteration.
    pub attn: Vec<f32>,
    /// (M, M) slot index per pixel of the model's view ([`Self::placement`]).
    pub mask: Vec<u8>,
    pub frame_width: u32,
    pub frame_height: u32,
    /// Where [`Self::mask`] lies in the frame (see [`crate::fit`]).
    pub placement: Placement,
    /// With [`Fit::Tiles`]: the merged labels at frame resolution (`mask` is then a stretched
    /// overview of them); `None` when `mask` is the one model view.
    pub frame_labels: Option<Vec<u8>>,
}

/// Value used where no view covers the frame (outside the centre crop of [`Fit::Crop`]) by
/// [`Decomposition::mask_in_frame`] (DAVIS "void").
pub const VOID: u8 = 255;

impl Decomposition {
    /// Slot `k`'s vector (`slot_dim` values).
    ///
    /// ```
    /// # let model = msf_tests::FixtureModel::slate(false);
    /// # let dec = msf_runtime::Decomposer::builder().build(&model)?;
    /// # let buf = vec![90u8; 320 * 240 * 3];
    /// # let frame = msf_runtime::ImageView::packed(&buf, 320, 240, msf_runtime::PixelFormat::Rgb8)?;
    /// let d = dec.decompose(&frame)?;
    /// let norms: Vec<f32> = (0..d.num_slots).map(|k| d.slot(k).iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
    /// assert_eq!(norms.len(), d.num_slots);
    /// # Ok::<(), msf_runtime::Error>(())
    /// ```
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
    ///
    /// ```
    /// # let model = msf_tests::FixtureModel::slate(false);
    /// # let dec = msf_runtime::Decomposer::builder().build(&model)?;
    /// # let img = msf_runtime::load_image(&msf_tests::fixture_image("camera.png"), &Default::default())?;
    /// let d = dec.decompose(&msf_runtime::ImageView::from_rgb_image(&img)?)?;
    /// for (k, (area, bbox)) in d.areas().iter().zip(d.bboxes()).enumerate() {
    ///     match bbox {
    ///         Some(b) => println!("slot {k}: {area} px in x {}..{}, y {}..{}", b.x0, b.x1, b.y0, b.y1),
    ///         None => assert_eq!(*area, 0, "only empty slots have no box"),
    ///     }
    /// }
    /// # Ok::<(), msf_runtime::Error>(())
    /// ```
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

    /// The mask at the original frame's resolution, row-major `frame_height × frame_width`:
    /// nearest neighbour over the placement, [`VOID`] where no view covers the frame (outside the
    /// centre crop of [`Fit::Crop`]).
    ///
    /// ```
    /// # let model = msf_tests::FixtureModel::slate(false);
    /// use msf_runtime::{fit::Fit, Decomposer, ImageView, PixelFormat};
    /// let buf = vec![128u8; 640 * 480 * 3];
    /// let frame = ImageView::packed(&buf, 640, 480, PixelFormat::Bgr8)?;
    /// let d = Decomposer::builder().fit(Fit::Crop).build(&model)?.decompose(&frame)?;
    /// let m = d.mask_in_frame();
    /// assert_eq!(m.len(), 640 * 480);
    /// assert_eq!(m[0], msf_runtime::decompose::VOID); // left of the centred 480×480 crop
    /// assert!((m[240 * 640 + 320] as usize) < d.num_slots);
    /// // The other fits cover the whole frame.
    /// for fit in [Fit::Stretch, Fit::Pad, Fit::Tiles] {
    ///     let d = Decomposer::builder().fit(fit).build(&model)?.decompose(&frame)?;
    ///     assert!(d.covers_frame() && d.mask_in_frame().iter().all(|&s| (s as usize) < d.num_slots));
    /// }
    /// # Ok::<(), msf_runtime::Error>(())
    /// ```
    pub fn mask_in_frame(&self) -> Vec<u8> {
        if let Some(l) = &self.frame_labels {
            return l.clone();
        }
        let (w, h) = (self.frame_width as usize, self.frame_height as usize);
        let mut out = vec![VOID; w * h];
        self.placement.paint(&self.mask, self.mask_size, &mut out, w);
        out
    }

    /// Whether every frame pixel has a slot ([`Self::mask_in_frame`] has no [`VOID`]).
    pub fn covers_frame(&self) -> bool {
        let f = self.placement.frame;
        self.frame_labels.is_some() || (f.x, f.y, f.width, f.height) == (0, 0, self.frame_width, self.frame_height)
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
        for m in self.frame_labels.iter_mut().flatten() {
            *m = inverse[*m as usize];
        }
    }
}

/// Builder for [`Decomposer`], in the style of `ort`'s session builder.
///
/// ```
/// # let model = msf_tests::FixtureModel::slate(false);
/// use msf_runtime::{BackendKind, Decomposer};
/// let dec = Decomposer::builder()
///     .backend(BackendKind::Tract) // pure Rust; `Ort` with the `ort` feature for CUDA/TensorRT
///     .threads(1)                  // kernel threads per call
///     .build(&model)?;
/// assert_eq!(dec.backend_name(), "tract");
/// println!("{} slots of {} on a {}×{} grid", dec.info().num_slots, dec.info().slot_dim, dec.info().grid, dec.info().grid);
/// # Ok::<(), msf_runtime::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct DecomposerBuilder {
    opts: SessionOptions,
    fit: Fit,
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
    /// How many threads will call the decomposer at the same time (e.g. one per camera, or
    /// `msf-run --jobs`). With onnxruntime this many sessions are kept so the calls run in
    /// parallel; tract needs nothing extra. Pair it with `threads(cores / n)`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.opts.concurrency = n;
        self
    }
    /// Whether a GPU execution provider is asked for (one call at a time suits it best).
    pub fn wants_gpu(&self) -> bool {
        self.opts.provider != Provider::Cpu
    }
    /// Run on the CPU when the requested provider cannot be used (reported by [`Decomposer::provider`]).
    pub fn allow_fallback(mut self, yes: bool) -> Self {
        self.opts.allow_fallback = yes;
        self
    }
    /// Bounds on the graph: nodes, and bytes of any one tensor at the batch size it runs with
    /// (see [`msf_models::Limits`]; the defaults refuse no real MSF model).
    pub fn limits(mut self, limits: msf_models::Limits) -> Self {
        self.opts.limits = limits;
        self
    }
    /// How frames that are not square are fitted into the model's input ([`Fit`]; default
    /// [`Fit::Stretch`]: masks cover the whole frame; [`Fit::Crop`] is upstream's centre crop, for
    /// comparisons with upstream).
    pub fn fit(mut self, fit: Fit) -> Self {
        self.fit = fit;
        self
    }
    /// Preprocessing for graphs without MSF metadata (e.g. a plain `torch.onnx.export`).
    pub fn preprocess(mut self, p: msf_models::Preprocess) -> Self {
        self.opts.preprocess_override = Some(p);
        self
    }
    /// Load an ONNX file written by `msf-export` (read once, checked against the MSF contract).
    pub fn build(self, path: impl AsRef<Path>) -> Result<Decomposer> {
        let backend = session::load(path.as_ref(), &self.opts)?;
        Ok(Decomposer { backend, fit: self.fit, pool: Mutex::new(Vec::new()) })
    }

    /// Load a model held in memory, e.g. shipped inside the application with `include_bytes!`.
    ///
    /// ```
    /// # let model = msf_tests::FixtureModel::slate(false);
    /// let onnx: Vec<u8> = std::fs::read(&model)?; // or `include_bytes!("slate.onnx")`
    /// let dec = msf_runtime::Decomposer::builder().build_from_bytes(&onnx)?;
    /// assert!(dec.info().num_slots > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_from_bytes(self, onnx: &[u8]) -> Result<Decomposer> {
        let backend = session::load_bytes(onnx, &self.opts)?;
        Ok(Decomposer { backend, fit: self.fit, pool: Mutex::new(Vec::new()) })
    }
}

/// A loaded model. `Send + Sync`: share it with `Arc` across threads and streams.
///
/// Frames are borrowed as they come from a camera driver: BGR/RGB/RGBA/grey, rows padded to any
/// stride; nothing is converted or copied before the preprocessing reads them.
///
/// ```
/// # let model = msf_tests::FixtureModel::slate(false);
/// use msf_runtime::{Decomposer, ImageView, PixelFormat};
/// use std::sync::Arc;
/// let dec = Arc::new(Decomposer::builder().build(&model)?);
/// let workers: Vec<_> = (0..2u8)
///     .map(|cam| {
///         let dec = Arc::clone(&dec);
///         std::thread::spawn(move || {
///             // A 640×480 BGR8 buffer whose rows are padded to 1984 bytes, as some drivers do.
///             let (w, h, stride) = (640u32, 480u32, 1984usize);
///             let buf = vec![60 + 40 * cam; stride * h as usize];
///             let frame = ImageView::new(&buf, w, h, stride, PixelFormat::Bgr8)?;
///             dec.decompose(&frame)
///         })
///     })
///     .collect();
/// for w in workers {
///     let d = w.join().unwrap()?;
///     assert_eq!((d.frame_width, d.frame_height), (640, 480));
/// }
/// # Ok::<(), msf_runtime::Error>(())
/// ```
pub struct Decomposer {
    backend: Box<dyn Backend>,
    fit: Fit,
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
    /// How frames are fitted into the model's input.
    pub fn fit(&self) -> Fit {
        self.fit
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

    /// The model views of each frame under [`Self::fit`] (one each, several with tiles).
    fn placements(&self, views: &[ImageView]) -> Result<Vec<Vec<Placement>>> {
        let size = self.info().preprocess.image_size as u32;
        views
            .iter()
            .map(|v| {
                let ps = self.fit.placements(v.width(), v.height(), size)?;
                crate::fit::check_tiles(ps.len(), self.info().num_slots, v.width(), v.height())?;
                Ok(ps)
            })
            .collect()
    }

    /// Preprocess frames into one (B,3,S,S) batch, one image per model view.
    pub fn preprocess_batch(&self, views: &[ImageView]) -> Result<Vec<f32>> {
        let placed = self.placements(views)?;
        self.preprocess_placed(views, &placed)
    }

    fn preprocess_placed(&self, views: &[ImageView], placed: &[Vec<Placement>]) -> Result<Vec<f32>> {
        self.with_preprocessor(|pre| {
            let n = pre.output_len();
            let count: usize = placed.iter().map(Vec::len).sum();
            let mut input = vec![0.0; n * count];
            let mut outs = input.chunks_exact_mut(n);
            for (v, ps) in views.iter().zip(placed) {
                for (p, out) in ps.iter().zip(&mut outs) {
                    pre.run_placed(v, p, out)?;
                }
            }
            Ok(input)
        })
    }

    pub fn decompose(&self, view: &ImageView) -> Result<Decomposition> {
        Ok(self.decompose_batch_with_slots(std::slice::from_ref(view), None)?.remove(0))
    }

    /// Several frames in one inference call (one (B,3,S,S) input): what folders of images use.
    ///
    /// ```
    /// # let model = msf_tests::FixtureModel::slate(false);
    /// # let dec = msf_runtime::Decomposer::builder().build(&model)?;
    /// use msf_runtime::{ImageView, PixelFormat};
    /// let (a, b) = (vec![30u8; 64 * 48], vec![200u8; 64 * 48]);
    /// let views = [ImageView::packed(&a, 64, 48, PixelFormat::Gray8)?, ImageView::packed(&b, 64, 48, PixelFormat::Gray8)?];
    /// let ds = dec.decompose_batch(&views)?;
    /// assert_eq!(ds.len(), 2);
    /// // Batching does not change results.
    /// assert_eq!(ds[1].mask, dec.decompose(&views[1])?.mask);
    /// # Ok::<(), msf_runtime::Error>(())
    /// ```
    pub fn decompose_batch(&self, views: &[ImageView]) -> Result<Vec<Decomposition>> {
        self.decompose_batch_with_slots(views, None)
    }

    /// Decompose with explicit initial slots (B·K·D values), e.g. the previous frame's slots.
    /// Needs the `slots_init` input (every export unless `--no-slots-in`).
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
        let placed = self.placements(views)?;
        let count: usize = placed.iter().map(Vec::len).sum();
        if slots_init.is_some() && count != views.len() {
            return Err(Error::InvalidConfig(format!(
                "carried slots need one model view per frame; fit `{}` gives several: use crop, stretch or pad",
                self.fit
            )));
        }
        if count > MAX_VIEWS_PER_CALL {
            return Err(Error::InvalidConfig(format!("{count} model views in one call (at most {MAX_VIEWS_PER_CALL}): pass fewer frames at a time")));
        }
        let input = self.preprocess_placed(views, &placed)?;
        let raw = self.backend.run(&input, count, slots_init)?;
        let frames: Vec<(&ImageView, Placement)> = views.iter().zip(&placed).flat_map(|(v, ps)| ps.iter().map(move |p| (v, *p))).collect();
        let mut parts = split_outputs(info, raw, &frames)?.into_iter();
        Ok(views
            .iter()
            .zip(&placed)
            .map(|(v, ps)| {
                let tiles: Vec<Decomposition> = parts.by_ref().take(ps.len()).collect();
                crate::fit::merge_tiles(tiles, v.width(), v.height())
            })
            .collect())
    }
}

/// Most model views one call runs as a batch (frames × tiles); bounds the batch the backend plans.
pub const MAX_VIEWS_PER_CALL: usize = 1024;

fn split_outputs(info: &ModelInfo, raw: RawOutputs, views: &[(&ImageView, Placement)]) -> Result<Vec<Decomposition>> {
    let (k, d, g, m) = (info.num_slots, info.slot_dim, info.grid, info.mask_size);
    let b = views.len();
    let bad = |what: &str, got: usize, want: usize| Error::inference("output", format!("`{what}` has {got} values, expected {want}"));
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
        .map(|(i, (v, placement))| Decomposition {
            num_slots: k,
            slot_dim: d,
            grid: g,
            mask_size: m,
            slots: raw.slots[i * k * d..(i + 1) * k * d].to_vec(),
            attn: raw.attn[i * k * g * g..(i + 1) * k * g * g].to_vec(),
            mask: raw.masks[i * m * m..(i + 1) * m * m].iter().map(|&x| x.clamp(0, k as i64 - 1) as u8).collect(),
            frame_width: v.width(),
            frame_height: v.height(),
            placement: *placement,
            frame_labels: None,
        })
        .collect())
}
