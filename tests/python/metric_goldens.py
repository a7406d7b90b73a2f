"""Golden values for msf-train's segmentation metrics, from independent implementations:
scikit-learn's adjusted_rand_score for ARI / FG-ARI and scipy's linear_sum_assignment for the
Hungarian mIoU; mBO from the IoU matrix. The definitions follow upstream MSF (learn/metric.py):
ground-truth label 0 is the background segment (skipped by FG-ARI only), 255 is unannotated
(ignored by every metric); an IoU's union counts the prediction's unannotated pixels too.

    python metric_goldens.py OUT.json

Writes {"cases": [{"name", "pred", "gt", "ari", "fg_ari", "mbo", "miou"}]} (null = undefined).
"""
import json
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

UNANNOTATED = 255


def metrics(pred, gt):
    pred, gt = np.asarray(pred, np.int64), np.asarray(gt, np.int64)
    ann = gt != UNANNOTATED
    fg = ann & (gt != 0)
    out = {"ari": None, "fg_ari": None, "mbo": None, "miou": None}
    if ann.any():
        out["ari"] = float(adjusted_rand_score(gt[ann], pred[ann]))
        gts = np.unique(gt[ann])
        preds = np.unique(pred)
        iou = np.zeros((len(gts), len(preds)))
        for i, g in enumerate(gts):
            for j, p in enumerate(preds):
                inter = np.sum((gt == g) & (pred == p))
                union = np.sum(gt == g) + np.sum(pred == p) - inter
                iou[i, j] = inter / union
        out["mbo"] = float(iou.max(1).sum() / len(gts))
        rows, cols = linear_sum_assignment(iou, maximize=True)
        out["miou"] = float(iou[rows, cols].sum() / len(gts))
    if fg.any():
        out["fg_ari"] = float(adjusted_rand_score(gt[fg], pred[fg]))
    return out


def cases():
    rng = np.random.default_rng(20251126)
    # Degenerate and edge cases first.
    yield "one pixel", [3], [0]
    yield "all background, one prediction", [0] * 16, [0] * 16
    yield "all background, split prediction", [0, 1] * 8, [0] * 16
    yield "all unannotated", [0, 1, 2, 3], [UNANNOTATED] * 4
    yield "every pixel its own segment", list(range(16)), list(range(1, 17))
    yield "singleton predictions, one object", list(range(12)), [1] * 12
    yield "one prediction, three segments", [0] * 6, [0, 0, 1, 1, 2, 2]
    yield "perfect up to relabelling", [5, 5, 3, 3, 0, 0, 0, 5], [0, 0, 1, 1, 2, 2, 2, 0]
    yield "objects only on unannotated background", [1, 1, 2, 2, 0, 0], [UNANNOTATED, UNANNOTATED, 4, 4, 9, 9]
    yield "sparse label values", [0, 1, 1, 2, 2, 2, 6, 6], [0, 0, 7, 7, 200, 200, 200, 254]
    yield "prediction on unannotated pixels only", [0, 0, 0, 1, 1], [1, 1, 1, UNANNOTATED, UNANNOTATED]
    # Random pairs: image-like blocks and pixel noise, with and without unannotated pixels.
    for i in range(24):
        n_gt = int(rng.integers(1, 9))
        n_pred = int(rng.integers(1, 12))
        size = int(rng.integers(4, 40))
        if i % 2 == 0:
            # Blocky maps (segments as rectangles, like masks), then noise.
            gt = np.zeros((size, size), np.int64)
            pred = np.zeros((size, size), np.int64)
            for k in range(1, n_gt):
                y, x = rng.integers(0, size, 2)
                h, w = rng.integers(1, size // 2 + 2, 2)
                gt[y:y + h, x:x + w] = k
            for k in range(1, n_pred):
                y, x = rng.integers(0, size, 2)
                h, w = rng.integers(1, size // 2 + 2, 2)
                pred[y:y + h, x:x + w] = k
            flip = rng.random((size, size)) < 0.05
            pred[flip] = rng.integers(0, n_pred, flip.sum())
            gt, pred = gt.ravel(), pred.ravel()
        else:
            gt = rng.integers(0, n_gt, size * size)
            pred = rng.integers(0, n_pred, size * size)
        if i % 3 == 0:
            gt[rng.random(gt.shape) < 0.2] = UNANNOTATED
        yield f"random {i} ({n_gt} gt, {n_pred} pred, {size}x{size})", pred.tolist(), gt.tolist()


def main():
    out = []
    for name, pred, gt in cases():
        out.append({"name": name, "pred": list(map(int, pred)), "gt": list(map(int, gt)), **metrics(pred, gt)})
    with open(sys.argv[1], "w") as f:
        json.dump({"cases": out}, f)
    print(f"metric goldens: {len(out)} cases")


if __name__ == "__main__":
    main()
