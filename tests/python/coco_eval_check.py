"""COCO evaluation of `msf-run --coco-results` with pycocotools, the ecosystem's own code.

Two steps::

    python tests/python/coco_eval_check.py make DIR
        writes DIR/images/<id>.png (generated shapes on gradient backgrounds; 12-digit numbers as
        file stems, as COCO names its files), DIR/gt/<id>.png (object index per pixel, 0 =
        background) and DIR/annotations.json, a COCO instances file built from those masks
        (one category, "object", id 1).

    python tests/python/coco_eval_check.py check DIR RESULTS OUT [--category N]
        1. COCO(DIR/annotations.json).loadRes(RESULTS) on the file as msf-run wrote it, then
           COCOeval(iouType="segm") evaluate / accumulate / summarize: fails if pycocotools refuses
           the file or the evaluation finds nothing to compare.
        2. Independently of msf: every entry's segmentation, decoded by pycocotools.mask, equals
           (OUT/masks/<stem>.png == slot_id), the mask PNG msf-run wrote for the same frame and
           slot (flat layout, frame resolution); area and bbox agree with pycocotools; every
           non-empty slot of every PNG has exactly one entry; scores lie in (0, 1].
        Prints AP/AR, and the AP the same masks get with every score 1.0 (what the score adds).

Exits 1 with one line on the first problem.
"""

import contextlib
import io
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as cocomask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# (image id, width, height): square frames (the centre crop is the whole frame) and one wide frame
# (pixels left and right of the crop belong to no slot).
IMAGES = [(101, 256, 256), (102, 256, 256), (103, 192, 192), (104, 320, 256), (105, 256, 256)]


def file_stem(image_id: int) -> str:
    return f"{image_id:012d}"


def draw_image(rng: np.random.Generator, w: int, h: int):
    """A gradient background and 2-4 shapes (some striped), later ones on top; returns RGB and the
    object index per pixel (0 = background)."""
    c0, c1 = rng.integers(40, 200, 3), rng.integers(40, 200, 3)
    t = (np.arange(w)[None, :] / w + np.arange(h)[:, None] / h) / 2
    rgb = (c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]).astype(np.uint8)
    labels = np.zeros((h, w), np.uint8)
    palette = [(230, 40, 40), (40, 220, 200), (220, 40, 200), (240, 200, 30), (40, 90, 230)]
    n = int(rng.integers(2, 5))
    for i in range(1, n + 1):
        shape = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(shape)
        s = int(rng.integers(min(w, h) // 6, min(w, h) // 3))
        cx, cy = int(rng.integers(s, w - s)), int(rng.integers(s, h - s))
        kind = i % 3
        if kind == 0:
            d.ellipse([cx - s, cy - int(s * 0.7), cx + s, cy + int(s * 0.7)], fill=1)
        elif kind == 1:
            d.polygon([(cx - s, cy - s), (cx + s, cy - s // 2), (cx, cy + s)], fill=1)
        else:
            d.rectangle([cx - s, cy - s // 2, cx + s // 2, cy + s], fill=1)
        m = np.asarray(shape, bool)
        colour = np.array(palette[(i + int(rng.integers(0, 5))) % len(palette)], np.uint8)
        if rng.random() < 0.4:
            yy, xx = np.mgrid[0:h, 0:w]
            stripe = ((xx + yy) // 6) % 2 == 0
            rgb[m & stripe] = colour
            rgb[m & ~stripe] = colour // 3
        else:
            rgb[m] = colour
        labels[m] = i
    return rgb, labels


def make(root: str) -> int:
    rng = np.random.default_rng(20250101)
    for sub in ("images", "gt"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    images, annotations = [], []
    for image_id, w, h in IMAGES:
        rgb, labels = draw_image(rng, w, h)
        name = file_stem(image_id) + ".png"
        Image.fromarray(rgb).save(os.path.join(root, "images", name))
        Image.fromarray(labels, mode="L").save(os.path.join(root, "gt", name))
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for obj in range(1, int(labels.max()) + 1):
            m = np.asfortranarray((labels == obj).astype(np.uint8))
            if not m.any():
                continue  # wholly covered by later shapes
            rle = cocomask.encode(m)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(cocomask.area(rle)), "bbox": [float(v) for v in cocomask.toBbox(rle)],
            })
    ann = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump(ann, f)
    print(f"coco_eval_check: {len(images)} images, {len(annotations)} objects in {root}")
    return 0


def evaluate(gt: COCO, results) -> list:
    """COCOeval segm on `results` (a path: loaded by pycocotools as it is; or a list)."""
    dt = gt.loadRes(results)
    e = COCOeval(gt, dt, iouType="segm")
    e.evaluate()
    e.accumulate()
    e.summarize()
    return list(e.stats)


def fail(msg: str) -> int:
    print(f"coco_eval_check: {msg}")
    return 1


def check(root: str, results_path: str, out: str, category: int) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(os.path.join(root, "annotations.json"))
    # 1. The file as it is, through the whole evaluation.
    summary = io.StringIO()
    try:
        with contextlib.redirect_stdout(summary):
            stats = evaluate(gt, results_path)
    except Exception as e:  # noqa: BLE001 - any refusal by pycocotools is the failure reported
        return fail(f"pycocotools refuses {results_path}: {type(e).__name__}: {e}")
    if len(stats) != 12 or any(not math.isfinite(s) for s in stats) or stats[0] < 0 or stats[8] < 0:
        return fail(f"COCOeval found nothing to compare: stats {stats}")

    # 2. Each entry against the mask PNG msf-run wrote for the same frame and slot.
    results = json.load(open(results_path))
    if not isinstance(results, list) or not results:
        return fail("the results file is not a non-empty JSON array")
    by_image = {}
    for r in results:
        for key in ("image_id", "category_id", "segmentation", "score", "bbox", "area", "slot_id"):
            if key not in r:
                return fail(f"an entry lacks {key!r}: {r}")
        by_image.setdefault(r["image_id"], []).append(r)
    for image_id, w, h in IMAGES:
        stem = file_stem(image_id)
        labels = np.asarray(Image.open(os.path.join(out, "masks", stem + ".png")))  # palette indices
        if labels.shape != (h, w):
            return fail(f"{stem}: mask PNG is {labels.shape}, the frame {(h, w)}")
        entries = by_image.get(image_id, [])
        want_slots = sorted(int(v) for v in np.unique(labels) if v != 255)
        got_slots = sorted(r["slot_id"] for r in entries)
        if got_slots != want_slots:
            return fail(f"{stem}: entries for slots {got_slots}, the PNG has slots {want_slots}")
        for r in entries:
            seg = r["segmentation"]
            if seg["size"] != [h, w] or not isinstance(seg["counts"], str):
                return fail(f"{stem} slot {r['slot_id']}: segmentation {seg['size']} is not a compressed RLE of the frame")
            got = cocomask.decode(seg)
            want = (labels == r["slot_id"]).astype(np.uint8)
            if got.shape != want.shape or not np.array_equal(got, want):
                return fail(f"{stem} slot {r['slot_id']}: pycocotools decodes another mask than the PNG's")
            if int(cocomask.area(seg)) != r["area"] or [int(v) for v in cocomask.toBbox(seg)] != r["bbox"]:
                return fail(f"{stem} slot {r['slot_id']}: area/bbox {r['area']} {r['bbox']} != pycocotools'")
            if r["category_id"] != category:
                return fail(f"{stem} slot {r['slot_id']}: category_id {r['category_id']}, expected {category}")
            if not (0.0 < r["score"] <= 1.0):
                return fail(f"{stem} slot {r['slot_id']}: score {r['score']} outside (0, 1]")
    if set(by_image) - {i for i, _, _ in IMAGES}:
        return fail(f"entries for unknown images {sorted(set(by_image) - {i for i, _, _ in IMAGES})}")

    # What the score adds: the same masks ranked by nothing.
    flat = [dict(r, score=1.0) for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        const = evaluate(gt, flat)
    print(f"coco_eval_check: {len(results)} results for {len(IMAGES)} images accepted by COCO.loadRes and COCOeval as written, "
          f"each equal to its mask PNG; segm AP {stats[0]:.3f} AP50 {stats[1]:.3f} AR100 {stats[8]:.3f} "
          f"(AP {const[0]:.3f} AP50 {const[1]:.3f} with every score 1.0)")
    return 0


def main(argv) -> int:
    if len(argv) >= 2 and argv[0] == "make":
        return make(argv[1])
    if len(argv) >= 4 and argv[0] == "check":
        category = int(argv[argv.index("--category") + 1]) if "--category" in argv else 1
        return check(argv[1], argv[2], argv[3], category)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
