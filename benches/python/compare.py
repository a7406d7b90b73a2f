"""Side by side on one machine, in one run: msf-run (tract), msf-run (ort), onnxruntime-python on the
torch.onnx export of an equivalent PyTorch module, and PyTorch eager — same weights, same frames, same work
per frame (decode a JPEG, preprocess, infer, write the mask PNG). Run through ``benches/compare``.

Each contender runs in its own process (peak RSS is that process's), over the same folder of frames, after
the model is loaded; ms/frame comes from the time between consecutive frames' outputs, load time from the
process start to the first mask written, load RSS is the process's peak once the model is loaded. Ratios
are frames/s relative to onnxruntime-python fp32.

Latency mode (the second table): what a control loop sees, one frame at a time at batch 1, every thread
inside the frame. Each contender runs with 1 and with 2 threads (msf-run ``--jobs 1 --threads T``, no frame
decoded ahead; onnxruntime-python ``intra_op_num_threads = T``); a frame's latency is from the start of its
JPEG decode to its mask PNG written; median and p99 over ``--latency-frames`` frames.
Writes ``results.json`` and ``results.png`` into the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def launch(cmd: list[str]) -> int:
    """Fork and exec `cmd` from this small process, wait, and print its peak RSS on stderr."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    sys.stderr.write(f"\nmaxrss_kb={ru.ru_maxrss}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__" and sys.argv[1:2] == ["--launch"]:
    sys.exit(launch(sys.argv[2:]))  # before numpy is imported: the launcher's own peak stays small

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


# ------------------------------------------------------------------------------------------------------
# The Python contenders (run as `compare.py --worker KIND ...` in a child process)
# ------------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MiB like every RSS column here."""
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return kib / 1024


def preprocess(path: str) -> np.ndarray:
    """Upstream eval preprocessing with PIL: RGB, centre crop, antialiased bilinear 256, normalise."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((256, 256), Image.BILINEAR)
    x = (np.asarray(img, np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def write_mask(mask: np.ndarray, path: str) -> None:
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8), mode="L").save(path)


def worker(kind: str, model: str, frames: list[str], out: str, threads: int) -> None:
    t0 = time.perf_counter()
    if kind == "ort-python":
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        name, *rest = sess.get_inputs()
        # msf-export's `slots_init` (N, K, D): empty (N = 0) selects the learned initial slots.
        extra = {i.name: np.zeros((0, *i.shape[1:]), np.float32) for i in rest}

        def infer(x):
            return sess.run(None, {name.name: x, **extra})[2][0]
    elif kind == "torch-eager":
        import torch

        sys.path.insert(0, HERE)
        import torchfmt
        from torch_msf import MSF

        if threads:
            torch.set_num_threads(threads)
        net = MSF(torchfmt.load(model))

        def infer(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x))[2][0].numpy()
    else:
        raise SystemExit(f"unknown worker {kind}")
    load_rss = peak_rss_mb()
    done, latency = [], []
    for f in frames:
        start = time.perf_counter()
        m = infer(preprocess(f))
        write_mask(m, os.path.join(out, os.path.splitext(os.path.basename(f))[0] + ".png"))
        done.append(time.perf_counter() - t0)
        latency.append((time.perf_counter() - start) * 1e3)
    json.dump({"done_seconds": done, "latency_ms": latency, "load_rss_mb": load_rss}, sys.stdout)


# ------------------------------------------------------------------------------------------------------
# Orchestration
# ------------------------------------------------------------------------------------------------------


def run_child(cmd: list[str], env=None) -> tuple[float, float, str, str]:
    """(wall seconds, peak RSS MiB, stdout, stderr) of one child process.

    The child is started by a small launcher (``--launch``) rather than forked from this process:
    Linux carries a forked process's high-water RSS (this big Python, with PyTorch loaded) into the
    ``ru_maxrss`` of whatever it then executes, so a direct fork would report this process's peak.
    """
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-S", os.path.abspath(__file__), "--launch", *cmd], capture_output=True, env=env)
    wall = time.perf_counter() - t
    out, err = p.stdout.decode(), p.stderr.decode()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    err_lines = err.rstrip("\n").split("\n")
    rss_kb = float(err_lines[-1].removeprefix("maxrss_kb="))
    return wall, rss_kb / 1024.0, out, "\n".join(err_lines[:-1])


def stats(done: list[float], wall: float, n: int) -> dict:
    d = np.diff(np.asarray(done)) * 1e3
    steady = d[1:] if len(d) > 2 else d  # the first interval may include lazy initialisation
    return {
        "frames": n,
        "load_to_first_mask_s": done[0],
        "fps": (n - 1) / (done[-1] - done[0]) if n > 1 else float("nan"),
        "ms_median": float(np.median(steady)),
        "ms_p90": float(np.percentile(steady, 90)),
        "wall_s": wall,
    }


def make_frames(fixtures: str, out: str, n: int) -> list[str]:
    """n 640×480 JPEG frames cut from the fixture photos (real content, every frame different)."""
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    photos = [Image.open(os.path.join(fixtures, "images", f)).convert("RGB")
              for f in sorted(os.listdir(os.path.join(fixtures, "images")))]
    paths = []
    for i in range(n):
        p = photos[i % len(photos)]
        scale = 480 / min(p.size) * (1.0 + 0.3 * ((i * 7) % 10) / 10)
        big = p.resize((max(640, int(p.size[0] * scale)), max(480, int(p.size[1] * scale))), Image.BILINEAR)
        x = (i * 37) % (big.size[0] - 640 + 1)
        y = (i * 53) % (big.size[1] - 480 + 1)
        path = os.path.join(out, f"frame_{i:05d}.jpg")
        big.crop((x, y, x + 640, y + 480)).save(path, quality=90)
        paths.append(path)
    return paths


def torch_onnx_export(ckpt: str, out: str) -> None:
    import torch

    sys.path.insert(0, HERE)
    import torchfmt
    from torch_msf import MSF

    net = MSF(torchfmt.load(ckpt))
    x = torch.zeros(1, 3, 256, 256)
    torch.onnx.export(net, (x,), out, input_names=["image"], output_names=["slots", "attn", "masks"],
                      opset_version=17, dynamo=False)


def mask_agreement(a_dir: str, b_dir: str, names: list[str]) -> float:
    from PIL import Image

    same = total = 0
    for n in names:
        a = np.asarray(Image.open(os.path.join(a_dir, n)))
        b = np.asarray(Image.open(os.path.join(b_dir, n)))
        if a.shape != b.shape:
            # Every contender writes the 256×256 centre-crop mask (msf-run with --mask-res model).
            raise ValueError(f"{n}: mask shapes differ {a.shape} vs {b.shape}")
        same += int((a == b).sum())
        total += a.size
    return same / total


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["runs"])
    fps = [results["runs"][n]["fps"] for n in names]
    ratio = [results["runs"][n]["ratio_vs_ort_python"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.6))
    bars = ax.barh(names, fps, color=["#4c78a8" if n.startswith("msf-run") else "#bbbbbb" for n in names])
    for b, f, r in zip(bars, fps, ratio):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f"  {f:.2f} fps  ({r:.2f}×)", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("frames/s, end to end (decode JPEG → preprocess → infer → write mask)")
    ax.set_title(f"MSF {results['model']} on {results['machine']}\n× = frames/s relative to onnxruntime-python fp32", fontsize=10)
    ax.set_xlim(0, max(fps) * 1.45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--work", default=os.path.join(ROOT, "benches", "out", "compare"))
    ap.add_argument("--fixtures", default=os.environ.get("MSF_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures")))
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="threads per contender (0: each one's default)")
    ap.add_argument("--latency-frames", type=int, default=40, metavar="N",
                    help="frames per latency run (0: no latency table)")
    ap.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help="an upstream checkpoint (default: a full-size random SLATE-MSF, ViT-S/14, 7 slots)")
    ap.add_argument("--no-torch", action="store_true", help="skip the contenders that need PyTorch")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=ARGS",
                    help="another msf-run contender, e.g. 'int8=--precision int8' (export args)")
    a = ap.parse_args()

    if a.worker:
        frames = sorted(os.path.join(a.work, "frames", f) for f in os.listdir(os.path.join(a.work, "frames")))
        worker(a.worker, a.model, frames[:a.limit or None], a.out, a.threads)
        return 0

    os.makedirs(a.work, exist_ok=True)
    ckpt = a.ckpt
    if not ckpt:
        ckpt = os.path.join(a.work, "full-slate-msf.pth")
        if not os.path.exists(ckpt):
            subprocess.run([sys.executable, os.path.join(ROOT, "tests", "python", "make_fullsize.py"), a.work, "--no-vae"], check=True)
    frames = make_frames(a.fixtures, os.path.join(a.work, "frames"), a.frames)
    names = [os.path.splitext(os.path.basename(f))[0] + ".png" for f in frames]
    msf_onnx = os.path.join(a.work, "msf.onnx")
    subprocess.run([os.path.join(a.bin_dir, "msf-export"), "--ckpt", ckpt, "-o", msf_onnx, "--quiet"], check=True)
    model_mb = os.path.getsize(msf_onnx) / 1e6
    print(f"compare: {a.frames} frames of 640x480 JPEG; msf.onnx {model_mb:.1f} MB", file=sys.stderr)

    runs: dict[str, dict] = {}
    mask_dirs: dict[str, str] = {}

    latency: dict[str, dict] = {}

    def msf_run(label: str, model: str, extra: list[str], threads: int = 0, frames: int = 0) -> None:
        """A throughput run (every frame, msf-run's default jobs), or with `frames` a latency run."""
        out = os.path.join(a.work, "out-" + label.replace(" ", "_"))
        subprocess.run(["rm", "-rf", out])
        cmd = [os.path.join(a.bin_dir, "msf-run"), "--onnx", model, os.path.join(a.work, "frames"), "-o", out,
               "--no-overlay", "--no-slots", "--fit", "crop", "--mask-res", "model", "--quiet", "--json", *extra]
        if threads or a.threads:
            cmd += ["--threads", str(threads or a.threads)]
        if frames:
            # One frame at a time, read in the loop: msf-run times it from the start of its decode.
            cmd += ["--jobs", "1", "--max-frames", str(frames)]
        wall, rss, stdout, _ = run_child(cmd)
        summary = json.loads(stdout.strip().splitlines()[-1])
        if frames:
            lat = summary["latency_ms"]
            latency[label] = {"frames": summary["frames"], "median_ms": lat["median"], "p99_ms": lat["p99"],
                              "load_rss_mb": summary["peak_rss_mib"]["load"], "peak_rss_mb": rss}
            print(f"compare: {label}: latency median {lat['median']:.0f} ms", file=sys.stderr)
            return
        log = json.load(open(os.path.join(out, "decomposition.json")))
        done = [f["done_seconds"] for f in log["frames"]]
        load = summary["total_seconds"] - summary["seconds"]
        r = stats([d + load for d in done], wall, len(done))
        r["peak_rss_mb"] = rss
        r["load_rss_mb"] = summary["peak_rss_mib"]["load"]
        runs[label] = r
        mask_dirs[label] = os.path.join(out, "masks")
        print(f"compare: {label}: {r['fps']:.2f} fps", file=sys.stderr)

    def py_worker(label: str, kind: str, model: str, threads: int = 0, frames: int = 0) -> None:
        out = os.path.join(a.work, "out-" + label.replace(" ", "_"))
        subprocess.run(["rm", "-rf", out])
        os.makedirs(out)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", model, "--out", out,
               "--work", a.work, "--threads", str(threads or a.threads), "--limit", str(frames)]
        wall, rss, stdout, _ = run_child(cmd)
        w = json.loads(stdout)
        if frames:
            lat = np.asarray(w["latency_ms"])
            latency[label] = {"frames": len(lat), "median_ms": float(np.median(lat)), "p99_ms": float(np.percentile(lat, 99)),
                              "load_rss_mb": w["load_rss_mb"], "peak_rss_mb": rss}
            print(f"compare: {label}: latency median {np.median(lat):.0f} ms", file=sys.stderr)
            return
        r = stats(w["done_seconds"], wall, a.frames)
        r["peak_rss_mb"] = rss
        r["load_rss_mb"] = w["load_rss_mb"]
        runs[label] = r
        mask_dirs[label] = out
        print(f"compare: {label}: {r['fps']:.2f} fps", file=sys.stderr)

    have_torch = False
    if not a.no_torch:
        try:
            import torch  # noqa: F401

            have_torch = True
        except ImportError:
            print("compare: PyTorch not installed: torch.onnx and eager contenders skipped (baseline = msf.onnx in onnxruntime-python)", file=sys.stderr)
    baseline_model = msf_onnx
    if have_torch:
        baseline_model = os.path.join(a.work, "torch.onnx")
        torch_onnx_export(ckpt, baseline_model)

    extra_models = []
    for spec in a.extra:
        label, _, args = spec.partition("=")
        model = os.path.join(a.work, f"msf-{label}.onnx")
        subprocess.run([os.path.join(a.bin_dir, "msf-export"), "--ckpt", ckpt, "-o", model, "--quiet", *args.split()], check=True)
        extra_models.append((label, model))

    py_worker("onnxruntime-python fp32", "ort-python", baseline_model)
    msf_run("msf-run tract", msf_onnx, [])
    msf_run("msf-run ort", msf_onnx, ["--backend", "ort"])
    for label, model in extra_models:
        msf_run(f"msf-run ort {label}", model, ["--backend", "ort"])
        msf_run(f"msf-run tract {label}", model, [])
    if have_torch:
        py_worker("pytorch eager", "torch-eager", ckpt)

    n_lat = min(a.latency_frames, a.frames)
    for t in (1, 2) if n_lat else ():
        py_worker(f"onnxruntime-python fp32, {t} thr", "ort-python", baseline_model, threads=t, frames=n_lat)
        msf_run(f"msf-run tract, {t} thr", msf_onnx, [], threads=t, frames=n_lat)
        msf_run(f"msf-run ort, {t} thr", msf_onnx, ["--backend", "ort"], threads=t, frames=n_lat)
        for label, model in extra_models:
            msf_run(f"msf-run ort {label}, {t} thr", model, ["--backend", "ort"], threads=t, frames=n_lat)
            msf_run(f"msf-run tract {label}, {t} thr", model, [], threads=t, frames=n_lat)

    base = runs["onnxruntime-python fp32"]
    for label, r in runs.items():
        r["ratio_vs_ort_python"] = r["fps"] / base["fps"]
        r["mask_agreement_vs_ort_python"] = mask_agreement(mask_dirs[label], mask_dirs["onnxruntime-python fp32"], names)
    for spec in a.extra:  # reduced precision against the same backend in fp32
        extra = spec.partition("=")[0]
        for backend in ("ort", "tract"):
            runs[f"msf-run {backend} {extra}"]["mask_agreement_vs_fp32"] = mask_agreement(
                mask_dirs[f"msf-run {backend} {extra}"], mask_dirs[f"msf-run {backend}"], names)
    for label, r in latency.items():
        base_label = "onnxruntime-python fp32, " + label.rpartition(", ")[2]
        r["median_ratio_vs_ort_python"] = latency[base_label]["median_ms"] / r["median_ms"]
    results = {
        "model": f"{os.path.basename(ckpt)} ({model_mb:.0f} MB ONNX)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "frames": a.frames,
        "threads": a.threads or "default",
        "baseline_onnx": "torch.onnx.export of benches/python/torch_msf.py" if have_torch else "msf-export output",
        "runs": runs,
        "latency": latency,
    }
    with open(os.path.join(a.work, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    plot(results, os.path.join(a.work, "results.png"))
    print(f"\n{'contender':<28}{'fps':>8}{'ratio':>8}{'median ms':>11}{'p90 ms':>9}{'load s':>8}{'load MiB':>9}{'RSS MiB':>8}{'masks =':>9}")
    for label, r in runs.items():
        print(f"{label:<28}{r['fps']:>8.2f}{r['ratio_vs_ort_python']:>7.2f}×{r['ms_median']:>11.1f}{r['ms_p90']:>9.1f}"
              f"{r['load_to_first_mask_s']:>8.2f}{r['load_rss_mb']:>9.0f}{r['peak_rss_mb']:>8.0f}"
              f"{100 * r['mask_agreement_vs_ort_python']:>8.2f}%")
    if latency:
        print(f"\nlatency, batch 1, one frame at a time (JPEG decode start → mask written), {n_lat} frames")
        print(f"{'contender':<34}{'median ms':>10}{'p99 ms':>9}{'vs ort-py':>10}{'load MiB':>9}{'RSS MiB':>8}")
        for label, r in latency.items():
            print(f"{label:<34}{r['median_ms']:>10.1f}{r['p99_ms']:>9.1f}{r['median_ratio_vs_ort_python']:>9.2f}×{r['load_rss_mb']:>9.0f}{r['peak_rss_mb']:>8.0f}")
    for label, r in runs.items():
        if "mask_agreement_vs_fp32" in r:
            print(f"{label}: masks {100 * r['mask_agreement_vs_fp32']:.2f} % equal to the same backend in fp32")
    print(f"\nwrote {os.path.join(a.work, 'results.json')} and results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
