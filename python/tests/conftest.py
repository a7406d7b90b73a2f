"""Shared fixtures of the msf pytest suite: the upstream fixture models exported with msf.export,
the fixture photos, a tiny generated video, and the msf-run binary of the same build.

Environment (set by python/tests/pytest.rs; defaults for a manual `pytest python/tests` after
`pip install ./python`): MSF_FIXTURES (default ../shared/fixtures), MSF_RUN (default
target/debug/msf-run), ORT_DYLIB_PATH for the onnxruntime tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msf
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
MODELS = ["tiny-slate-msf", "tiny-slotdiffusion-msf"]


def fixtures_dir() -> Path:
    return Path(os.environ.get("MSF_FIXTURES") or REPO.parent / "shared" / "fixtures")


@pytest.fixture(scope="session")
def fixtures() -> Path:
    d = fixtures_dir()
    if not (d / "tiny-slate-msf.pth").is_file():
        pytest.fail(f"no upstream fixtures at {d} (set MSF_FIXTURES)")
    return d


@pytest.fixture(scope="session")
def msf_run() -> Path:
    p = Path(os.environ.get("MSF_RUN") or REPO / "target" / "debug" / "msf-run")
    if not p.is_file():
        pytest.fail(f"{p} is missing: build it (cargo build -p msf-runtime) or set MSF_RUN")
    return p


@pytest.fixture(scope="session")
def models(tmp_path_factory, fixtures) -> dict[str, Path]:
    """Each fixture checkpoint exported through msf.export (with the slots_init input)."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for m in MODELS:
        r = msf.export(fixtures / f"{m}.pth", d / f"{m}.onnx")
        assert r["num_slots"] == 5 and r["slot_dim"] == 64
        out[m] = d / f"{m}.onnx"
    return out


@pytest.fixture(scope="session")
def slate(models) -> Path:
    return models["tiny-slate-msf"]


@pytest.fixture(scope="session")
def photos(fixtures) -> dict[str, np.ndarray]:
    """The fixture photos as Pillow decodes them (grey → H×W, RGBA → H×W×4), by file stem."""
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((fixtures / "images").iterdir())}


@pytest.fixture(scope="session")
def png_photos(tmp_path_factory, fixtures) -> Path:
    """A folder of the fixture photos that are PNG. Comparisons with msf-run use only these: both
    sides then decode with the same decoder whatever JPEG decoder a build has (feature `turbojpeg`
    of msf-runtime, which a workspace build may switch on for msf-run and not for the wheel)."""
    d = tmp_path_factory.mktemp("png")
    for p in sorted((fixtures / "images").glob("*.png")):
        shutil.copy(p, d / p.name)
    assert len(list(d.iterdir())) == 4
    return d


def have_ffmpeg_features() -> bool:
    return "video" in msf.FEATURES and shutil.which("ffmpeg") is not None


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> Path:
    """A 20-frame 96×72 H.264 clip of FFmpeg's test pattern."""
    if not have_ffmpeg_features():
        pytest.skip("needs the `video` feature and the ffmpeg command")
    p = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=96x72:rate=25",
                    "-frames:v", "20", "-pix_fmt", "yuv420p", str(p)], check=True, timeout=60)
    return p


def run_msf_run(msf_run: Path, model: Path, inputs: list, out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(msf_run), "--onnx", str(model), *map(str, inputs), "-o", str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr}"
    return r


def read_mask(path: Path) -> np.ndarray:
    """A palette PNG's indices (slot ids), as msf-run writes them."""
    im = Image.open(path)
    assert im.mode in ("P", "L"), im.mode
    return np.asarray(im)
