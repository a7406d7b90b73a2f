"""Check an exported MSF ONNX model with the ONNX checker and onnxruntime against independent goldens.

Test tooling, independent of the Rust code in this repository (it only reads the ONNX file). Two modes:

* ``--fixtures DIR --model tiny-slate-msf``: runs every fixture image's ``ref/<img>.input.npy`` and compares
  with the upstream PyTorch goldens ``ref/<img>.<model>.{slots,attn,segment}.npy``;
* ``--ref FILE.npz``: runs the npz's ``input`` and compares with its ``slots``, ``attn``, ``masks`` (as written
  by ``make_fullsize.py`` from ``reference.py``).

For each image it prints slots and attention max |difference| and the fraction of equal mask pixels, and
exits non-zero if any exceeds the tolerances (default: slots 1e-4, attn 1e-4, masks >= 99.9 % equal), or if
``onnx.checker.check_model(path, full_check=True)`` fails.

Model variants handled:
* metadata ``msf.preprocess`` with ``"backbone_resize_in_graph": false`` (or a 224-pixel image input): the
  bicubic x0.875 resize is not in the graph, so it is applied here first with ``reference.bicubic_resize``;
* an extra input ``slots_init`` (N, K, D): msf-export's graphs take N = 0 (an empty tensor) for the learned
  initial slots, which is what is fed by default; files of the first form, where an initializer of that name is
  the default, leave it out; a graph with neither is fed the learned mean from ``--checkpoint``.
  ``--slots-init mean`` always feeds the learned mean (from the graph's initializer or ``--checkpoint``).
* no ``masks`` output: masks are then computed from ``attn`` with ``reference.masks_from_attention``.

``--write-npz OUT.npz`` saves onnxruntime's outputs (a reference for the Rust runtime tests): in fixture mode
as ``<img>.input`` (what was fed as ``image``), ``<img>.slots``, ``<img>.attn``, ``<img>.masks``; in npz mode as
``input``, ``slots``, ``attn``, ``masks``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference  # noqa: E402

IMAGE_INPUT = "image"
SLOTS_INPUT = "slots_init"
SLOTS_DEFAULT = "slots_init_default"  # the learned slots an empty slots_init selects


def _metadata(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def _initializer(model, name, base_dir=""):
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init, base_dir)
    return None


def _cases(args):
    """Yields (name, input (B,3,H,W) float32, expected slots, attn, masks (B,256,256) or None)."""
    if args.ref:
        z = np.load(args.ref)
        yield "ref", z["input"].astype(np.float32), z["slots"], z["attn"], z["masks"]
        return
    ref = os.path.join(args.fixtures, "ref")
    images = sorted({f.split(".")[0] for f in os.listdir(ref) if f.endswith(".input.npy")})
    if not images:
        raise SystemExit(f"no <img>.input.npy under {ref}")
    for img in images:
        base = os.path.join(ref, img)
        seg = np.load(f"{base}.{args.model}.segment.npy")
        yield (img, np.load(f"{base}.input.npy").astype(np.float32), np.load(f"{base}.{args.model}.slots.npy"),
               np.load(f"{base}.{args.model}.attn.npy"), seg[None] if seg.ndim == 2 else seg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_path", metavar="MODEL.onnx")
    ap.add_argument("--fixtures", help="fixture folder with ref/ goldens")
    ap.add_argument("--model", help="fixture model name, e.g. tiny-slate-msf")
    ap.add_argument("--ref", help="npz with input, slots, attn, masks")
    ap.add_argument("--write-npz", help="save onnxruntime's outputs here")
    ap.add_argument("--checkpoint", help="upstream .pth, for the learned mean when slots_init has no default")
    ap.add_argument("--slots-init", choices=["auto", "mean"], default="auto",
                    help="auto: an empty slots_init (N = 0, the graph's learned slots), or none for a first-form "
                         "default; mean: feed the learned mean")
    ap.add_argument("--tol-slots", type=float, default=1e-4)
    ap.add_argument("--tol-attn", type=float, default=1e-4)
    ap.add_argument("--min-mask", type=float, default=0.999, help="minimum fraction of equal mask pixels")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--skip-checker", action="store_true", help="do not run onnx.checker")
    args = ap.parse_args(argv)
    if bool(args.ref) == bool(args.fixtures):
        ap.error("give exactly one of --ref or --fixtures/--model")
    if args.fixtures and not args.model:
        ap.error("--fixtures needs --model")

    import onnx
    import onnxruntime as ort

    failures = 0
    if not args.skip_checker:
        try:
            onnx.checker.check_model(args.model_path, full_check=True)
            print(f"onnx.checker (full_check): ok")
        except Exception as e:  # noqa: BLE001 - report any checker failure
            print(f"onnx.checker (full_check): FAILED: {e}")
            failures += 1

    model = onnx.load(args.model_path, load_external_data=False)
    meta = _metadata(model)
    pre = json.loads(meta["msf.preprocess"]) if "msf.preprocess" in meta else {}

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3  # errors only: no warnings about initializers that are also inputs
    sess = ort.InferenceSession(args.model_path, so, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    # Inputs with a same-name initializer (a default) are listed apart by onnxruntime.
    inputs.update({i.name: i for i in sess.get_overridable_initializers() if i.name == SLOTS_INPUT})
    outputs = [o.name for o in sess.get_outputs()]
    image_name = IMAGE_INPUT if IMAGE_INPUT in inputs else next(n for n in inputs if n != SLOTS_INPUT)
    shape = inputs[image_name].shape
    side = shape[-1] if isinstance(shape[-1], int) else None
    resize_in_graph = pre.get("backbone_resize_in_graph", side != 224 if side else True)

    slots_feed = None  # None: left out; (0, K, D): empty, the graph's learned slots; (1, K, D): fed
    slots_how = "absent"
    model_dir = os.path.dirname(os.path.abspath(args.model_path))
    if SLOTS_INPUT in inputs:
        default = _initializer(model, SLOTS_DEFAULT, model_dir)
        first_form = default is None and _initializer(model, SLOTS_INPUT, model_dir) is not None
        mean = default if default is not None else _initializer(model, SLOTS_INPUT, model_dir)
        if args.slots_init == "auto" and first_form:
            slots_how = "left to its initializer default"
        elif args.slots_init == "auto" and default is not None:
            slots_feed = np.zeros((0,) + default.shape[1:], np.float32)
            slots_how = "empty (the graph's learned slots)"
        else:
            if mean is None and args.checkpoint:
                import torchfmt

                mean = torchfmt.load(args.checkpoint)[reference.INIT_MEAN]
            if mean is None:
                raise SystemExit("the graph's slots_init has no default: pass --checkpoint for the learned mean")
            slots_feed = np.asarray(mean, dtype=np.float32)
            slots_how = "fed the learned mean"
    print(f"{os.path.basename(args.model_path)}: inputs {[(n, i.shape) for n, i in inputs.items()]}, "
          f"outputs {outputs}; bicubic resize {'in graph' if resize_in_graph else 'done here (not in graph)'}; "
          f"slots_init {slots_how}"
          + (f"; precision {meta['msf.precision']}" if "msf.precision" in meta else ""))

    saved = {}
    for name, x, gs, ga, gm in _cases(args):
        feed_x = x if resize_in_graph else reference.bicubic_resize(x.astype(np.float64)).astype(np.float32)
        feeds = {image_name: feed_x}
        if slots_feed is not None:
            rows = 0 if slots_feed.shape[0] == 0 else x.shape[0]
            feeds[SLOTS_INPUT] = np.broadcast_to(slots_feed[:1] if rows else slots_feed, (rows,) + slots_feed.shape[1:]).copy()
        t0 = time.time()
        res = dict(zip(outputs, sess.run(None, feeds)))
        dt = time.time() - t0
        slots, attn = res["slots"], res["attn"]
        masks = res.get("masks")
        note = ""
        if masks is None:
            masks = reference.masks_from_attention(attn)
            note = " (masks from attn)"
        shapes = [(n, got.shape, np.shape(want)) for n, got, want in
                  (("slots", slots, gs), ("attn", attn, ga), ("masks", masks, gm))
                  if got.size != np.size(want)]
        if shapes:
            failures += 1
            print(f"  {name:18s} FAIL: output shapes differ from the reference: "
                  + ", ".join(f"{n} {g} vs {w}" for n, g, w in shapes))
            continue
        ds = float(np.max(np.abs(slots.astype(np.float64) - np.asarray(gs).reshape(slots.shape))))
        da = float(np.max(np.abs(attn.astype(np.float64) - np.asarray(ga).reshape(attn.shape))))
        agree = float(np.mean(masks.reshape(gm.shape).astype(np.int64) == gm.astype(np.int64)))
        bad = ds > args.tol_slots or da > args.tol_attn or agree < args.min_mask
        failures += bad
        print(f"  {name:18s} slots max|d| {ds:.2e}  attn max|d| {da:.2e}  masks {agree * 100:8.4f}% equal"
              f"{note}  ({dt * 1000:.0f} ms){'  FAIL' if bad else ''}")
        prefix = "" if args.ref else f"{name}."
        saved.update({f"{prefix}input": feed_x, f"{prefix}slots": slots, f"{prefix}attn": attn,
                      f"{prefix}masks": masks.astype(np.int64)})

    if args.write_npz:
        np.savez(args.write_npz, **saved)
        print(f"wrote {args.write_npz}")
    print("check_onnx:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
