//! Temporal consistency for video: one [`Tracker`] per stream carries state from frame to frame.
//!
//! Two mechanisms, used together by default:
//!
//! 1. **Carried slots** (*temporal mode*, models with the `slots_init` input: every export unless `--no-slots-in`): each frame's
//!    slot attention starts from the previous frame's slots instead of the learned mean, the way
//!    STEVE-style video models run an image model on video (spec §5; MSF itself has no predictor,
//!    so the previous slots are used as they are). Slots then tend to keep following the object they
//!    described, and the decomposition changes smoothly.
//! 2. **Hungarian matching**: the new frame's slots are assigned one-to-one to the previous frame's
//!    (Kuhn–Munkres on a similarity blending the cosine similarity of slot vectors with the IoU of
//!    their masks) and the output is [`Decomposition::permute`]d, so that slot id `k` keeps meaning
//!    the same object over time.
//!
//! # Why matching is needed even with carried slots
//! Slot attention is equivariant to the order of its initial slots but gives no guarantee that slot
//! `k` stays on the object it started on: the attention softmax runs over the **slot** axis, so slots
//! compete for every token, and three GRU iterations can move a slot a long way. When two slots
//! start close (an object shrinks or leaves, occlusion, a cut, a background slot drifting onto an
//! object), the competition can resolve the other way round and the slots *swap*; an unused slot
//! can also be recruited for a different object than in the previous frame. Without carried slots
//! every frame starts from the same learned mean, so which slot wins which object is decided afresh
//! and can flip between near-identical frames. Matching against the previous frame undoes both kinds
//! of swap after the fact, and costs a K×K assignment (K = 7) per frame.
//!
//! [`crate::eval`] makes a small moving-shapes video with ground-truth instance ids and counts how
//! often an object changes slot id; `examples/identity_switches.rs` compares the modes with them.

use crate::decompose::{Decomposer, Decomposition};
use crate::error::{Error, Result};
use crate::view::ImageView;
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use std::sync::Arc;

/// How a [`Tracker`] links frames.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackerOptions {
    /// Start each frame's slot attention from the previous frame's slots (needs a model exported
    /// with `--no-slots-in`). [`Tracker::new`] turns it off for models without that input;
    /// [`Tracker::with_options`] refuses them.
    pub temporal: bool,
    /// Reorder each frame's slots by Hungarian matching with the previous frame.
    pub matching: bool,
    /// Weight of the mask IoU in the matching similarity, in `[0, 1]`; the rest is the cosine
    /// similarity of the slot vectors. IoU is the more robust cue on real models (slot vectors also
    /// encode position and appearance that change), cosine the finer one when masks barely move.
    pub iou_weight: f32,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions { temporal: true, matching: true, iou_weight: 0.5 }
    }
}

/// Carries slots and identities across the frames of one video stream.
///
/// ```
/// # let model = msf_tests::FixtureModel::slate(true); // with the `slots_init` input
/// use msf_runtime::{Decomposer, ImageView, Tracker};
/// use std::sync::Arc;
/// let dec = Arc::new(Decomposer::builder().build(&model)?); // e.g. "slate-msf.slots.onnx"
/// let mut tracker = Tracker::new(Arc::clone(&dec)); // one per camera / video stream
/// assert!(tracker.is_temporal());
/// let video = msf_runtime::eval::synthetic::moving_shapes(4, 128);
/// for rgb in &video.frames {
///     let d = tracker.step(&ImageView::packed(rgb, 128, 128, msf_runtime::PixelFormat::Rgb8)?)?;
///     // Slot k of `d` is the same object as slot k of the previous frame.
///     assert_eq!(d.num_slots, dec.info().num_slots);
/// }
/// assert_eq!(tracker.frames(), 4);
/// # Ok::<(), msf_runtime::Error>(())
/// ```
pub struct Tracker {
    dec: Arc<Decomposer>,
    opts: TrackerOptions,
    /// The previous output, already in track order.
    prev: Option<Decomposition>,
    frames: u64,
    last_order: Vec<usize>,
}

/// A tracker follows the model's K slots from frame to frame: one model view per frame.
fn check_fit(dec: &Decomposer) -> Result<()> {
    if dec.fit() == crate::fit::Fit::Tiles {
        return Err(Error::InvalidConfig(
            "temporal mode follows the model's slots from frame to frame, one view per frame; fit `tiles` gives several: use crop, stretch or pad".into(),
        ));
    }
    Ok(())
}

impl Tracker {
    /// Default options; temporal mode when the model has the `slots_init` input.
    pub fn new(dec: Arc<Decomposer>) -> Self {
        let temporal = dec.info().slots_input;
        Tracker::build(dec, TrackerOptions { temporal, ..Default::default() })
    }

    /// Explicit options; fails with [`Error::NoSlotsInput`] if `temporal` is asked of a model
    /// exported with `--no-slots-in`, and with [`Error::InvalidConfig`] for an IoU weight outside `[0, 1]`.
    pub fn with_options(dec: Arc<Decomposer>, opts: TrackerOptions) -> Result<Self> {
        if opts.temporal && !dec.info().slots_input {
            return Err(Error::NoSlotsInput);
        }
        if !(0.0..=1.0).contains(&opts.iou_weight) {
            return Err(Error::InvalidConfig(format!("tracker iou_weight {} is not in [0, 1]", opts.iou_weight)));
        }
        check_fit(&dec)?;
        Ok(Tracker::build(dec, opts))
    }

    fn build(dec: Arc<Decomposer>, opts: TrackerOptions) -> Self {
        let k = dec.info().num_slots;
        Tracker { dec, opts, prev: None, frames: 0, last_order: (0..k).collect() }
    }

    pub fn options(&self) -> &TrackerOptions {
        &self.opts
    }
    pub fn decomposer(&self) -> &Arc<Decomposer> {
        &self.dec
    }
    /// Whether slots are carried from frame to frame.
    pub fn is_temporal(&self) -> bool {
        self.opts.temporal
    }
    /// Frames processed since creation or the last [`reset`](Self::reset).
    pub fn frames(&self) -> u64 {
        self.frames
    }
    /// The previous frame's output (track order).
    pub fn last(&self) -> Option<&Decomposition> {
        self.prev.as_ref()
    }
    /// How the last frame was reordered: output slot `i` is the model's slot `order[i]`
    /// (the identity for the first frame and without matching).
    pub fn last_order(&self) -> &[usize] {
        &self.last_order
    }

    /// Forget the stream (new video, or a scene cut): the next frame starts from the learned slots.
    pub fn reset(&mut self) {
        self.prev = None;
        self.frames = 0;
        self.last_order = (0..self.dec.info().num_slots).collect();
    }

    /// Decompose the next frame of the stream.
    pub fn step(&mut self, view: &ImageView) -> Result<Decomposition> {
        check_fit(&self.dec)?;
        let init = match (&self.prev, self.opts.temporal) {
            // Track order: slot attention is equivariant to the order of its initial slots, so
            // feeding the tracks in order makes the model's output order follow them too.
            (Some(p), true) => Some(p.slots.as_slice()),
            _ => None,
        };
        let mut d = self.dec.decompose_batch_with_slots(std::slice::from_ref(view), init)?.remove(0);
        let k = d.num_slots;
        let order = match (&self.prev, self.opts.matching) {
            (Some(p), true) => match_slots(p, &d, self.opts.iou_weight),
            _ => (0..k).collect(),
        };
        if order.iter().enumerate().any(|(i, &o)| i != o) {
            d.permute(&order);
        }
        self.last_order = order;
        self.prev = Some(d.clone());
        self.frames += 1;
        Ok(d)
    }
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())) as f32
    }
}

/// Mask IoU of every (previous slot, current slot) pair, `K×K` row-major. Masks of different sizes
/// (never the case for one model) give all zeros.
pub fn mask_iou(prev: &Decomposition, cur: &Decomposition) -> Vec<f32> {
    let k = prev.num_slots.max(cur.num_slots);
    let mut inter = vec![0u32; k * k];
    if prev.mask.len() == cur.mask.len() {
        for (&a, &b) in prev.mask.iter().zip(&cur.mask) {
            inter[a as usize * k + b as usize] += 1;
        }
    }
    let area_a: Vec<u32> = (0..k).map(|a| inter[a * k..(a + 1) * k].iter().sum()).collect();
    let area_b: Vec<u32> = (0..k).map(|b| (0..k).map(|a| inter[a * k + b]).sum()).collect();
    let mut iou = vec![0f32; k * k];
    for a in 0..k {
        for b in 0..k {
            let i = inter[a * k + b];
            let u = area_a[a] + area_b[b] - i;
            iou[a * k + b] = if u == 0 { 0.0 } else { i as f32 / u as f32 };
        }
    }
    iou
}

/// The assignment of `cur`'s slots to `prev`'s: `order[k]` = the slot of `cur` that continues
/// track `k`, maximising Σ similarity (Kuhn–Munkres on similarities scaled to integers).
pub fn match_slots(prev: &Decomposition, cur: &Decomposition, iou_weight: f32) -> Vec<usize> {
    let k = cur.num_slots;
    assert_eq!(prev.num_slots, k, "slot count changed between frames");
    let iou = mask_iou(prev, cur);
    let w = iou_weight.clamp(0.0, 1.0);
    const SCALE: f32 = 1_000_000.0;
    let weights = Matrix::from_fn(k, k, |(a, b)| {
        let sim = (1.0 - w) * cosine(prev.slot(a), cur.slot(b)) + w * iou[a * k + b];
        // Ties (e.g. empty slots on both sides) keep their index: a tiny bonus for the identity.
        (sim * SCALE).round() as i64 + i64::from(a == b)
    });
    kuhn_munkres(&weights).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decomposition(slots: Vec<f32>, mask: Vec<u8>, k: usize, d: usize, m: usize) -> Decomposition {
        Decomposition {
            num_slots: k,
            slot_dim: d,
            grid: 1,
            mask_size: m,
            slots,
            attn: (0..k).map(|i| i as f32).collect(),
            mask,
            frame_width: m as u32,
            frame_height: m as u32,
            placement: crate::fit::Fit::Crop.placements(m as u32, m as u32, m as u32).unwrap()[0],
            frame_labels: None,
        }
    }

    fn sample(k: usize, d: usize, m: usize, seed: u32) -> Decomposition {
        let slots = (0..k * d).map(|i| ((synthetic_hash(i as u32, seed) % 1000) as f32 - 500.0) / 100.0).collect();
        let mask = (0..m * m).map(|i| ((i % m) * k / m) as u8).collect();
        decomposition(slots, mask, k, d, m)
    }

    fn synthetic_hash(x: u32, y: u32) -> u32 {
        let mut h = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
        h ^= h >> 15;
        h.wrapping_mul(0xC2B2_AE3D)
    }

    #[test]
    fn matching_undoes_a_permutation() {
        let (k, d, m) = (7, 16, 28);
        let prev = sample(k, d, m, 1);
        let shuffle = [3, 0, 6, 1, 5, 2, 4];
        for w in [0.0, 0.5, 1.0] {
            let mut cur = prev.clone();
            cur.permute(&shuffle);
            // Now cur slot i = prev slot shuffle[i]; matching must bring prev order back.
            let order = match_slots(&prev, &cur, w);
            cur.permute(&order);
            assert_eq!(cur.slots, prev.slots, "iou weight {w}");
            assert_eq!(cur.mask, prev.mask, "iou weight {w}");
            assert_eq!(cur.attn, prev.attn, "iou weight {w}");
        }
    }

    #[test]
    fn matching_is_identity_on_identical_frames() {
        let prev = sample(5, 8, 20, 2);
        assert_eq!(match_slots(&prev, &prev, 0.5), vec![0, 1, 2, 3, 4]);
        // All-zero slots and empty masks: ties resolved to the identity.
        let z = decomposition(vec![0.0; 5 * 8], vec![0; 400], 5, 8, 20);
        assert_eq!(match_slots(&z, &z, 0.5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn iou_of_relabelled_masks() {
        let a = decomposition(vec![1.0; 4], vec![0, 0, 1, 1], 2, 2, 2);
        let b = decomposition(vec![1.0; 4], vec![1, 1, 0, 0], 2, 2, 2);
        assert_eq!(mask_iou(&a, &b), vec![0.0, 1.0, 1.0, 0.0]);
        let c = decomposition(vec![1.0; 4], vec![0, 1, 1, 1], 2, 2, 2);
        assert_eq!(mask_iou(&a, &c), vec![0.5, 0.25, 0.0, 2.0 / 3.0]);
    }
}
