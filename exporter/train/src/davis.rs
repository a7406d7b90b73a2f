//! DAVIS 2017 video object segmentation scores for the **unsupervised** task, as the official
//! evaluation computes them (github.com/davisvideochallenge/davis2017-evaluation:
//! `davis2017/metrics.py`, `evaluation.py`, `utils.py`, `davis.py`, `results.py`; the goldens in
//! `tests/goldens/davis_jf.json` come from running that code).
//!
//! - **J** ([`jaccard`]): region similarity, |gt ∩ pred| / |gt ∪ pred| over the pixels that are
//!   not void; 1 when both are empty.
//! - **F** ([`f_measure`]): boundary accuracy. Both masks (void pixels cleared) become one-pixel
//!   boundary maps ([`boundary_map`], upstream's `_seg2bmap`: a pixel is a boundary pixel when it
//!   differs from its east, south or south-east neighbour). A boundary pixel matches when the other
//!   boundary lies within a disk of radius [`bound_radius`] = ⌈0.008 · image diagonal⌉ pixels
//!   (skimage's `disk`: offsets with dx² + dy² ≤ r²). Precision = matched predicted boundary
//!   pixels / predicted boundary pixels, recall likewise for the ground truth, F = 2PR / (P + R);
//!   no predicted boundary: P = 1, R = 0; no ground-truth boundary: P = 0, R = 1; neither: 1.
//! - **Unsupervised matching** ([`evaluate_sequence`]): predicted ids are unrelated to the
//!   ground-truth ids. The ground-truth objects of a sequence are ids 1..=N, N the largest id in
//!   its *first* annotation (ids above N in later frames count as background); the predicted
//!   objects are ids 1..=K, K the largest predicted id over all frames (at most
//!   [`MAX_PROPOSALS`]), padded with empty proposals up to N. Every (object, proposal) pair is
//!   scored on every frame (none dropped), and objects are assigned to proposals by the Hungarian
//!   method on (mean J + mean F) / 2.
//! - **Statistics** ([`statistics`], upstream's `db_statistics`): mean, recall (fraction of frames
//!   above 0.5) and decay (mean of the first quarter of the frames minus the mean of the last
//!   quarter, the quarters' bounds as upstream rounds them).
//! - **Summary** ([`summarize`]): every matched object of every sequence is one entry; J-Mean,
//!   J-Recall, J-Decay (and F's) are the means over those entries and J&F-Mean = (J-Mean + F-Mean) / 2,
//!   the numbers of upstream's `global_results-<set>.csv`.
//!
//! Differences, none of which a DAVIS sequence reaches: upstream indexes the decay quarters with
//! `uint8` (wrong past 256 frames), here they are exact; Hungarian ties between assignments
//! of equal total may be broken differently (each assignment then has the same J&F-Mean).

use crate::data::{read_label_png, DataError};
use image::GrayImage;
use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Annotation value of void pixels (left out of J and F).
pub const VOID: u8 = 255;
/// Boundary tolerance as a fraction of the image diagonal (upstream's `bound_th`).
pub const BOUND_TH: f64 = 0.008;
/// Most predicted objects a sequence may have (upstream's `max_n_proposals`).
pub const MAX_PROPOSALS: usize = 20;
/// A frame counts towards recall when its score is above this.
pub const RECALL_THRESHOLD: f64 = 0.5;
/// The resolution folder read under `JPEGImages/` and `Annotations*/`.
pub const RESOLUTION: &str = "480p";

#[derive(Debug, thiserror::Error)]
pub enum DavisError {
    #[error(transparent)]
    Read(#[from] DataError),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{0}: not a DAVIS folder: neither Annotations_unsupervised/480p nor Annotations/480p is there")]
    NotDavis(PathBuf),
    #[error("{list}: sequence {sequence:?}: {reason}")]
    BadSequence { list: PathBuf, sequence: String, reason: String },
    #[error("{0}: no sequences")]
    NoSequences(PathBuf),
    #[error("{0}: no annotation PNGs")]
    NoFrames(PathBuf),
    #[error("{image}: no annotation {annotation}")]
    MissingAnnotation { image: PathBuf, annotation: PathBuf },
    #[error("{path}: no such prediction (sequence {sequence}, frame {frame}): predictions are PRED/<sequence>/<frame>.png, one per annotated frame")]
    MissingPrediction { path: PathBuf, sequence: String, frame: String },
    #[error("{path}: {width}×{height}, but {reference} is {ref_width}×{ref_height}")]
    SizeMismatch { path: PathBuf, width: u32, height: u32, reference: PathBuf, ref_width: u32, ref_height: u32 },
    #[error("{path}: object id {id}, but the DAVIS evaluation allows at most {max} predicted objects (ids 1..={max}, 0 = nothing){hint}")]
    TooManyObjects { path: PathBuf, id: u8, max: usize, hint: &'static str },
    #[error("{0}")]
    Shape(String),
}

// ------------------------------------------------------------------------------------------------
// Binary masks and the per-frame measures
// ------------------------------------------------------------------------------------------------

/// A binary mask, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

impl Mask {
    /// `None` unless `data` has `width × height` entries.
    pub fn new(width: usize, height: usize, data: Vec<bool>) -> Option<Self> {
        (width.checked_mul(height) == Some(data.len())).then_some(Mask { width, height, data })
    }
    pub fn from_fn(width: usize, height: usize, f: impl Fn(usize, usize) -> bool) -> Self {
        Mask { width, height, data: (0..width * height).map(|i| f(i % width, i / width)).collect() }
    }
    /// The pixels of `labels` equal to `id`.
    pub fn from_labels(labels: &GrayImage, id: u8) -> Self {
        Mask { width: labels.width() as usize, height: labels.height() as usize, data: labels.as_raw().iter().map(|&l| l == id).collect() }
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn data(&self) -> &[bool] {
        &self.data
    }
    pub fn get(&self, x: usize, y: usize) -> bool {
        self.data[y * self.width + x]
    }
    /// Number of set pixels.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&b| b).count()
    }
}

fn same_shape(a: &Mask, b: &Mask, what: &str) -> Result<(), DavisError> {
    if (a.width, a.height) == (b.width, b.height) {
        Ok(())
    } else {
        Err(DavisError::Shape(format!("{what}: {}×{} and {}×{} masks", a.width, a.height, b.width, b.height)))
    }
}

/// J of one frame (upstream's `db_eval_iou`).
pub fn jaccard(gt: &Mask, pred: &Mask, void: Option<&Mask>) -> Result<f64, DavisError> {
    same_shape(gt, pred, "J")?;
    if let Some(v) = void {
        same_shape(gt, v, "J (void)")?;
    }
    let (mut inter, mut union) = (0u64, 0u64);
    for i in 0..gt.data.len() {
        if void.is_some_and(|v| v.data[i]) {
            continue;
        }
        inter += u64::from(gt.data[i] && pred.data[i]);
        union += u64::from(gt.data[i] || pred.data[i]);
    }
    Ok(ratio_or_one(inter, union))
}

fn ratio_or_one(inter: u64, union: u64) -> f64 {
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// The boundary tolerance in pixels for a `width × height` frame: ⌈[`BOUND_TH`] · diagonal⌉
/// (1 at 96×64, 2 at 128×96, 8 at DAVIS's 854×480).
pub fn bound_radius(width: usize, height: usize) -> usize {
    let (w, h) = (width as f64, height as f64);
    (BOUND_TH * (h * h + w * w).sqrt()).ceil() as usize
}

/// Upstream's `_seg2bmap`: one-pixel-wide boundaries, offset half a pixel towards the origin.
pub fn boundary_map(seg: &Mask) -> Mask {
    let (w, h) = (seg.width, seg.height);
    Mask::from_fn(w, h, |x, y| {
        let at = |x: usize, y: usize| x < w && y < h && seg.get(x, y);
        let s = seg.get(x, y);
        match (x + 1 == w, y + 1 == h) {
            (true, true) => false,
            (false, true) => s != at(x + 1, y),
            (true, false) => s != at(x, y + 1),
            (false, false) => s != at(x + 1, y) || s != at(x, y + 1) || s != at(x + 1, y + 1),
        }
    })
}

/// The offsets of skimage's `disk(radius)`: dx² + dy² ≤ radius².
fn disk(radius: usize) -> Vec<(isize, isize)> {
    let r = radius as isize;
    let mut v = vec![];
    for dy in -r..=r {
        for dx in -r..=r {
            if dx * dx + dy * dy <= r * r {
                v.push((dx, dy));
            }
        }
    }
    v
}

/// Stamp `disk` around each listed pixel (cv2.dilate with that kernel; outside pixels add nothing).
fn dilate_points(points: &[usize], width: usize, height: usize, disk: &[(isize, isize)]) -> Vec<bool> {
    let mut out = vec![false; width * height];
    for &p in points {
        let (x, y) = ((p % width) as isize, (p / width) as isize);
        for &(dx, dy) in disk {
            let (u, v) = (x + dx, y + dy);
            if u >= 0 && v >= 0 && (u as usize) < width && (v as usize) < height {
                out[v as usize * width + u as usize] = true;
            }
        }
    }
    out
}

/// `mask` dilated by a disk of `radius` pixels.
pub fn dilate(mask: &Mask, radius: usize) -> Mask {
    let points: Vec<usize> = (0..mask.data.len()).filter(|&i| mask.data[i]).collect();
    Mask { width: mask.width, height: mask.height, data: dilate_points(&points, mask.width, mask.height, &disk(radius)) }
}

/// F from boundary pixel counts: `n_pred`/`n_gt` boundary pixels, of which `pred_matched`/`gt_matched`
/// lie within the other's dilated boundary.
fn f_from_counts(n_pred: usize, pred_matched: usize, n_gt: usize, gt_matched: usize) -> f64 {
    let (precision, recall) = match (n_pred, n_gt) {
        (0, 0) => (1.0, 1.0),
        (0, _) => (1.0, 0.0),
        (_, 0) => (0.0, 1.0),
        _ => (pred_matched as f64 / n_pred as f64, gt_matched as f64 / n_gt as f64),
    };
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// F of one frame (upstream's `f_measure` with `bound_th` = [`BOUND_TH`]).
pub fn f_measure(gt: &Mask, pred: &Mask, void: Option<&Mask>) -> Result<f64, DavisError> {
    same_shape(gt, pred, "F")?;
    if let Some(v) = void {
        same_shape(gt, v, "F (void)")?;
    }
    let clear = |m: &Mask| match void {
        Some(v) => Mask { width: m.width, height: m.height, data: m.data.iter().zip(&v.data).map(|(&a, &b)| a && !b).collect() },
        None => m.clone(),
    };
    let (gb, pb) = (boundary_map(&clear(gt)), boundary_map(&clear(pred)));
    let r = bound_radius(gt.width, gt.height);
    let (gd, pd) = (dilate(&gb, r), dilate(&pb, r));
    let matched = |b: &Mask, d: &Mask| b.data.iter().zip(&d.data).filter(|(&b, &d)| b && d).count();
    Ok(f_from_counts(pb.count(), matched(&pb, &gd), gb.count(), matched(&gb, &pd)))
}

// ------------------------------------------------------------------------------------------------
// Statistics
// ------------------------------------------------------------------------------------------------

/// Upstream's `db_statistics` of one object's per-frame values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Statistics {
    /// Mean over the frames (NaN values left out).
    pub mean: f64,
    /// Fraction of the frames above [`RECALL_THRESHOLD`].
    pub recall: f64,
    /// Mean of the first quarter of the frames minus that of the last quarter.
    pub decay: f64,
}

fn nan_mean(v: &[f64]) -> f64 {
    let kept: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if kept.is_empty() {
        f64::NAN
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Mean, recall and decay of per-frame values (all NaN for no frames).
pub fn statistics(per_frame: &[f64]) -> Statistics {
    let n = per_frame.len();
    if n == 0 {
        return Statistics { mean: f64::NAN, recall: f64::NAN, decay: f64::NAN };
    }
    let recall = per_frame.iter().filter(|&&v| v > RECALL_THRESHOLD).count() as f64 / n as f64;
    // Quarter bounds: round(linspace(1, n, 5) + 1e-10) - 1, each quarter inclusive of both bounds.
    let step = (n as f64 - 1.0) / 4.0;
    let ids: Vec<usize> = (0..5)
        .map(|i| {
            let v = if i == 4 { n as f64 } else { i as f64 * step + 1.0 };
            ((v + 1e-10).round_ties_even() - 1.0) as usize
        })
        .collect();
    let bin = |i: usize| &per_frame[ids[i]..=ids[i + 1].min(n - 1)];
    Statistics { mean: nan_mean(per_frame), recall, decay: nan_mean(bin(0)) - nan_mean(bin(3)) }
}

// ------------------------------------------------------------------------------------------------
// The unsupervised evaluation of a sequence
// ------------------------------------------------------------------------------------------------

/// One ground-truth object of a sequence and the predicted object it was matched with.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectScores {
    /// Ground-truth id.
    pub object: u8,
    /// The matched proposal, 1-based: a predicted id when ≤ the sequence's `predicted_objects`,
    /// otherwise one of the empty proposals added because there were fewer predicted objects
    /// than ground-truth ones.
    pub proposal: usize,
    /// Upstream's name of this entry in `per-sequence_results-<set>.csv`: `<sequence>_<i>`, `i`
    /// counting the matched pairs in proposal order (not the ground-truth id).
    pub upstream_name: String,
    #[serde(rename = "J")]
    pub j: Statistics,
    #[serde(rename = "F")]
    pub f: Statistics,
    /// J of every frame.
    #[serde(rename = "J_frames")]
    pub j_frames: Vec<f64>,
    /// F of every frame.
    #[serde(rename = "F_frames")]
    pub f_frames: Vec<f64>,
}

/// The scores of one sequence.
#[derive(Clone, Debug, Serialize)]
pub struct SequenceScores {
    pub name: String,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    /// K: the largest predicted id.
    pub predicted_objects: usize,
    /// One entry per ground-truth object, by id.
    pub objects: Vec<ObjectScores>,
}

impl SequenceScores {
    /// Mean J over the sequence's objects (`None` without objects).
    pub fn j_mean(&self) -> Option<f64> {
        (!self.objects.is_empty()).then(|| mean(&self.objects.iter().map(|o| o.j.mean).collect::<Vec<_>>()))
    }
    /// Mean F over the sequence's objects.
    pub fn f_mean(&self) -> Option<f64> {
        (!self.objects.is_empty()).then(|| mean(&self.objects.iter().map(|o| o.f.mean).collect::<Vec<_>>()))
    }
    /// (J-Mean + F-Mean) / 2 of this sequence.
    pub fn jf_mean(&self) -> Option<f64> {
        Some((self.j_mean()? + self.f_mean()?) / 2.0)
    }
}

/// Per frame: `scores[o][p]` for ground-truth object `o + 1` and proposal `p + 1`.
struct FrameScores {
    j: Vec<Vec<f64>>,
    f: Vec<Vec<f64>>,
}

/// For one label map: every label's boundary pixels (indices), as [`boundary_map`] of that label's
/// mask would give them. `labels` holds 0 for background (and void), 1..=n for the objects.
fn boundaries_by_label(labels: &[u8], width: usize, height: usize, n: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]; n + 1];
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let s = labels[i];
            let last_col = x + 1 == width;
            let last_row = y + 1 == height;
            // Neighbours beyond the image are background; upstream compares the last row only with
            // the east neighbour, the last column only with the south one, and skips the corner.
            let neighbours: [Option<u8>; 3] = match (last_col, last_row) {
                (true, true) => continue,
                (false, true) => [Some(labels[i + 1]), None, None],
                (true, false) => [Some(labels[i + width]), None, None],
                (false, false) => [Some(labels[i + 1]), Some(labels[i + width]), Some(labels[i + width + 1])],
            };
            // A label is a boundary here when it is among these pixels and not all of them carry it.
            if neighbours.iter().flatten().all(|&l| l == s) {
                continue;
            }
            let mut seen = [0u8; 4];
            let mut k = 0;
            for l in std::iter::once(s).chain(neighbours.iter().flatten().copied()) {
                if l != 0 && !seen[..k].contains(&l) {
                    seen[k] = l;
                    k += 1;
                    out[l as usize].push(i);
                }
            }
        }
    }
    out
}

/// J and F of every (object, proposal) pair on one frame. `gt` holds object ids 1..=n_gt (others
/// already 0) and [`VOID`]; `pred` holds ids 0..=n_prop.
fn score_frame(gt: &[u8], pred: &[u8], width: usize, height: usize, n_gt: usize, n_prop: usize, disk: &[(isize, isize)]) -> FrameScores {
    // Region: a contingency table over the pixels that are not void.
    let mut table = vec![vec![0u64; n_prop + 1]; n_gt + 1];
    for (&g, &p) in gt.iter().zip(pred) {
        if g != VOID {
            table[g as usize][p as usize] += 1;
        }
    }
    let gt_size: Vec<u64> = table.iter().map(|row| row.iter().sum()).collect();
    let pred_size: Vec<u64> = (0..=n_prop).map(|p| table.iter().map(|row| row[p]).sum()).collect();
    // Boundaries of the masks with void pixels cleared.
    let gt_clear: Vec<u8> = gt.iter().map(|&g| if g == VOID { 0 } else { g }).collect();
    let pred_clear: Vec<u8> = pred.iter().zip(gt).map(|(&p, &g)| if g == VOID { 0 } else { p }).collect();
    let gb = boundaries_by_label(&gt_clear, width, height, n_gt);
    let pb = boundaries_by_label(&pred_clear, width, height, n_prop);
    let gd: Vec<Vec<bool>> = gb.iter().skip(1).map(|b| dilate_points(b, width, height, disk)).collect();
    let pd: Vec<Vec<bool>> = pb.iter().skip(1).map(|b| dilate_points(b, width, height, disk)).collect();
    let mut j = vec![vec![0.0; n_prop]; n_gt];
    let mut f = vec![vec![0.0; n_prop]; n_gt];
    for o in 1..=n_gt {
        for p in 1..=n_prop {
            let inter = table[o][p];
            j[o - 1][p - 1] = ratio_or_one(inter, gt_size[o] + pred_size[p] - inter);
            let pred_matched = pb[p].iter().filter(|&&i| gd[o - 1][i]).count();
            let gt_matched = gb[o].iter().filter(|&&i| pd[p - 1][i]).count();
            f[o - 1][p - 1] = f_from_counts(pb[p].len(), pred_matched, gb[o].len(), gt_matched);
        }
    }
    FrameScores { j, f }
}

/// The unsupervised evaluation of one sequence: `gt` the annotations (object ids, [`VOID`]),
/// `pred` the predictions (ids 1..=[`MAX_PROPOSALS`], 0 = nothing), frame by frame, all of one size.
pub fn evaluate_sequence(name: &str, gt: &[GrayImage], pred: &[GrayImage]) -> Result<SequenceScores, DavisError> {
    evaluate_sequence_with(name, gt, pred, MAX_PROPOSALS)
}

/// [`evaluate_sequence`] with another limit on the number of predicted objects.
pub fn evaluate_sequence_with(name: &str, gt: &[GrayImage], pred: &[GrayImage], max_proposals: usize) -> Result<SequenceScores, DavisError> {
    if gt.is_empty() || gt.len() != pred.len() {
        return Err(DavisError::Shape(format!("sequence {name}: {} annotated frames and {} predictions", gt.len(), pred.len())));
    }
    let (width, height) = gt[0].dimensions();
    for (i, m) in gt.iter().chain(pred).enumerate() {
        if m.dimensions() != (width, height) {
            let (what, k) = if i < gt.len() { ("annotation", i) } else { ("prediction", i - gt.len()) };
            return Err(DavisError::Shape(format!("sequence {name}: {what} {k} is {}×{}, frame 0 is {width}×{height}", m.width(), m.height())));
        }
    }
    // Objects: the ids of the first annotation; proposals: every predicted id, padded to n_gt.
    let n_gt = gt[0].as_raw().iter().filter(|&&l| l != VOID).max().copied().unwrap_or(0) as usize;
    let k = pred.iter().flat_map(|m| m.as_raw().iter()).max().copied().unwrap_or(0) as usize;
    if k > max_proposals {
        return Err(DavisError::Shape(format!("sequence {name}: predicted id {k}, but at most {max_proposals} predicted objects are allowed")));
    }
    let n_prop = k.max(n_gt);
    let (w, h) = (width as usize, height as usize);
    let disk = disk(bound_radius(w, h));
    // j[o][p][frame], f likewise.
    let mut j = vec![vec![Vec::with_capacity(gt.len()); n_prop]; n_gt];
    let mut f = j.clone();
    for (g, p) in gt.iter().zip(pred) {
        let g: Vec<u8> = g.as_raw().iter().map(|&l| if l == VOID || (l as usize) <= n_gt { l } else { 0 }).collect();
        let s = score_frame(&g, p.as_raw(), w, h, n_gt, n_prop, &disk);
        for o in 0..n_gt {
            for q in 0..n_prop {
                j[o][q].push(s.j[o][q]);
                f[o][q].push(s.f[o][q]);
            }
        }
    }
    let mut objects = Vec::with_capacity(n_gt);
    if n_gt > 0 {
        // Hungarian assignment maximising (mean J + mean F) / 2, on integers as metrics.rs does.
        let weights = Matrix::from_fn(n_gt, n_prop, |(o, q)| ((mean(&j[o][q]) + mean(&f[o][q])) / 2.0 * 1e12).round() as i64);
        let (_, assignment) = kuhn_munkres(&weights);
        let mut order: Vec<usize> = assignment.clone();
        order.sort_unstable();
        for (o, &q) in assignment.iter().enumerate() {
            let rank = order.iter().position(|&x| x == q).expect("assigned") + 1;
            objects.push(ObjectScores {
                object: (o + 1) as u8,
                proposal: q + 1,
                upstream_name: format!("{name}_{rank}"),
                j: statistics(&j[o][q]),
                f: statistics(&f[o][q]),
                j_frames: std::mem::take(&mut j[o][q]),
                f_frames: std::mem::take(&mut f[o][q]),
            });
        }
    }
    Ok(SequenceScores { name: name.to_string(), frames: gt.len(), width, height, predicted_objects: k, objects })
}

/// The numbers of upstream's `global_results-<set>.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    #[serde(rename = "J&F-Mean")]
    pub jf_mean: f64,
    #[serde(rename = "J-Mean")]
    pub j_mean: f64,
    #[serde(rename = "J-Recall")]
    pub j_recall: f64,
    #[serde(rename = "J-Decay")]
    pub j_decay: f64,
    #[serde(rename = "F-Mean")]
    pub f_mean: f64,
    #[serde(rename = "F-Recall")]
    pub f_recall: f64,
    #[serde(rename = "F-Decay")]
    pub f_decay: f64,
    pub sequences: usize,
    /// Matched ground-truth objects over all sequences: the entries averaged.
    pub objects: usize,
}

/// Pool every sequence's objects (in upstream's order) and average; `None` without any object.
pub fn summarize(sequences: &[SequenceScores]) -> Option<Summary> {
    let mut pool: Vec<&ObjectScores> = vec![];
    for s in sequences {
        let mut objects: Vec<&ObjectScores> = s.objects.iter().collect();
        objects.sort_by_key(|o| o.proposal);
        pool.extend(objects);
    }
    if pool.is_empty() {
        return None;
    }
    let avg = |f: fn(&ObjectScores) -> f64| mean(&pool.iter().map(|o| f(o)).collect::<Vec<_>>());
    let (j_mean, f_mean) = (avg(|o| o.j.mean), avg(|o| o.f.mean));
    Some(Summary {
        jf_mean: (j_mean + f_mean) / 2.0,
        j_mean,
        j_recall: avg(|o| o.j.recall),
        j_decay: avg(|o| o.j.decay),
        f_mean,
        f_recall: avg(|o| o.f.recall),
        f_decay: avg(|o| o.f.decay),
        sequences: sequences.len(),
        objects: pool.len(),
    })
}

// ------------------------------------------------------------------------------------------------
// The DAVIS 2017 folder layout
// ------------------------------------------------------------------------------------------------

/// A DAVIS-2017-layout folder: `ROOT/JPEGImages/480p/<seq>/<frame>.jpg` and annotations
/// `ROOT/Annotations_unsupervised/480p/<seq>/<frame>.png` (what upstream's unsupervised task reads)
/// or, without that folder, `ROOT/Annotations/480p/…`: palette or grey PNGs, value = object id,
/// 0 background, 255 void. Predictions in the same layout: `PRED/<seq>/<frame>.png`.
#[derive(Clone, Debug)]
pub struct Davis {
    pub root: PathBuf,
    /// The annotation folder read (`…/480p`).
    pub annotations: PathBuf,
    /// `ROOT/JPEGImages/480p` (only checked: a frame image without annotation is an error).
    pub images: PathBuf,
    /// The sequences, in the order of the list file, else sorted.
    pub sequences: Vec<String>,
    /// `ROOT/ImageSets/2017/<set>.txt` when the sequences came from it.
    pub sequence_list: Option<PathBuf>,
    /// Most predicted objects per sequence ([`MAX_PROPOSALS`], as upstream).
    pub max_proposals: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DavisError + '_ {
    move |e| DavisError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

/// File names in `dir` ending in `.ext` (case as given), sorted.
fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<String>, DavisError> {
    let mut names = vec![];
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') && name.len() > ext.len() + 1 && name.ends_with(&format!(".{ext}")) && entry.path().is_file() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\'])
}

impl Davis {
    /// Open `root`. `set`: read the sequences from `ROOT/ImageSets/2017/<set>.txt` (which must
    /// exist); `None`: from `ImageSets/2017/val.txt` when it exists, else every sequence folder.
    pub fn open(root: &Path, set: Option<&str>) -> Result<Self, DavisError> {
        let annotations = ["Annotations_unsupervised", "Annotations"]
            .iter()
            .map(|a| root.join(a).join(RESOLUTION))
            .find(|p| p.is_dir())
            .ok_or_else(|| DavisError::NotDavis(root.to_path_buf()))?;
        let list = root.join("ImageSets").join("2017").join(format!("{}.txt", set.unwrap_or("val")));
        let (sequences, sequence_list) = if let Some(s) = set.filter(|s| !is_plain_name(s)) {
            return Err(DavisError::BadSequence { list, sequence: s.to_string(), reason: "not a set name".into() });
        } else if set.is_some() || list.is_file() {
            let text = std::fs::read_to_string(&list).map_err(io_err(&list))?;
            let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
            for n in &names {
                let dir = annotations.join(n);
                if !is_plain_name(n) {
                    return Err(DavisError::BadSequence { list, sequence: n.clone(), reason: "not a folder name".into() });
                }
                if !dir.is_dir() {
                    return Err(DavisError::BadSequence { list, sequence: n.clone(), reason: format!("no annotation folder {}", dir.display()) });
                }
            }
            (names, Some(list))
        } else {
            let mut names = vec![];
            for entry in std::fs::read_dir(&annotations).map_err(io_err(&annotations))? {
                let entry = entry.map_err(io_err(&annotations))?;
                if entry.path().is_dir() {
                    if let Some(n) = entry.file_name().to_str().filter(|n| !n.starts_with('.')) {
                        names.push(n.to_string());
                    }
                }
            }
            names.sort();
            (names, None)
        };
        if sequences.is_empty() {
            return Err(DavisError::NoSequences(sequence_list.unwrap_or(annotations)));
        }
        Ok(Davis { root: root.to_path_buf(), annotations, images: root.join("JPEGImages").join(RESOLUTION), sequences, sequence_list, max_proposals: MAX_PROPOSALS })
    }

    /// What was opened, in words.
    pub fn describe(&self) -> String {
        let from = match &self.sequence_list {
            Some(l) => format!("listed in {}", l.display()),
            None => "every sequence folder".into(),
        };
        format!("DAVIS {} ({} sequences, {from})", self.annotations.display(), self.sequences.len())
    }

    /// The annotated frames of `sequence` (file stems, sorted) and their annotations.
    pub fn annotations(&self, sequence: &str) -> Result<(Vec<String>, Vec<GrayImage>), DavisError> {
        let dir = self.annotations.join(sequence);
        let names = files_with_extension(&dir, "png")?;
        if names.is_empty() {
            return Err(DavisError::NoFrames(dir));
        }
        let stems: Vec<String> = names.iter().map(|n| stem(n).to_string()).collect();
        let images = self.images.join(sequence);
        if images.is_dir() {
            for jpg in files_with_extension(&images, "jpg")? {
                if !stems.iter().any(|s| s == stem(&jpg)) {
                    return Err(DavisError::MissingAnnotation { image: images.join(&jpg), annotation: dir.join(format!("{}.png", stem(&jpg))) });
                }
            }
        }
        let mut masks: Vec<GrayImage> = Vec::with_capacity(names.len());
        for n in &names {
            let path = dir.join(n);
            let m = read_label_png(&path)?;
            if let Some(first) = masks.first() {
                check_size(&path, &m, &dir.join(&names[0]), first)?;
            }
            masks.push(m);
        }
        Ok((stems, masks))
    }

    /// Score the predictions of one sequence (`predictions/<sequence>/<frame>.png`).
    pub fn evaluate_sequence(&self, predictions: &Path, sequence: &str) -> Result<SequenceScores, DavisError> {
        let (frames, gt) = self.annotations(sequence)?;
        let reference = self.annotations.join(sequence).join(format!("{}.png", frames[0]));
        let mut pred = Vec::with_capacity(frames.len());
        for frame in &frames {
            let path = predictions.join(sequence).join(format!("{frame}.png"));
            if !path.is_file() {
                return Err(DavisError::MissingPrediction { path, sequence: sequence.to_string(), frame: frame.clone() });
            }
            let m = read_label_png(&path)?;
            check_size(&path, &m, &reference, &gt[0])?;
            if let Some(&id) = m.as_raw().iter().max().filter(|&&id| id as usize > self.max_proposals) {
                let hint = if id == VOID { " (255 is void in annotations; predictions have no void: write 0 there)" } else { "" };
                return Err(DavisError::TooManyObjects { path, id, max: self.max_proposals, hint });
            }
            pred.push(m);
        }
        evaluate_sequence_with(sequence, &gt, &pred, self.max_proposals)
    }

    /// Score the predictions of every sequence, calling `done` after each.
    pub fn evaluate(&self, predictions: &Path, mut done: impl FnMut(&SequenceScores)) -> Result<Vec<SequenceScores>, DavisError> {
        if !predictions.is_dir() {
            return Err(DavisError::Io { path: predictions.to_path_buf(), reason: "not a folder of predictions (PRED/<sequence>/<frame>.png)".into() });
        }
        let mut out = Vec::with_capacity(self.sequences.len());
        for s in &self.sequences {
            let scores = self.evaluate_sequence(predictions, s)?;
            done(&scores);
            out.push(scores);
        }
        Ok(out)
    }
}

fn check_size(path: &Path, m: &GrayImage, reference: &Path, r: &GrayImage) -> Result<(), DavisError> {
    if m.dimensions() == r.dimensions() {
        return Ok(());
    }
    Err(DavisError::SizeMismatch {
        path: path.to_path_buf(),
        width: m.width(),
        height: m.height(),
        reference: reference.to_path_buf(),
        ref_width: r.width(),
        ref_height: r.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_label_png;

    fn mask(w: usize, h: usize, pixels: &[(usize, usize)]) -> Mask {
        Mask::from_fn(w, h, |x, y| pixels.contains(&(x, y)))
    }

    fn block(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Mask {
        Mask::from_fn(w, h, |x, y| (x0..x1).contains(&x) && (y0..y1).contains(&y))
    }

    fn labels(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
    }

    #[test]
    fn jaccard_by_hand() {
        let gt = block(4, 4, 0, 0, 2, 2);
        let pred = block(4, 4, 0, 0, 2, 1);
        assert_eq!(jaccard(&gt, &pred, None).unwrap(), 0.5);
        // A void pixel on the ground truth only leaves the union: 2 / 3.
        let void = mask(4, 4, &[(1, 1)]);
        assert_eq!(jaccard(&gt, &pred, Some(&void)).unwrap(), 2.0 / 3.0);
        let empty = block(4, 4, 0, 0, 0, 0);
        assert_eq!(jaccard(&empty, &empty, None).unwrap(), 1.0);
        assert_eq!(jaccard(&gt, &empty, None).unwrap(), 0.0);
        assert!(matches!(jaccard(&gt, &block(3, 4, 0, 0, 1, 1), None), Err(DavisError::Shape(_))));
    }

    #[test]
    fn boundary_map_by_hand() {
        // A 2×2 block at (1,1): the boundary is offset towards the origin.
        let b = boundary_map(&block(4, 4, 1, 1, 3, 3));
        let want = ["1110", "1010", "1110", "0000"];
        for (y, row) in want.iter().enumerate() {
            let got: String = (0..4).map(|x| if b.get(x, y) { '1' } else { '0' }).collect();
            assert_eq!(&got, row, "row {y}");
        }
        // Objects touching the last row / column: only the east (last row) or south (last column)
        // neighbour counts there, the corner never.
        let b = boundary_map(&block(3, 3, 1, 1, 3, 3));
        let got: Vec<String> = (0..3).map(|y| (0..3).map(|x| if b.get(x, y) { '1' } else { '0' }).collect()).collect();
        assert_eq!(got, ["111", "100", "100"]);
    }

    #[test]
    fn radius_and_disk() {
        assert_eq!(bound_radius(96, 64), 1);
        assert_eq!(bound_radius(128, 96), 2);
        assert_eq!(bound_radius(240, 180), 3);
        assert_eq!(bound_radius(854, 480), 8);
        assert_eq!(disk(1).len(), 5);
        assert_eq!(disk(2).len(), 13);
        assert_eq!(disk(3).len(), 29);
    }

    #[test]
    fn f_measure_by_hand() {
        // Single pixels: each boundary is the 2×2 block up-left of the pixel.
        let (w, h) = (16, 8); // radius 1
        let gt = mask(w, h, &[(5, 3)]);
        assert_eq!(f_measure(&gt, &gt, None).unwrap(), 1.0);
        // Two columns apart: half of each boundary lies within one pixel of the other.
        assert_eq!(f_measure(&gt, &mask(w, h, &[(7, 3)]), None).unwrap(), 0.5);
        let empty = mask(w, h, &[]);
        assert_eq!(f_measure(&gt, &empty, None).unwrap(), 0.0);
        assert_eq!(f_measure(&empty, &gt, None).unwrap(), 0.0);
        assert_eq!(f_measure(&empty, &empty, None).unwrap(), 1.0);
        // Void over the prediction: its boundary is gone (P = 1, R = 0).
        assert_eq!(f_measure(&gt, &mask(w, h, &[(7, 3)]), Some(&mask(w, h, &[(7, 3)]))).unwrap(), 0.0);

        // 100×100: radius 2, a disk (dx² + dy² ≤ 4), not a square.
        let (w, h) = (100, 100);
        let gt = mask(w, h, &[(5, 3)]);
        assert_eq!(f_measure(&gt, &mask(w, h, &[(8, 3)]), None).unwrap(), 0.5);
        assert_eq!(f_measure(&gt, &mask(w, h, &[(7, 5)]), None).unwrap(), 0.25);
    }

    #[test]
    fn statistics_by_hand() {
        let s = statistics(&[1.0, 0.8, 0.6, 0.4, 0.2, 0.0]);
        // Quarters of 6 frames: [0, 1] … [4, 5].
        assert!((s.mean - 0.5).abs() < 1e-15);
        assert_eq!(s.recall, 0.5);
        assert!((s.decay - 0.8).abs() < 1e-15, "{}", s.decay);
        let s = statistics(&[0.7]);
        assert_eq!((s.mean, s.recall, s.decay), (0.7, 1.0, 0.0));
        // Two frames: quarter bounds 0, 0, 1, 1, 1.
        let s = statistics(&[0.9, 0.3]);
        assert!((s.decay - 0.6).abs() < 1e-15);
        assert_eq!(s.recall, 0.5);
        // Decay from 9 frames: bounds 0, 2, 4, 6, 8.
        let v: Vec<f64> = (0..9).map(|i| i as f64).collect();
        assert_eq!(statistics(&v).decay, 1.0 - 7.0);
        assert!(statistics(&[]).mean.is_nan());
    }

    /// Reference: one (object, proposal) pair through the plain per-frame functions.
    fn reference_pair(gt: &GrayImage, pred: &GrayImage, o: u8, p: u8, n_gt: u8) -> (f64, f64) {
        let g = Mask::from_fn(gt.width() as usize, gt.height() as usize, |x, y| {
            let l = gt.get_pixel(x as u32, y as u32).0[0];
            l == o && l <= n_gt
        });
        let q = Mask::from_labels(pred, p);
        let v = Mask::from_labels(gt, VOID);
        (jaccard(&g, &q, Some(&v)).unwrap(), f_measure(&g, &q, Some(&v)).unwrap())
    }

    #[test]
    fn sequence_scores_equal_the_per_frame_functions() {
        // Pseudo-random blobs with void, 3 objects, 4 proposals, 3 sizes (radius 1, 2, 3).
        let mut state = 12345u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for (w, h) in [(20u32, 12u32), (110, 70), (200, 150)] {
            let mut gt = vec![];
            let mut pred = vec![];
            for _ in 0..3 {
                let centres: Vec<(i64, i64, i64, u8)> = (0..6).map(|_| (next() as i64 % w as i64, next() as i64 % h as i64, 2 + next() as i64 % 9, (next() % 5) as u8)).collect();
                let paint = |x: u32, y: u32, shift: i64, void: bool| {
                    let mut l = 0;
                    for &(cx, cy, r, id) in &centres {
                        let (dx, dy) = (x as i64 - cx - shift, y as i64 - cy);
                        if dx * dx + dy * dy <= r * r {
                            l = id;
                        }
                    }
                    if void && (x + 2 * y) % 17 == 0 {
                        VOID
                    } else {
                        l
                    }
                };
                gt.push(labels(w, h, |x, y| paint(x, y, 0, true)));
                pred.push(labels(w, h, |x, y| (paint(x, y, 1, false) + 1) % 5));
            }
            // Frame 0 decides the objects: make sure it has some.
            gt[0].put_pixel(0, 0, image::Luma([3]));
            let s = evaluate_sequence("random", &gt, &pred).unwrap();
            let n_gt = gt[0].as_raw().iter().filter(|&&l| l != VOID).max().copied().unwrap();
            assert!(n_gt >= 3);
            assert_eq!(s.objects.len(), n_gt as usize);
            for obj in &s.objects {
                for (t, (g, p)) in gt.iter().zip(&pred).enumerate() {
                    let (j, f) = reference_pair(g, p, obj.object, obj.proposal as u8, n_gt);
                    assert_eq!(obj.j_frames[t], j, "{w}×{h} object {} frame {t}", obj.object);
                    assert_eq!(obj.f_frames[t], f, "{w}×{h} object {} frame {t}", obj.object);
                }
            }
        }
    }

    #[test]
    fn unsupervised_matching_by_hand() {
        let (w, h) = (12u32, 8u32);
        // Ground truth: object 1 left, object 2 right; object 3 only from frame 1 (not counted:
        // frame 0's largest id is 2).
        let gt: Vec<GrayImage> = (0..3)
            .map(|t| labels(w, h, |x, y| if x < 4 && y < 4 { 1 } else if x >= 8 && y >= 4 { 2 } else if t > 0 && x == 5 && y == 5 { 3 } else { 0 }))
            .collect();
        // Predictions: object 2 as id 1 (exact), object 1 as id 3 (exact), an extra id 2.
        let pred: Vec<GrayImage> = (0..3).map(|_| labels(w, h, |x, y| if x < 4 && y < 4 { 3 } else if x >= 8 && y >= 4 { 1 } else if y == 7 && x < 3 { 2 } else { 0 })).collect();
        let s = evaluate_sequence("s", &gt, &pred).unwrap();
        assert_eq!(s.predicted_objects, 3);
        assert_eq!(s.objects.iter().map(|o| (o.object, o.proposal)).collect::<Vec<_>>(), [(1, 3), (2, 1)]);
        assert_eq!(s.objects.iter().map(|o| o.upstream_name.as_str()).collect::<Vec<_>>(), ["s_2", "s_1"]);
        assert!(s.objects.iter().all(|o| o.j.mean == 1.0 && o.f.mean == 1.0 && o.j.recall == 1.0 && o.j.decay == 0.0));
        assert_eq!(s.jf_mean(), Some(1.0));

        // Only object 2 predicted (as id 1): object 1 gets the empty padding proposal 2.
        let pred: Vec<GrayImage> = (0..3).map(|_| labels(w, h, |x, y| u8::from(x >= 8 && y >= 4))).collect();
        let s = evaluate_sequence("s", &gt, &pred).unwrap();
        assert_eq!(s.predicted_objects, 1);
        assert_eq!(s.objects.iter().map(|o| (o.object, o.proposal)).collect::<Vec<_>>(), [(1, 2), (2, 1)]);
        assert_eq!((s.objects[0].j.mean, s.objects[0].f.mean), (0.0, 0.0));
        let sum = summarize(&[s]).unwrap();
        assert_eq!((sum.j_mean, sum.f_mean, sum.jf_mean, sum.objects), (0.5, 0.5, 0.5, 2));

        // An object that is absent in a frame scores 1 there against an empty proposal.
        let gt2: Vec<GrayImage> = (0..2).map(|t| labels(w, h, |x, y| u8::from(t == 0 && x < 4 && y < 4))).collect();
        let empty: Vec<GrayImage> = (0..2).map(|_| labels(w, h, |_, _| 0)).collect();
        let s = evaluate_sequence("gone", &gt2, &empty).unwrap();
        assert_eq!(s.objects[0].j_frames, [0.0, 1.0]);
        assert_eq!(s.objects[0].f_frames, [0.0, 1.0]);
        assert_eq!(s.objects[0].j.decay, -1.0);

        // No objects in the first frame: nothing to score.
        let s = evaluate_sequence("none", &empty, &pred[..2]).unwrap();
        assert!(s.objects.is_empty() && s.jf_mean().is_none());
        assert!(summarize(&[s]).is_none());
        assert!(matches!(evaluate_sequence("x", &gt, &pred[..2]), Err(DavisError::Shape(_))));
    }

    fn write(path: &Path, m: &GrayImage) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_label_png(m, path).unwrap();
    }

    #[test]
    fn folder_layout_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (root, preds) = (dir.path().join("DAVIS"), dir.path().join("pred"));
        let ann = root.join("Annotations/480p");
        let frame = |t: u32| labels(10, 6, move |x, _| u8::from(x == t));
        for seq in ["b", "a"] {
            for t in 0..3 {
                write(&ann.join(seq).join(format!("0000{t}.png")), &frame(t));
                write(&preds.join(seq).join(format!("0000{t}.png")), &frame(t));
            }
        }
        let d = Davis::open(&root, None).unwrap();
        assert_eq!(d.sequences, ["a", "b"]);
        assert!(d.sequence_list.is_none());
        let all = d.evaluate(&preds, |_| {}).unwrap();
        assert_eq!(summarize(&all).unwrap().jf_mean, 1.0);

        // A list file picks and orders the sequences; a named set must exist.
        std::fs::create_dir_all(root.join("ImageSets/2017")).unwrap();
        std::fs::write(root.join("ImageSets/2017/val.txt"), "b\n\n").unwrap();
        assert_eq!(Davis::open(&root, None).unwrap().sequences, ["b"]);
        let e = Davis::open(&root, Some("train")).unwrap_err().to_string();
        assert!(e.contains("train.txt"), "{e}");
        std::fs::write(root.join("ImageSets/2017/val.txt"), "b\nzzz\n").unwrap();
        let e = Davis::open(&root, None).unwrap_err().to_string();
        assert!(e.contains("zzz") && e.contains("no annotation folder"), "{e}");
        std::fs::remove_dir_all(root.join("ImageSets")).unwrap();

        // Missing prediction, wrong size, too many objects, void in a prediction.
        std::fs::remove_file(preds.join("a/00001.png")).unwrap();
        let e = d.evaluate(&preds, |_| {}).unwrap_err().to_string();
        assert!(e.contains(&preds.join("a/00001.png").display().to_string()) && e.contains("no such prediction"), "{e}");
        write(&preds.join("a/00001.png"), &labels(11, 6, |_, _| 0));
        let e = d.evaluate(&preds, |_| {}).unwrap_err().to_string();
        assert!(e.contains("a/00001.png: 11×6") && e.contains("a/00000.png is 10×6"), "{e}");
        write(&preds.join("a/00001.png"), &labels(10, 6, |x, _| if x == 0 { 21 } else { 0 }));
        let e = d.evaluate(&preds, |_| {}).unwrap_err().to_string();
        assert!(e.contains("a/00001.png: object id 21") && e.contains("at most 20"), "{e}");
        write(&preds.join("a/00001.png"), &labels(10, 6, |x, _| if x == 0 { VOID } else { 0 }));
        let e = d.evaluate(&preds, |_| {}).unwrap_err().to_string();
        assert!(e.contains("write 0 there"), "{e}");
        // An annotation of another size; a frame image without annotation; an RGB annotation.
        write(&ann.join("a/00001.png"), &labels(10, 7, |_, _| 0));
        let e = d.evaluate_sequence(&preds, "a").unwrap_err().to_string();
        assert!(e.contains("a/00001.png: 10×7"), "{e}");
        write(&ann.join("a/00001.png"), &frame(1));
        std::fs::create_dir_all(root.join("JPEGImages/480p/a")).unwrap();
        image::RgbImage::new(10, 6).save(root.join("JPEGImages/480p/a/00007.jpg")).unwrap();
        let e = d.evaluate_sequence(&preds, "a").unwrap_err().to_string();
        assert!(e.contains("00007.jpg: no annotation"), "{e}");
        std::fs::remove_file(root.join("JPEGImages/480p/a/00007.jpg")).unwrap();
        image::RgbImage::new(10, 6).save(ann.join("a/00002.png")).unwrap();
        let e = d.evaluate_sequence(&preds, "a").unwrap_err().to_string();
        assert!(e.contains("a/00002.png") && e.contains("8-bit grey or palette PNG"), "{e}");

        // Annotations_unsupervised, when there, is what the unsupervised task reads.
        write(&root.join("Annotations_unsupervised/480p/c/00000.png"), &frame(0));
        let d = Davis::open(&root, None).unwrap();
        assert!(d.annotations.ends_with("Annotations_unsupervised/480p"));
        assert_eq!(d.sequences, ["c"]);
        assert!(matches!(Davis::open(dir.path(), None), Err(DavisError::NotDavis(_))));
    }
}
