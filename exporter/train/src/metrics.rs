//! Segmentation metrics exactly as upstream MSF defines them (`learn/metric.py`, spec §4): ARI,
//! FG-ARI, mBO and mIoU of one predicted label map against one ground-truth label map.
//!
//! Ground truth follows upstream's instance layout: label [`BACKGROUND`] is the background segment
//! (GT channel 0: counted by ARI, mBO and mIoU, skipped by FG-ARI), every other label is one
//! object, and [`UNANNOTATED`] pixels take part in nothing. Predictions are slot indices.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use serde::Serialize;

/// Ground-truth label of the background segment.
pub const BACKGROUND: u8 = 0;
/// Ground-truth label of pixels without annotation (PASCAL VOC's "void").
pub const UNANNOTATED: u8 = 255;

/// One image's scores; `None` where the image has no ground truth for that metric (upstream's
/// `valid` flag: such images are left out of the average).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Scores {
    pub ari: Option<f64>,
    pub fg_ari: Option<f64>,
    pub mbo: Option<f64>,
    pub miou: Option<f64>,
}

/// Contingency table between predicted and ground-truth segments over the counted pixels.
struct Table {
    /// `n[p][g]`: pixels with prediction `p` and ground truth `g` (dense, small: ≤ 256 × 256).
    n: Vec<Vec<u64>>,
    /// Predicted segment sizes over the counted pixels (what the Rand index sees).
    pred_sizes: Vec<u64>,
    /// Predicted segment sizes over every pixel: upstream's IoU union counts a prediction's
    /// unannotated pixels too.
    pred_areas: Vec<u64>,
    gt_sizes: Vec<u64>,
}

impl Table {
    /// Pixels whose ground truth passes `keep`.
    fn new(pred: &[u8], gt: &[u8], keep: impl Fn(u8) -> bool) -> Table {
        let mut n = vec![vec![0u64; 256]; 256];
        let mut pred_areas = vec![0u64; 256];
        for (&p, &g) in pred.iter().zip(gt) {
            pred_areas[p as usize] += 1;
            if keep(g) {
                n[p as usize][g as usize] += 1;
            }
        }
        let pred_sizes = n.iter().map(|row| row.iter().sum()).collect();
        let gt_sizes = (0..256).map(|g| n.iter().map(|row| row[g]).sum()).collect();
        Table { n, pred_sizes, pred_areas, gt_sizes }
    }

    fn total(&self) -> u64 {
        self.gt_sizes.iter().sum()
    }

    /// Adjusted Rand index; 1 when its denominator is 0 (both sides one cluster, or all singletons).
    fn ari(&self) -> f64 {
        let pairs = |v: u64| (v * v.saturating_sub(1)) as f64;
        let r: f64 = self.n.iter().flatten().map(|&v| pairs(v)).sum();
        let a: f64 = self.gt_sizes.iter().map(|&v| pairs(v)).sum();
        let b: f64 = self.pred_sizes.iter().map(|&v| pairs(v)).sum();
        let expected = a * b / pairs(self.total()).max(1.0);
        let max = (a + b) / 2.0;
        let denominator = max - expected;
        if denominator == 0.0 {
            1.0
        } else {
            (r - expected) / denominator
        }
    }

    /// IoU of every (present prediction, present ground truth) pair, rows = ground truth.
    fn ious(&self) -> (Vec<usize>, Vec<usize>, Vec<Vec<f64>>) {
        let preds: Vec<usize> = (0..256).filter(|&p| self.pred_areas[p] > 0).collect();
        let gts: Vec<usize> = (0..256).filter(|&g| self.gt_sizes[g] > 0).collect();
        let iou = gts
            .iter()
            .map(|&g| {
                preds
                    .iter()
                    .map(|&p| {
                        let inter = self.n[p][g];
                        let union = self.pred_areas[p] + self.gt_sizes[g] - inter;
                        inter as f64 / union as f64
                    })
                    .collect()
            })
            .collect();
        (preds, gts, iou)
    }
}

/// All four metrics of one image. `pred` and `gt` are label maps of the same size.
///
/// # Panics
/// If the two maps differ in length.
pub fn score(pred: &[u8], gt: &[u8]) -> Scores {
    score_with(pred, gt, None)
}

/// Prediction label of frame pixels no model view covered (the runtime's `VOID`).
pub const UNCOVERED: u8 = 255;

/// [`score`] over a whole frame where some pixels may have no prediction ([`UNCOVERED`], e.g.
/// outside a centre crop): they count as missed. For ARI and FG-ARI they form one segment (as the
/// one-segment baseline); for mBO and mIoU they are no segment at all, so an object outside the
/// crop has IoU 0 with every prediction.
pub fn score_frame(pred: &[u8], gt: &[u8]) -> Scores {
    score_with(pred, gt, Some(UNCOVERED))
}

fn score_with(pred: &[u8], gt: &[u8], uncovered: Option<u8>) -> Scores {
    assert_eq!(pred.len(), gt.len(), "prediction and ground truth differ in size");
    let all = Table::new(pred, gt, |g| g != UNANNOTATED);
    let fg = Table::new(pred, gt, |g| g != UNANNOTATED && g != BACKGROUND);
    let any = all.total() > 0;
    let (mbo, miou) = if any {
        let (preds, gts, mut iou) = all.ious();
        if let Some(u) = uncovered {
            for row in &mut iou {
                for (p, v) in preds.iter().zip(row.iter_mut()) {
                    if *p == u as usize {
                        *v = 0.0;
                    }
                }
            }
        }
        let best: f64 = iou.iter().map(|row| row.iter().copied().fold(0.0, f64::max)).sum();
        (Some(best / gts.len() as f64), Some(matched_iou(&iou) / gts.len() as f64))
    } else {
        (None, None)
    };
    Scores { ari: any.then(|| all.ari()), fg_ari: (fg.total() > 0).then(|| fg.ari()), mbo, miou }
}

/// Sum of IoUs of the one-to-one matching of ground-truth rows to prediction columns that
/// maximises it (scipy's `linear_sum_assignment(maximize=True)` on the rectangular matrix).
fn matched_iou(iou: &[Vec<f64>]) -> f64 {
    let (rows, cols) = (iou.len(), iou.first().map_or(0, Vec::len));
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    // Kuhn–Munkres needs rows ≤ columns and integer weights: transpose when needed and scale the
    // IoUs to integers (1e-12 resolution); the sum is then taken over the exact IoUs.
    let transpose = rows > cols;
    let (r, c) = if transpose { (cols, rows) } else { (rows, cols) };
    let at = |i: usize, j: usize| if transpose { iou[j][i] } else { iou[i][j] };
    let weights = Matrix::from_fn(r, c, |(i, j)| (at(i, j) * 1e12).round() as i64);
    let (_, assignment) = kuhn_munkres(&weights);
    assignment.iter().enumerate().map(|(i, &j)| at(i, j)).sum()
}

/// Mean of each metric over the images where it is defined, and how many those were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub ari: Option<f64>,
    pub fg_ari: Option<f64>,
    pub mbo: Option<f64>,
    pub miou: Option<f64>,
    pub images: usize,
    pub images_with_objects: usize,
}

/// Average per-image scores the way upstream does (over valid images only).
pub fn summarize(scores: &[Scores]) -> Summary {
    let mean = |f: fn(&Scores) -> Option<f64>| {
        let v: Vec<f64> = scores.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Summary {
        ari: mean(|s| s.ari),
        fg_ari: mean(|s| s.fg_ari),
        mbo: mean(|s| s.mbo),
        miou: mean(|s| s.miou),
        images: scores.len(),
        images_with_objects: scores.iter().filter(|s| s.fg_ari.is_some()).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_pixels_are_missed() {
        // Object 1 lies where nothing was predicted: as a segment it would match perfectly.
        let gt = [0, 0, 1, 1];
        let pred = [0, 0, UNCOVERED, UNCOVERED];
        assert_eq!(score(&pred, &gt).mbo, Some(1.0));
        let s = score_frame(&pred, &gt);
        assert_eq!(s.mbo, Some(0.5));
        assert_eq!(s.miou, Some(0.5));
        assert_eq!(s.ari, score(&pred, &gt).ari, "ARI sees the uncovered pixels as one segment");
    }

    #[test]
    fn identical_maps_score_one() {
        let gt = [0, 0, 1, 1, 2, 2, 2, 0];
        let pred = [5, 5, 3, 3, 0, 0, 0, 5];
        let s = score(&pred, &gt);
        assert_eq!(s, Scores { ari: Some(1.0), fg_ari: Some(1.0), mbo: Some(1.0), miou: Some(1.0) });
    }

    #[test]
    fn unannotated_pixels_count_for_nothing() {
        let s = score(&[0, 1, 2, 3], &[UNANNOTATED; 4]);
        assert_eq!(s, Scores::default());
        let only_background = score(&[0, 1, 0, 1], &[0, 0, 0, UNANNOTATED]);
        assert!(only_background.ari.is_some() && only_background.fg_ari.is_none());
    }

    #[test]
    fn more_objects_than_slots_leaves_some_unmatched() {
        // Three ground-truth segments, one prediction covering everything.
        let gt = [0, 0, 1, 1, 2, 2];
        let s = score(&[0; 6], &gt);
        assert_eq!(s.mbo, Some(1.0 / 3.0));
        assert_eq!(s.miou, Some(1.0 / 9.0));
    }
}
