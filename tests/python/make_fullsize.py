"""Make full-size upstream-format MSF checkpoints with random weights, plus reference outputs for them.

Test tooling, independent of the Rust code in this repository. The upstream fixtures are shrunk models; this
script builds checkpoints with exactly the key names and shapes of the real released ones (from the key/shape
dumps in ``shared/spec/keys/*.state_dict.tsv``), written in PyTorch's zip format by ``torchfmt.py``, and runs
``reference.py`` on a synthetic image so that the exporter and runtime can be tested at full size.

    python make_fullsize.py OUTDIR [--seed N] [--keys DIR]

writes into OUTDIR:

* ``full-slate-msf.pth`` (319 keys) and ``full-slotdiffusion-msf.pth`` (968 keys): random float32 weights.
  Every tensor is drawn from its own generator seeded by (seed, crc32(key)), so the inference part (ViT,
  projection, slot initialiser, Slot Attention) is the same in both files;
* ``full-slate-msf.ref.npz`` and ``full-slotdiffusion-msf.ref.npz``: ``input`` (1,3,256,256) normalised
  synthetic image, ``slots``, ``attn``, ``masks`` from reference.py (float64 internally);
* ``vae-c256-msf.pth``: a stage-1 VAE checkpoint (no slot keys; an exporter must refuse it).

Weights are scaled like PyTorch's default initialisation (uniform +-1/sqrt(fan_in)), LayerNorm weights ~1 and
biases ~0, LayerScale gammas in [0.1, 1]; as for the upstream fixtures, ``m.initializ.mean`` is multiplied by
10 and ``m.aggregat.proj_q/proj_k`` weights by 4 so that the slot attention is far from uniform.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference  # noqa: E402
import torchfmt  # noqa: E402

MODELS = {
    "full-slate-msf": "slate_r_vqvae-coco-msf.state_dict.tsv",
    "full-slotdiffusion-msf": "slotdiffusion_r_vqvae-coco-msf.state_dict.tsv",
}
VAE = ("vae-c256-msf", "vqvae-coco-c256-msf.state_dict.tsv")
MEAN_SCALE = 10.0
QK_SCALE = 4.0
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def read_keys(path: str) -> list:
    """[(key, shape tuple)] from a ``key<TAB>[d0, d1]<TAB>dtype`` listing."""
    out = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            key, shape, dtype = line.rstrip("\n").split("\t")
            if dtype != "float32":
                raise ValueError(f"{key}: unexpected dtype {dtype}")
            dims = [s.strip() for s in shape.strip("[]").split(",") if s.strip()]
            out.append((key, tuple(int(d) for d in dims)))
    return out


def init_tensor(key: str, shape: tuple, seed: int) -> np.ndarray:
    """Random float32 weights for one key, deterministic in (seed, key)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    name = key.rsplit(".", 1)[-1]

    def uniform(bound):
        return ((rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(bound)).astype(np.float32)

    def normal(std):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    if key == "m.initializ.mean":  # xavier_uniform over (num, dim), then scaled
        n, d = shape[-2:]
        return uniform(math.sqrt(6.0 / (n + d))) * np.float32(MEAN_SCALE)
    if key == "m.initializ.logstd":
        return np.full(shape, math.log(shape[-1] ** -0.5), dtype=np.float32)
    if name == "gamma":  # LayerScale
        return (0.1 + 0.9 * rng.random(shape, dtype=np.float32)).astype(np.float32)
    if name in ("cls_token", "pos_embed", "bos", "_pe", "pe"):
        return normal(0.02)
    if "codebook" in key:  # frozen Gaussian codebook
        return normal(1.0)
    if len(shape) >= 2:  # Linear / Conv / GRU weights: PyTorch default bound 1/sqrt(fan_in)
        w = uniform(1.0 / math.sqrt(int(np.prod(shape[1:]))))
        if key in ("m.aggregat.proj_q.weight", "m.aggregat.proj_k.weight"):
            w *= np.float32(QK_SCALE)
        return w
    if len(shape) == 1 and name == "weight":  # norms
        return (1.0 + normal(0.1)).astype(np.float32)
    if len(shape) == 1:  # biases
        return normal(0.05)
    return normal(0.02)


def make_checkpoint(tsv: str, seed: int) -> dict:
    return {key: init_tensor(key, shape, seed) for key, shape in read_keys(tsv)}


def synthetic_image(seed: int, size: int = 256) -> np.ndarray:
    """A deterministic RGB scene (uint8: background gradient, a few coloured shapes, mild noise), normalised
    like upstream's eval transform: (x - mean) / std on the 0..255 scale, (1,3,size,size) float32."""
    rng = np.random.default_rng([seed, 7])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    img = np.stack([40 + 120 * xx, 60 + 100 * yy, 150 - 80 * xx * yy], -1)
    shapes = [
        ((yy - 0.30) ** 2 + (xx - 0.28) ** 2 < 0.16 ** 2, (230, 40, 40)),  # red disc
        ((np.abs(yy - 0.70) < 0.14) & (np.abs(xx - 0.30) < 0.20), (30, 200, 60)),  # green box
        ((yy > 0.45) & (yy < 0.92) & (np.abs(xx - 0.74) < (yy - 0.45) * 0.45), (240, 220, 30)),  # triangle
        ((yy - 0.22) ** 2 / 0.09 ** 2 + (xx - 0.72) ** 2 / 0.18 ** 2 < 1, (40, 60, 230)),  # blue ellipse
    ]
    for mask, colour in shapes:
        img[mask] = colour
    img = img + rng.normal(0, 4, img.shape)
    u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    x = (u8.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _mask_margin(attn: np.ndarray) -> float:
    """Smallest gap between the best and second-best upsampled attention over all pixels (tie risk)."""
    _, _, h, w = attn.shape
    mh = reference.bilinear_matrix(h, reference.MASK_SIZE)
    mw = reference.bilinear_matrix(w, reference.MASK_SIZE)
    up = np.einsum("oh,bshw,pw->bsop", mh, attn.astype(np.float64), mw, optimize=True)
    top2 = np.sort(up, axis=1)[:, -2:]
    return float(np.min(top2[:, 1] - top2[:, 0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keys", default=None, help="folder of *.state_dict.tsv (default: ../shared/spec/keys)")
    ap.add_argument("--no-vae", action="store_true", help="skip the stage-1 VAE file")
    args = ap.parse_args(argv)
    keys_dir = args.keys or os.environ.get("MSF_SPEC_KEYS") or os.path.join(
        HERE, "..", "..", "..", "shared", "spec", "keys")
    os.makedirs(args.outdir, exist_ok=True)
    t_all = time.time()

    x = synthetic_image(args.seed)
    ref = None
    for name, tsv in MODELS.items():
        t0 = time.time()
        state = make_checkpoint(os.path.join(keys_dir, tsv), args.seed)
        n_params = sum(v.size for v in state.values())
        path = os.path.join(args.outdir, f"{name}.pth")
        torchfmt.save(path, state)
        print(f"{path}: {len(state)} keys, {n_params:,} params, {os.path.getsize(path) / 2**20:.0f} MiB "
              f"({time.time() - t0:.1f} s)")
        if ref is None:  # the inference weights are the same in both files
            t0 = time.time()
            net = reference.MSFInference(state, np.float64)
            ref = net(x)
            t64 = time.time() - t0
            t0 = time.time()
            r32 = reference.MSFInference(state, np.float32)(x)
            t32 = time.time() - t0
            masks = ref["masks"][0]
            areas = np.bincount(masks.ravel(), minlength=net.num_slots) / masks.size
            print(f"  reference ({net.describe()}): float64 {t64:.1f} s, float32 {t32:.1f} s")
            print(f"  attn range [{ref['attn'].min():.3g}, {ref['attn'].max():.3g}]; mask areas per slot "
                  f"{np.round(areas, 3).tolist()}; smallest top-2 gap {_mask_margin(ref['attn']):.2e}")
            print(f"  float32 vs float64 reference: slots max|d| "
                  f"{np.max(np.abs(r32['slots'] - ref['slots'])):.2e}, attn max|d| "
                  f"{np.max(np.abs(r32['attn'] - ref['attn'])):.2e}, masks "
                  f"{np.mean(r32['masks'] == ref['masks']) * 100:.4f}% equal")
        del state
        npz = os.path.join(args.outdir, f"{name}.ref.npz")
        np.savez(npz, input=x, slots=ref["slots"], attn=ref["attn"], masks=ref["masks"])
        print(f"{npz}: input {x.shape}, slots {ref['slots'].shape}, attn {ref['attn'].shape}, "
              f"masks {ref['masks'].shape}")

    if not args.no_vae:
        name, tsv = VAE
        state = make_checkpoint(os.path.join(keys_dir, tsv), args.seed)
        path = os.path.join(args.outdir, f"{name}.pth")
        torchfmt.save(path, state)
        print(f"{path}: {len(state)} keys (stage-1 VAE)")
    print(f"make_fullsize: done in {time.time() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
