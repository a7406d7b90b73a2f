"""The Ray Data example (python/examples/ray_decompose.py) on a local 2-CPU Ray writes the files
`msf-run --layout davis` writes, for a folder of images and a video; and its throughput."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msf
import numpy as np
import pytest
from conftest import read_mask, run_msf_run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ray_decompose.py"


def test_ray_example_writes_what_msf_run_writes(slate, png_photos, video, msf_run, tmp_path):
    pytest.importorskip("ray.data")
    shots = tmp_path / "shots"
    shutil.copytree(png_photos, shots)
    inputs = [shots, video]

    run = tmp_path / "msf-run"
    t0 = time.perf_counter()
    run_msf_run(msf_run, slate, inputs, run, "--layout", "davis", "--jobs", "1")
    t_run = time.perf_counter() - t0

    out, summary = tmp_path / "ray", tmp_path / "ray.json"
    # A local Ray only (never a cluster named in the environment), no usage report sent.
    env = dict(os.environ, RAY_ADDRESS="", RAY_DEDUP_LOGS="0", RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, str(EXAMPLE), "--model", str(slate), "-o", str(out), *map(str, inputs),
           "--num-cpus", "2", "--chunk", "8", "--summary", str(summary)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-6000:]}"

    for kind in ("masks", "slots"):
        mine = sorted(p.relative_to(out / kind) for p in (out / kind).rglob("*.*"))
        theirs = sorted(p.relative_to(run / kind) for p in (run / kind).rglob("*.*"))
        assert mine == theirs, f"{kind}: {mine} != {theirs}"
    files = sorted((run / "masks").rglob("*.png"))
    assert len(files) == 4 + 20
    for p in files:
        rel = p.relative_to(run / "masks")
        assert np.array_equal(read_mask(out / "masks" / rel), read_mask(p)), rel
        a, b = np.load(out / "slots" / rel.with_suffix(".npy")), np.load(run / "slots" / rel.with_suffix(".npy"))
        assert np.abs(a - b).max() <= 1e-6, rel

    # One process, one Decomposer, the same frames: the yardstick for the Ray run's throughput.
    dec = msf.Decomposer(slate, threads=1)
    t0 = time.perf_counter()
    n = sum(1 for src in inputs for f in msf.frames(src) if dec.decompose(f.image) is not None)
    t_one = time.perf_counter() - t0
    s = json.loads(summary.read_text())
    assert s["frames"] == n == 24
    print(f"msf-python: Ray Data on a local 2-CPU Ray, {s['workers']} actors: {n} frames in {s['seconds']:.2f} s "
          f"({s['frames_per_second']:.1f} frames/s, start-up included); one process, one thread: "
          f"{n / t_one:.1f} frames/s; msf-run --jobs 1: {n / t_run:.1f} frames/s (process start and writing included)")
