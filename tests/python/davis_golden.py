"""DAVIS 2017 J / F goldens for msf-eval's predictions mode (exporter/train/src/davis.rs).

A small DAVIS-2017-layout dataset with predictions, generated deterministically with numpy and
PIL only (integer geometry and numpy's frozen legacy RandomState stream):

    OUT/DAVIS/JPEGImages/480p/<seq>/00000.jpg    frames (not scored)
    OUT/DAVIS/Annotations/480p/<seq>/00000.png   palette PNGs: object ids, 0 background, 255 void
    OUT/DAVIS/ImageSets/2017/val.txt             the sequences
    OUT/predictions/<seq>/00000.png              palette or grey PNGs, ids unrelated to the ground truth

Three sequences of 6 frames at 96×64, 128×96 and 240×180 (boundary tolerance 1, 2 and 3 pixels):
moving ellipses, rectangles and triangles; an object that leaves for a frame, one that appears
after the first frame (not an object for DAVIS: the first annotation decides), one with an id
above the first frame's largest (ignored); void pixels; predictions with permuted ids, an extra
object, a missing one (fewer predicted objects than ground-truth ones), unused ids, an empty frame.

    python davis_golden.py --out DIR                         # generate (what CI runs)
    python davis_golden.py --out DIR --verify GOLDEN.json    # ... and check it is what GOLDEN was made from

Making the golden (once, by hand, in a scratch venv with numpy, opencv-python-headless,
scikit-image, scipy, pandas, Pillow, tqdm; never in CI):

    python davis_golden.py --out DIR --upstream UPSTREAM_CHECKOUT \\
        --upstream-commit SHA --golden tests/goldens/davis_jf.json

runs the official unsupervised evaluation of github.com/davisvideochallenge/davis2017-evaluation
(a checkout at --upstream: its evaluation_method.py for the CSVs, and the same DAVISEvaluation
in-process, watched, for full precision, per-frame values and the matching) on the generated data.
"""
import argparse
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

FRAMES = 6
VOID = 255


# ---------------------------------------------------------------------------------------------
# Geometry on integer grids
# ---------------------------------------------------------------------------------------------

def grid(w, h):
    yy, xx = np.mgrid[0:h, 0:w]
    return xx.astype(np.int64), yy.astype(np.int64)


def ellipse(w, h, cx, cy, rx, ry):
    xx, yy = grid(w, h)
    return (xx - cx) ** 2 * ry * ry + (yy - cy) ** 2 * rx * rx <= rx * rx * ry * ry


def rect(w, h, x0, y0, x1, y1):
    xx, yy = grid(w, h)
    return (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)


def triangle(w, h, a, b, c):
    xx, yy = grid(w, h)

    def side(p, q):
        return (q[0] - p[0]) * (yy - p[1]) - (q[1] - p[1]) * (xx - p[0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


def shift(m, dx, dy):
    out = np.zeros_like(m)
    h, w = m.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = m[ys, xs]
    return out


def dilate4(m):
    return m | shift(m, 1, 0) | shift(m, -1, 0) | shift(m, 0, 1) | shift(m, 0, -1)


def erode4(m):
    return ~dilate4(~m)


def edge(m):
    """Pixels of m next to a pixel outside it, or outside it next to one in it (4-neighbours)."""
    return dilate4(m) & ~erode4(m)


def jitter(m, rng, p):
    """Flip each edge pixel of m with probability p (RandomState: a frozen stream)."""
    flips = rng.random_sample(m.shape) < p
    return m ^ (edge(m) & flips)


def paint(shape, layers):
    """Label map from (id, mask) layers, later ones on top."""
    out = np.zeros(shape, np.uint8)
    for label, m in layers:
        out[m] = label
    return out


# ---------------------------------------------------------------------------------------------
# The sequences: ground truth and predictions per frame
# ---------------------------------------------------------------------------------------------

def seq_orbit(t, rng):
    """96×64 (radius 1). GT 1 an ellipse moving right; GT 2 a rectangle moving down, gone in
    frame 3; void on GT 1's outline in frames 1 and 4. Predictions (palette): id 3 ≈ GT 1 shifted
    and jittered, id 1 ≈ GT 2 grown by a pixel and still there in frame 3, id 2 an extra blob."""
    w, h = 96, 64
    o1 = ellipse(w, h, 20 + 5 * t, 30, 12, 8)
    o2 = rect(w, h, 60, 6 + 3 * t, 80, 22 + 3 * t)
    gt = paint((h, w), [(1, o1)] + ([] if t == 3 else [(2, o2)]))
    if t in (1, 4):
        gt[o1 & ~erode4(o1)] = VOID
    p3 = jitter(shift(o1, 1, 0 if t % 2 else 1), rng, 0.3)
    p1 = dilate4(o2)
    p2 = rect(w, h, 4 + 2 * t, 50, 12 + 2 * t, 58)
    pred = paint((h, w), [(1, p1), (2, p2), (3, p3)])
    return gt, pred, "P"


def seq_stripes(t, rng):
    """128×96 (radius 2). GT 1 a circle, 2 a triangle, 3 a bar across the top. Predictions (grey
    PNG): id 5 ≈ the circle (jittered), id 2 ≈ the triangle (eroded), id 3 half of the bar,
    id 1 a thin wrong strip overlapping the triangle, id 4 unused."""
    w, h = 128, 96
    o1 = ellipse(w, h, 30 + 3 * t, 60 - 2 * t, 14, 14)
    o2 = triangle(w, h, (70 + 2 * t, 80), (110, 40 + t), (120, 85))
    o3 = rect(w, h, 10, 4, 118, 14 + (t % 3))
    gt = paint((h, w), [(1, o1), (2, o2), (3, o3)])
    p5 = jitter(o1, rng, 0.4)
    p2 = erode4(o2) if t != 2 else shift(o2, 3, -2)
    p3 = o3 & rect(w, h, 10, 0, 64 + 4 * t, h)
    p1 = rect(w, h, 80, 60 + t, 124, 63 + t)
    pred = paint((h, w), [(5, p5), (2, p2), (3, p3), (1, p1)])
    return gt, pred, "L"


def seq_cross(t, rng):
    """240×180 (radius 3). Frame 0 has GT 1 and 3, so the objects are 1, 2, 3: GT 2 appears in
    frame 2; GT 4 (frame 3 only) is above frame 0's largest id and counts as background. Void: a
    block over GT 1 in frames 2 and 3. Predictions (palette): only ids 1 and 2, fewer than the
    three objects: id 2 ≈ GT 1 (shifted by 2), id 1 ≈ GT 3 in the first half, then drifting
    onto GT 2; frame 4 predicts nothing."""
    w, h = 240, 180
    o1 = ellipse(w, h, 60 + 8 * t, 90, 30, 20)
    o2 = triangle(w, h, (150, 20 + 4 * t), (200, 30 + 4 * t), (170, 70 + 4 * t))
    o3 = rect(w, h, 20, 140 - 2 * t, 110, 170 - 2 * t)
    o4 = ellipse(w, h, 200, 150, 15, 10)
    layers = [(1, o1), (3, o3)]
    if t >= 2:
        layers.append((2, o2))
    if t == 3:
        layers.append((4, o4))
    gt = paint((h, w), layers)
    if t in (2, 3):
        gt[rect(w, h, 70, 70, 100, 95)] = VOID
    p2 = jitter(shift(o1, 2, 0), rng, 0.2)
    p1 = o3 if t < 3 else dilate4(o2)
    pred = paint((h, w), [(2, p2), (1, p1)])
    if t == 4:
        pred[:] = 0
    return gt, pred, "P"


SEQUENCES = [("orbit", seq_orbit, 1), ("stripes", seq_stripes, 2), ("cross", seq_cross, 3)]


def davis_palette():
    """DAVIS / PASCAL VOC colour map (colour i spreads i's bits over R, G, B from the top)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def save_png(labels, path, mode):
    im = Image.fromarray(labels.astype(np.uint8))
    if mode == "P":
        im.putpalette(davis_palette())
    im.save(path)


def frame_image(labels, seed):
    """An RGB frame for the labels (only counted by the evaluation, never scored)."""
    h, w = labels.shape
    xx, yy = grid(w, h)
    bg = np.stack([(xx * 2 + seed * 40) % 256, (yy * 3) % 256, np.full_like(xx, 90)], -1)
    pal = np.array(davis_palette(), np.int64).reshape(256, 3)
    img = np.where((labels > 0)[..., None], pal[labels], bg)
    return Image.fromarray(img.astype(np.uint8), "RGB")


def generate(out):
    davis = os.path.join(out, "DAVIS")
    os.makedirs(os.path.join(davis, "ImageSets", "2017"), exist_ok=True)
    with open(os.path.join(davis, "ImageSets", "2017", "val.txt"), "w", newline="\n") as f:
        f.write("".join(name + "\n" for name, _, _ in SEQUENCES))
    for name, make, seed in SEQUENCES:
        rng = np.random.RandomState(seed)
        dirs = [os.path.join(davis, "JPEGImages", "480p", name), os.path.join(davis, "Annotations", "480p", name), os.path.join(out, "predictions", name)]
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        for t in range(FRAMES):
            gt, pred, mode = make(t, rng)
            frame = f"{t:05d}"
            frame_image(np.where(gt == VOID, 0, gt), seed).save(os.path.join(dirs[0], frame + ".jpg"), quality=90)
            save_png(gt, os.path.join(dirs[1], frame + ".png"), "P")
            save_png(pred, os.path.join(dirs[2], frame + ".png"), mode)


def input_hashes(out):
    """sha256 of what is scored: each PNG's mode, size and pixels (not its compressed bytes, which
    depend on zlib), and the sequence list."""
    hashes = {}
    for root, _, files in os.walk(out):
        for f in sorted(files):
            path = os.path.join(root, f)
            rel = os.path.relpath(path, out).replace(os.sep, "/")
            if f.endswith(".png"):
                im = Image.open(path)
                data = f"{im.mode} {im.size[0]}x{im.size[1]}\n".encode() + np.array(im).tobytes()
            elif f.endswith(".txt") and "ImageSets" in rel:
                data = open(path, "rb").read()
            else:
                continue
            hashes[rel] = hashlib.sha256(data).hexdigest()
    return dict(sorted(hashes.items()))


# ---------------------------------------------------------------------------------------------
# The official evaluation (golden making only)
# ---------------------------------------------------------------------------------------------

G_MEASURES = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]


def run_upstream(out, upstream, commit):
    stage = tempfile.mkdtemp(prefix="davis-golden-")
    try:
        # Upstream's unsupervised task reads Annotations_unsupervised/: link the generated annotations.
        davis = os.path.join(stage, "DAVIS")
        os.makedirs(davis)
        for name in ("JPEGImages", "ImageSets"):
            os.symlink(os.path.abspath(os.path.join(out, "DAVIS", name)), os.path.join(davis, name))
        os.symlink(os.path.abspath(os.path.join(out, "DAVIS", "Annotations")), os.path.join(davis, "Annotations_unsupervised"))
        results = os.path.join(stage, "results")
        shutil.copytree(os.path.join(out, "predictions"), results)

        # 1. The tool as its README runs it: CSVs rounded to 3 decimals.
        cmd = [sys.executable, "evaluation_method.py", "--task", "unsupervised", "--set", "val", "--davis_path", davis, "--results_path", results]
        proc = subprocess.run(cmd, cwd=upstream, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"upstream failed:\n{proc.stdout}\n{proc.stderr}")
        csv_global = open(os.path.join(results, "global_results-val.csv")).read()
        csv_seq = open(os.path.join(results, "per-sequence_results-val.csv")).read()

        # 2. The same DAVISEvaluation in-process, watched: full precision, per-frame values, matching.
        sys.path.insert(0, upstream)
        import davis2017.evaluation as ev
        from davis2017 import utils

        lsa_calls, unsup_calls = [], []
        real_lsa, real_unsup = ev.linear_sum_assignment, ev.DAVISEvaluation._evaluate_unsupervised

        def lsa(cost):
            rows, cols = real_lsa(cost)
            lsa_calls.append((-cost, rows, cols))
            return rows, cols

        def unsup(*args, **kwargs):
            j, f = real_unsup(*args, **kwargs)
            unsup_calls.append((j, f, args[1].shape[0]))
            return j, f

        ev.linear_sum_assignment = lsa
        ev.DAVISEvaluation._evaluate_unsupervised = staticmethod(unsup)
        metrics = ev.DAVISEvaluation(davis_root=davis, task="unsupervised", gt_set="val").evaluate(results)
        J, F = metrics["J"], metrics["F"]
        # evaluation_method.py's global numbers.
        g = [(np.mean(J["M"]) + np.mean(F["M"])) / 2.0, np.mean(J["M"]), np.mean(J["R"]), np.mean(J["D"]), np.mean(F["M"]), np.mean(F["R"]), np.mean(F["D"])]
        glob = {k: float(v) for k, v in zip(G_MEASURES, g)}
        # The CSV agrees (3 decimals).
        header, values = csv_global.strip().splitlines()
        assert header.split(",") == G_MEASURES, header
        for k, v in zip(G_MEASURES, values.split(",")):
            assert abs(float(v) - glob[k]) <= 0.0005 + 1e-12, (k, v, glob[k])

        objects, sequences, k = [], {}, 0
        for s, (name, _, _) in enumerate(SEQUENCES):
            j, f, n_res = unsup_calls[s]
            cost, rows, cols = lsa_calls[s]
            check_unique_optimum(name, cost)
            entries = []
            for ii in range(j.shape[0]):
                upstream_name = f"{name}_{ii + 1}"
                jm, jr, jd = utils.db_statistics(j[ii])
                fm, fr, fd = utils.db_statistics(f[ii])
                assert (J["M"][k], J["R"][k], J["D"][k], F["M"][k], F["R"][k], F["D"][k]) == (jm, jr, jd, fm, fr, fd)
                assert J["M_per_object"][upstream_name] == jm
                k += 1
                entries.append({
                    "sequence": name,
                    "upstream_name": upstream_name,
                    "object": int(cols[ii]) + 1,
                    "proposal": int(rows[ii]) + 1,
                    "J-Mean": float(jm), "J-Recall": float(jr), "J-Decay": float(jd),
                    "F-Mean": float(fm), "F-Recall": float(fr), "F-Decay": float(fd),
                    "J_frames": [float(x) for x in j[ii]],
                    "F_frames": [float(x) for x in f[ii]],
                })
            objects += sorted(entries, key=lambda e: e["object"])
            jm = float(np.mean([e["J-Mean"] for e in entries]))
            fm = float(np.mean([e["F-Mean"] for e in entries]))
            sequences[name] = {"objects": len(entries), "predicted_objects": int(n_res), "J-Mean": jm, "F-Mean": fm, "J&F-Mean": (jm + fm) / 2}
        assert k == len(J["M"])
        return {
            "upstream": {
                "repository": "https://github.com/davisvideochallenge/davis2017-evaluation",
                "commit": commit,
                "command": "cd davis2017-evaluation && python evaluation_method.py --task unsupervised --set val --davis_path DAVIS --results_path RESULTS",
                "inputs": "DAVIS = OUT/DAVIS with Annotations linked as Annotations_unsupervised (what the unsupervised task reads); RESULTS = a copy of OUT/predictions",
                "full_precision": "the same DAVISEvaluation(task='unsupervised', gt_set='val').evaluate(RESULTS) in-process, its linear_sum_assignment and _evaluate_unsupervised watched for the matching and per-frame values; global = evaluation_method.py's formulas",
                "python": sys.version.split()[0],
                "packages": package_versions(),
            },
            "global": glob,
            "global_results_csv": csv_global,
            "per_sequence_results_csv": csv_seq,
            "sequences": sequences,
            "objects": objects,
        }
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_unique_optimum(name, score):
    """The matching must not hang on a tie (another Hungarian may break it differently)."""
    n_res, n_gt = score.shape
    totals = sorted((sum(score[p[o], o] for o in range(n_gt)) for p in itertools.permutations(range(n_res), n_gt)), reverse=True)
    if len(totals) > 1 and totals[0] - totals[1] < 1e-6:
        sys.exit(f"{name}: the best matchings tie ({totals[0]} vs {totals[1]}): change the data")


def package_versions():
    from importlib.metadata import version
    out = {}
    for p in ["numpy", "opencv-python-headless", "scikit-image", "scipy", "pandas", "Pillow"]:
        try:
            out[p] = version(p)
        except Exception:
            out[p] = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write the dataset into")
    ap.add_argument("--verify", metavar="GOLDEN", help="check the generated inputs against the golden's hashes")
    ap.add_argument("--upstream", metavar="DIR", help="a davis2017-evaluation checkout: run it and write --golden")
    ap.add_argument("--upstream-commit", metavar="SHA", help="the commit of that checkout (recorded in the golden)")
    ap.add_argument("--golden", metavar="FILE", help="where to write the golden JSON (with --upstream)")
    args = ap.parse_args()
    generate(args.out)
    hashes = input_hashes(args.out)
    if args.verify:
        want = json.load(open(args.verify))["inputs"]
        bad = sorted(k for k in set(want) | set(hashes) if want.get(k) != hashes.get(k))
        if bad:
            sys.exit(f"the generated inputs differ from those {args.verify} was made from: {', '.join(bad[:5])}" + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    if args.upstream:
        if not (args.golden and args.upstream_commit):
            ap.error("--upstream needs --golden and --upstream-commit")
        golden = {
            "about": "DAVIS 2017 unsupervised J/F of a generated dataset, by the official evaluation; "
                     "exporter/train/tests/davis.rs checks msf-eval --davis against it.",
            "generator": "python tests/python/davis_golden.py --out DIR",
            "made_by": "python tests/python/davis_golden.py --out DIR --upstream DAVIS2017_EVALUATION --upstream-commit SHA --golden tests/goldens/davis_jf.json",
            **run_upstream(args.out, os.path.abspath(args.upstream), args.upstream_commit),
            "inputs": hashes,
        }
        with open(args.golden, "w", newline="\n") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
        print(f"wrote {args.golden}: J&F-Mean {golden['global']['J&F-Mean']:.6f}")


if __name__ == "__main__":
    main()
