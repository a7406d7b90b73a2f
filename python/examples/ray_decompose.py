#!/usr/bin/env python3
"""Decompose folders of images and videos on a Ray cluster, writing what `msf-run --layout davis` writes.

    python ray_decompose.py --model slate.onnx -o out/ photos/ clip.mp4 [--workers 8]

is the scaled-out form of

    msf-run --onnx slate.onnx photos/ clip.mp4 -o out/ --layout davis

and writes the same files: `out/masks/<sequence>/<nnnnn>.png` (slot id + 1, 0 = no slot) and
`out/slots/<sequence>/<nnnnn>.npy` (K×D float32), one sequence per input (a folder's name, a
video's stem; consecutive image files are one sequence, as msf-run reads them). Frames are
decomposed one by one, without --temporal, so any worker may take any frame.

How: each input is cut into chunks of `--chunk` frames (an image folder by position, a video by
frame index); Ray Data's `map_batches` hands chunks to an actor pool, one actor per worker, each
holding one `msf.Decomposer`; an actor decodes its chunk itself (only paths and frame ranges
travel, never pixels) and writes its frames' files into the shared output folder.

On one machine it starts a local Ray (`--num-cpus`). On a cluster, start Ray on every node
(`ray start --head` on one, `ray start --address=HEAD:6379` on the others) and run the same
command on the head with `RAY_ADDRESS=auto` (or `--address HEAD:6379`); the model, the inputs and
the output folder must be at the same path on every node (a shared file system), and every node
needs `pip install ./python` (or the wheel of scripts/python-wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import msf
import numpy as np
import ray


VIDEO_EXTENSIONS = {"mp4", "mkv", "avi", "mov", "webm", "m4v", "mpg", "mpeg", "ts", "m2ts", "mts", "wmv", "flv", "3gp", "ogv", "y4m"}


def unique(names: list[str]) -> list[str]:
    """msf-run's rule for repeated sequence names: `name`, `name_2`, `name_3`, …"""
    used: set[str] = set()
    out = []
    for base in names:
        base = base.replace("/", "_").replace("\\", "_")
        if not base or base.startswith("."):
            base = "seq" + base
        n, cand = 1, base
        while cand in used:
            n += 1
            cand = f"{base}_{n}"
        used.add(cand)
        out.append(cand)
    return out


def streams(inputs: list[str]) -> list[list[str]]:
    """The inputs as msf-run's streams: consecutive image files form one stream."""
    out: list[list[str]] = []
    files: list[str] = []
    for p in inputs:
        is_file_image = os.path.isfile(p) and p.rsplit(".", 1)[-1].lower() not in VIDEO_EXTENSIONS
        if is_file_image:
            files.append(p)
            continue
        if files:
            out.append(files)
            files = []
        out.append([p])
    if files:
        out.append(files)
    return out


def plan(inputs: list[str], chunk: int) -> list[dict]:
    """Work items: (input, sequence, first frame, frame count or -1 for 'to the end')."""
    groups = streams(inputs)
    names = unique(msf.sequence_names(inputs))
    assert len(names) == len(groups), (names, groups)
    items = []
    for group, seq in zip(groups, names):
        if len(group) > 1 or (os.path.isfile(group[0]) and group[0].rsplit(".", 1)[-1].lower() not in VIDEO_EXTENSIONS):
            # Image files given one by one: frame i of the stream is file i.
            items += [{"input": p, "sequence": seq, "start": 0, "count": 1, "index": i} for i, p in enumerate(group)]
            continue
        n = msf.frames(group[0]).len_hint
        if n is None:
            items.append({"input": group[0], "sequence": seq, "start": 0, "count": -1, "index": -1})
            continue
        starts = list(range(0, max(n, 1), chunk))
        for s in starts:
            last = s == starts[-1]  # the last chunk reads to the end (a video's frame count is a hint)
            items.append({"input": group[0], "sequence": seq, "start": s, "count": -1 if last else chunk, "index": -1})
    return items


class Decompose:
    """One actor per worker: one Decomposer, reused for every chunk it is given."""

    def __init__(self, model: str, out: str, fit: str | None, threads: int | None, save_attn: bool):
        self.dec = msf.Decomposer(model, fit=fit, threads=threads)
        self.out = Path(out)
        self.save_attn = save_attn

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seqs, idxs, objs, secs = [], [], [], []
        for inp, seq, start, count, index in zip(batch["input"], batch["sequence"], batch["start"], batch["count"], batch["index"]):
            src = msf.frames(str(inp), start=int(start), max_frames=None if count < 0 else int(count))
            for frame in src:
                t0 = time.perf_counter()
                d = self.dec.decompose(frame.image)
                i = int(index) if index >= 0 else frame.index
                stem = f"{seq}/{i:05d}"
                for kind in ("masks", "slots") + (("attn",) if self.save_attn else ()):
                    (self.out / kind / seq).mkdir(parents=True, exist_ok=True)
                d.save_mask(self.out / "masks" / f"{stem}.png", davis=True)
                d.save_slots(self.out / "slots" / f"{stem}.npy")
                if self.save_attn:
                    d.save_attention(self.out / "attn" / f"{stem}.npy")
                seqs.append(str(seq))
                idxs.append(i)
                objs.append(int((d.areas > 0).sum()))
                secs.append(time.perf_counter() - t0)
        return {"sequence": np.array(seqs, dtype=object), "index": np.array(idxs, dtype=np.int64),
                "objects": np.array(objs, dtype=np.int64), "seconds": np.array(secs, dtype=np.float64)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="image folders, globs, image files, videos (as msf-run takes them)")
    ap.add_argument("--model", required=True, help="ONNX file from msf-export / msf.export")
    ap.add_argument("-o", "--out", required=True, help="output folder (shared by every node)")
    ap.add_argument("--workers", type=int, default=None, help="actors, one Decomposer each (default: the cluster's CPUs / --threads)")
    ap.add_argument("--threads", type=int, default=1, help="kernel threads per Decomposer (default 1: one CPU per actor)")
    ap.add_argument("--chunk", type=int, default=16, help="frames per work item (default 16)")
    ap.add_argument("--fit", default=None, help="crop, stretch (the default), pad or tiles")
    ap.add_argument("--save-attn", action="store_true", help="also write attn/<sequence>/<nnnnn>.npy")
    ap.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray this starts (ignored on a cluster)")
    ap.add_argument("--summary", default=None, help="write the run's numbers as JSON here")
    args = ap.parse_args(argv)

    if args.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=args.address, include_dashboard=False)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = args.workers or max(1, cpus // max(1, args.threads))

    t0 = time.perf_counter()
    items = plan(args.inputs, args.chunk)
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        Decompose,
        fn_constructor_kwargs={"model": os.path.abspath(args.model), "out": os.path.abspath(args.out), "fit": args.fit,
                               "threads": args.threads, "save_attn": args.save_attn},
        batch_size=1,
        concurrency=workers,
        num_cpus=args.threads,
    )
    rows = ds.take_all()
    wall = time.perf_counter() - t0
    frames = len(rows)
    busy = sum(r["seconds"] for r in rows)
    summary = {"frames": frames, "items": len(items), "workers": workers, "cpus": cpus, "seconds": wall,
               "frames_per_second": frames / wall if wall > 0 else None, "decompose_seconds": busy,
               "sequences": sorted({r["sequence"] for r in rows})}
    print(f"ray_decompose: {frames} frames of {len(summary['sequences'])} sequences in {wall:.2f} s "
          f"({summary['frames_per_second']:.1f} frames/s) on {workers} workers, {cpus} CPUs; "
          f"{busy:.2f} s decomposing", file=sys.stderr)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1))
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
