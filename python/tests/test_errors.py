"""Bad inputs raise Python exceptions with the library's messages; the interpreter never dies."""

from __future__ import annotations

import msf
import numpy as np
import pytest


@pytest.fixture(scope="module")
def dec(slate):
    return msf.Decomposer(slate)


IMG = np.zeros((48, 64, 3), np.uint8)


@pytest.mark.parametrize("bad, error, match", [
    (IMG.astype(np.float32), ValueError, "uint8 array, got dtype float32"),
    (IMG.astype(np.int64), ValueError, "uint8"),
    (IMG.astype(bool), ValueError, "uint8"),
    (IMG[:, :, :2], ValueError, "H×W×3"),
    (IMG[:, :, :1].repeat(5, axis=2), ValueError, "got shape"),
    (IMG[None], ValueError, "got shape"),
    (IMG[0, 0], ValueError, "got shape"),
    (np.zeros((0, 10, 3), np.uint8), ValueError, "must have pixels"),
    (np.zeros((10, 0), np.uint8), ValueError, "must have pixels"),
    ([[1, 2], [3, 4]], TypeError, "numpy.ndarray"),
    ("photo.jpg", TypeError, "numpy.ndarray"),
    (None, TypeError, "numpy.ndarray"),
])
def test_bad_arrays_raise(dec, bad, error, match):
    with pytest.raises(error, match=match):
        dec.decompose(bad)
    with pytest.raises(error):
        dec.decompose_batch([IMG, bad])
    assert dec.decompose(IMG).masks.shape == (48, 64), "the decomposer still works"


def test_any_2d_uint8_array_is_a_grey_image(dec):
    assert dec.decompose(IMG[0]).masks.shape == (64, 3)
    assert dec.decompose(np.zeros((1, 1), np.uint8)).masks.shape == (1, 1)


def test_bad_models_raise_msf_error(tmp_path, fixtures):
    with pytest.raises(msf.MsfError, match="not found"):
        msf.Decomposer(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(msf.MsfError, match="cannot load the model"):
        msf.Decomposer(tmp_path / "garbage.onnx")
    with pytest.raises(msf.MsfError):
        msf.Decomposer(b"not an onnx file")
    good = msf.export(fixtures / "tiny-slate-msf.pth", tmp_path / "good.onnx")["output"]
    data = good.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(msf.MsfError):
        msf.Decomposer(tmp_path / "cut.onnx")
    # A graph that is not an MSF decomposition (upstream's own torch.onnx export has no MSF metadata).
    with pytest.raises(msf.MsfError):
        msf.Decomposer(fixtures / "tiny-slate-msf.torch.onnx")
    assert issubclass(msf.MsfError, RuntimeError)


def test_bad_options_raise_value_error(slate):
    with pytest.raises(ValueError, match="unknown fit `sideways`"):
        msf.Decomposer(slate, fit="sideways")
    with pytest.raises(ValueError, match="unknown backend"):
        msf.Decomposer(slate, backend="torch")
    with pytest.raises(ValueError, match="threads"):
        msf.Decomposer(slate, threads=0)
    with pytest.raises(TypeError):
        msf.Decomposer(42)
    with pytest.raises(msf.MsfError, match="iou_weight"):
        msf.Tracker(msf.Decomposer(slate), iou_weight=2.0)


def test_bad_sources_and_checkpoints_raise(tmp_path):
    with pytest.raises(msf.MsfError, match="not found"):
        msf.frames(tmp_path / "nothing-here")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(msf.MsfError, match="broken.png"):
        next(iter(msf.frames(tmp_path / "broken.png")))
    (tmp_path / "ckpt.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(msf.MsfError):
        msf.export(tmp_path / "ckpt.pth", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(ValueError, match="precision"):
        msf.export(tmp_path / "ckpt.pth", tmp_path / "out.onnx", precision="fp8")
