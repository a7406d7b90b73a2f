"""msf.Decomposer on the upstream fixtures: the goldens, msf-run's own outputs, every array layout."""

from __future__ import annotations

import json
import os

import msf
import numpy as np
import pytest
from conftest import MODELS, read_mask, run_msf_run

# The Rust tests' tolerances against the upstream goldens (runtime/tests/ort_backend.rs, tests/tests/export.rs).
SLOTS_TOL = 1e-4
ATTN_TOL = 1e-4
MIN_MASK_AGREEMENT = 0.999


def backends() -> list[str]:
    return ["tract"] + (["ort"] if "ort" in msf.FEATURES and os.environ.get("ORT_DYLIB_PATH") else [])


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("model", MODELS)
def test_slots_equal_upstream_goldens(models, fixtures, photos, model, backend):
    # Upstream's evaluation: the centre crop. Pillow decodes as upstream's OpenCV does.
    dec = msf.Decomposer(models[model], backend=backend, fit="crop")
    worst, agree = 0.0, 1.0
    for stem, img in photos.items():
        d = dec.decompose(img)
        ref = lambda what: np.load(fixtures / "ref" / f"{stem}.{model}.{what}.npy")  # noqa: E731
        slots = np.abs(d.slots - ref("slots")[0]).max()
        assert slots <= SLOTS_TOL, f"{model} {stem}: slots max |Δ| {slots}"
        assert np.abs(d.attention - ref("attn")[0]).max() <= ATTN_TOL, f"{model} {stem}: attention"
        a = (d.view_mask == ref("segment")).mean()
        assert a >= MIN_MASK_AGREEMENT, f"{model} {stem}: masks agree {a:.5f}"
        worst, agree = max(worst, slots), min(agree, a)
    print(f"msf-python: {model} ({backend}) vs upstream goldens on {len(photos)} photos: "
          f"slots max |Δ| {worst:.2e}, masks >= {100 * agree:.3f}% equal")


def test_default_fit_is_the_librarys(slate):
    assert msf.Decomposer(slate).fit == "stretch"


def test_masks_and_slots_equal_msf_run_on_the_photos(slate, png_photos, msf_run, tmp_path):
    out = tmp_path / "run"
    run_msf_run(msf_run, slate, [png_photos], out)
    run = json.loads((out / "decomposition.json").read_text())
    records = {f["name"]: f for f in run["frames"]}
    dec = msf.Decomposer(slate)
    n = 0
    for frame in msf.frames(png_photos):  # the runtime's decoder, as msf-run reads them
        d = dec.decompose(frame.image)
        assert np.array_equal(d.masks, read_mask(out / "masks" / f"{frame.name}.png")), frame.name
        assert np.abs(d.slots - np.load(out / "slots" / f"{frame.name}.npy")).max() <= 1e-6, frame.name
        d.save_mask(tmp_path / "mine.png")
        assert (tmp_path / "mine.png").read_bytes() == (out / "masks" / f"{frame.name}.png").read_bytes()
        slots = records[frame.name]["slots"]
        assert [s["rle"]["counts"] for s in slots] == [r["counts"] for r in d.coco_rle()]
        assert [s["area"] for s in slots] == d.areas.tolist()
        assert [s["bbox"] or [0, 0, 0, 0] for s in slots] == d.boxes.tolist()
        n += 1
    assert n == 4


def test_video_equals_msf_run_and_tracker_equals_temporal_mode(slate, video, msf_run, tmp_path):
    run_msf_run(msf_run, slate, [video], tmp_path / "plain", "--layout", "davis")
    run_msf_run(msf_run, slate, [video], tmp_path / "temporal", "--layout", "davis", "--temporal")
    dec = msf.Decomposer(slate)
    tracker = msf.Tracker(dec)
    assert tracker.temporal
    frames = list(msf.frames(video))
    assert len(frames) == 20 and frames[0].image.shape == (72, 96, 3)
    for f in frames:
        name = f"{f.index:05d}.png"
        d = dec.decompose(f.image)
        assert np.array_equal(d.masks + 1, read_mask(tmp_path / "plain" / "masks" / "clip" / name)), name
        t = tracker.step(f.image)
        assert np.array_equal(t.masks + 1, read_mask(tmp_path / "temporal" / "masks" / "clip" / name)), name
    assert tracker.frames == 20
    tracker.reset()
    assert tracker.frames == 0


def test_every_layout_gives_the_same_result(slate, photos):
    dec = msf.Decomposer(slate)
    rgb = photos["motorcycle_left"]
    ref = dec.decompose(rgb)

    def same(d, what):
        assert np.array_equal(d.masks, ref.masks), what
        assert np.abs(d.slots - ref.slots).max() <= 1e-6, what

    same(dec.decompose(np.ascontiguousarray(rgb[:, :, ::-1]), bgr=True), "BGR")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    same(dec.decompose(rgba), "RGBA")
    same(dec.decompose(np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]), bgr=True), "BGRA")
    big = np.zeros((rgb.shape[0] + 30, rgb.shape[1] + 50, 4), np.uint8)
    big[10:-20, 20:-30, :3] = rgb
    same(dec.decompose(big[10:-20, 20:-30, :3]), "a crop of a wider RGBA buffer (row and pixel strides)")
    same(dec.decompose(np.asfortranarray(rgb)), "Fortran order")
    same(dec.decompose(rgb[::-1][::-1]), "negative strides, twice")
    flipped = dec.decompose(np.ascontiguousarray(rgb[:, ::-1]))
    same(dec.decompose(rgb[:, ::-1][:, ::-1]), "negative column strides, twice")
    assert np.array_equal(dec.decompose(rgb[:, ::-1]).masks, flipped.masks), "a mirrored view equals its copy"
    grey = photos["camera"]
    assert grey.ndim == 2
    g = dec.decompose(grey)
    assert np.array_equal(dec.decompose(grey[:, :, None]).masks, g.masks)
    assert np.array_equal(dec.decompose(np.dstack([grey] * 3)).masks, g.masks), "grey is replicated to R = G = B"
    batch = dec.decompose_batch([rgb, grey, rgba])
    assert [b.masks.shape for b in batch] == [rgb.shape[:2], grey.shape, rgb.shape[:2]]
    assert np.array_equal(batch[1].masks, g.masks)
    same(batch[0], "in a batch")
    assert dec.decompose_batch([]) == []


def test_result_arrays_agree_with_each_other(slate, photos):
    from pycocotools import mask as cocomask

    dec = msf.Decomposer(slate)
    assert (dec.num_slots, dec.slot_dim, dec.grid, dec.mask_size, dec.slots_input) == (5, 64, 16, 256, True)
    assert dec.default_slots.shape == (5, 64) and dec.default_slots.dtype == np.float32
    img = photos["ihc"]
    d = dec.decompose(img)
    k = d.num_slots
    assert d.masks.dtype == np.uint8 and d.masks.shape == img.shape[:2]
    assert d.slots.dtype == np.float32 and d.slots.shape == (k, 64)
    assert d.attention.shape == (k, 16, 16) and np.allclose(d.attention.sum(0), 1, atol=1e-5)
    assert d.areas.sum() == img.shape[0] * img.shape[1] and d.covers_frame
    for s, (rle, box) in enumerate(zip(d.coco_rle(), d.boxes)):
        m = d.masks == s
        assert np.array_equal(cocomask.decode(rle), m)
        assert d.areas[s] == m.sum()
        if m.any():
            ys, xs = np.nonzero(m)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    crop = msf.Decomposer(slate, fit="crop").decompose(photos["motorcycle_left"])
    assert not crop.covers_frame and (crop.masks == 255).any() and crop.view["frame"] == [120, 0, 500, 500]


def test_tiles_give_frame_labels_and_trackers_refuse_them(slate, photos):
    dec = msf.Decomposer(slate, fit="tiles")
    d = dec.decompose(photos["motorcycle_left"])
    assert d.view["tiled"] and d.masks.shape == (500, 741) and d.masks.max() < d.num_slots
    with pytest.raises(msf.MsfError, match="tiles"):
        msf.Tracker(dec)


def test_frames_reads_folders_with_start_every_and_max(fixtures):
    names = [f.name for f in msf.frames(fixtures / "images")]
    assert names == ["camera", "hubble_deep_field", "ihc", "logo", "motorcycle_left"]
    picked = list(msf.frames(fixtures / "images", start=1, every=2, max_frames=2))
    assert [(f.name, f.index) for f in picked] == [("hubble_deep_field", 1), ("logo", 3)]
    assert msf.frames(fixtures / "images").len_hint == 5
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3 for f in picked)


def test_export_reports_and_loads(fixtures, tmp_path):
    r = msf.export(fixtures / "tiny-slate-msf.pth", tmp_path / "m.onnx", slots_in=False)
    assert r["output"] == tmp_path / "m.onnx" and r["bytes"] > 0 and r["unexpected_keys"] == []
    dec = msf.Decomposer(tmp_path / "m.onnx")
    assert not dec.slots_input and dec.default_slots is None
    assert not msf.Tracker(dec).temporal
    with pytest.raises(msf.MsfError):
        msf.Tracker(dec, temporal=True)
    # The model held in memory loads the same.
    assert msf.Decomposer((tmp_path / "m.onnx").read_bytes()).num_slots == 5


def test_stubs_cover_the_module():
    """msf/_msf.pyi names every class, function and method the extension has (editors complete them)."""
    import ast
    import inspect
    from pathlib import Path

    import msf._msf as ext

    tree = ast.parse((Path(msf.__file__).parent / "_msf.pyi").read_text())
    stubbed = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for name, obj in vars(ext).items():
        if name.startswith("_") or not (inspect.isclass(obj) or callable(obj)):
            continue
        assert name in stubbed, f"msf._msf.{name} has no stub"
        assert obj.__doc__, f"msf._msf.{name} has no docstring"
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            members = {n.name for n in stubbed[name].body if isinstance(n, ast.FunctionDef)}
            for m in vars(obj):
                if not m.startswith("_"):
                    assert m in members, f"msf.{name}.{m} has no stub"
