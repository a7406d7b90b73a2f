"""An independent numpy implementation of the MSF inference path (image -> slots, attention, masks).

Test tooling, independent of the Rust code in this repository: it is written from the upstream
MultiScaleFusion model definition (``model/ocl.py`` SlotAttention, ``model/basic.py`` DINO2ViT/MLP/Interpolate,
``util_model.py`` interpolat_argmax_attent) and the architecture notes, and is validated against the goldens
that upstream PyTorch produced (``fixtures/ref``). It gives the Rust tests a second opinion where no upstream
golden exists (full-size random checkpoints made by ``make_fullsize.py``) and supplies the bicubic
pre-resize for ONNX models that leave it out of the graph (``check_onnx.py``).

The path (identical for SLATE-MSF and SlotDiffusion-MSF):

1. bicubic resize x0.875 (PyTorch ``interpolate(scale_factor=0.875, mode="bicubic")``: a = -0.75,
   half-pixel centres, border clamp, no antialias), 256 -> 224;
2. DINOv2 ViT (timm): conv patch embedding, class token, learned position embedding, pre-norm blocks with
   LayerScale (LayerNorm eps 1e-6, exact erf GELU, head dim 64), final LayerNorm, class token dropped;
3. projection MLP ``encode_project``: LayerNorm (eps 1e-5) -> Linear -> GELU -> Linear;
4. Slot Attention from the learned mean ``initializ.mean``: 3 iterations, softmax over slots, renormalised
   over tokens (eps 1e-5), GRUCell, residual FFN; outputs the final slots and the last softmax (``attn``);
5. masks: attention bilinearly upsampled to 256 (align_corners=False), argmax over slots.

All sizes are read from the checkpoint's tensor shapes. Computation is float64 by default (``dtype``), which
makes this an accurate reference for float32 runtimes.

Command line::

    python reference.py --self-check [--fixtures DIR] [--dtype float32]   # vs upstream goldens
    python reference.py --checkpoint X.pth --input in.npy --out out.npz    # run one input
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torchfmt  # noqa: E402

BACKBONE = "m.encode_backbone.1."
PROJECT = "m.encode_project."
INIT_MEAN = "m.initializ.mean"
AGG = "m.aggregat."
BACKBONE_SCALE = 0.875  # config: Interpolate(scale_factor=0.875, "bicubic") before the ViT
SA_ITERS = 3  # config: SlotAttention(num_iter=3)
HEAD_DIM = 64  # DINOv2: heads = embed_dim / 64
LN_EPS_VIT = 1e-6
LN_EPS = 1e-5
SA_EPS = 1e-5
MASK_SIZE = 256


# ----------------------------------------------------------------------------------------------------------
# Elementary functions
# ----------------------------------------------------------------------------------------------------------

def erf(x: np.ndarray) -> np.ndarray:
    """Vectorised erf, accurate to ~1e-15 (numpy has none).

    Uses the everywhere-positive series erf(x) = 2/sqrt(pi) exp(-x^2) sum_n (2x^2)^n x / (1*3*...*(2n+1)),
    evaluated in bands of |x| with enough terms for each band; erf(x) = sign(x) for |x| >= 6.
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.ones_like(a)
    for lo, hi, terms in ((0.0, 1.0, 24), (1.0, 2.5, 48), (2.5, 4.0, 85), (4.0, 6.0, 140)):
        m = (a >= lo) & (a < hi)
        if not m.any():
            continue
        v = a[m]
        two_x2 = 2.0 * v * v
        term = v.copy()
        total = v.copy()
        for n in range(1, terms):
            term *= two_x2 / (2 * n + 1)
            total += term
        out[m] = (2.0 / math.sqrt(math.pi)) * np.exp(-v * v) * total
    out = np.minimum(out, 1.0)
    return np.copysign(out, x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU: 0.5 x (1 + erf(x / sqrt 2)) (PyTorch ``nn.GELU()`` default)."""
    return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


# ----------------------------------------------------------------------------------------------------------
# Resampling (PyTorch semantics), as matrices applied separably
# ----------------------------------------------------------------------------------------------------------

def _cubic_weights(t: float, a: float = -0.75):
    """Keys' cubic convolution weights for the 4 taps at offsets -1, 0, 1, 2 (PyTorch's coefficients)."""

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def bicubic_matrix(n_in: int, n_out: int, scale_factor: float | None = None) -> np.ndarray:
    """(n_out, n_in) matrix of ``interpolate(mode="bicubic", align_corners=False)`` along one axis.

    With ``scale_factor`` given (as upstream does), the source coordinate is (i + 0.5) / scale_factor - 0.5,
    exactly as PyTorch computes it; otherwise n_in / n_out is the scale. Taps outside are clamped to the border.
    """
    scale = (1.0 / scale_factor) if scale_factor else n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        src = scale * (i + 0.5) - 0.5
        i0 = min(int(math.floor(src)), n_in - 1)
        t = min(max(src - i0, 0.0), 1.0)
        for k, w in enumerate(_cubic_weights(t)):
            m[i, min(max(i0 - 1 + k, 0), n_in - 1)] += w
    return m


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of ``interpolate(size=..., mode="bilinear", align_corners=False)`` along one axis."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        m[i, i0] += 1.0 - t
        m[i, i1] += t
    return m


def bicubic_resize(image: np.ndarray, scale_factor: float = BACKBONE_SCALE) -> np.ndarray:
    """(B,C,H,W) -> (B,C,floor(H*s),floor(W*s)), PyTorch bicubic (no antialias). Keeps the input's dtype."""
    _, _, h, w = image.shape
    ho, wo = int(math.floor(h * scale_factor)), int(math.floor(w * scale_factor))
    mh = bicubic_matrix(h, ho, scale_factor)
    mw = bicubic_matrix(w, wo, scale_factor)
    out = np.einsum("oh,bchw,pw->bcop", mh, image.astype(np.float64), mw, optimize=True)
    return out.astype(image.dtype, copy=False)


def masks_from_attention(attn: np.ndarray, size: int = MASK_SIZE) -> np.ndarray:
    """attn (B,S,h,w) -> (B,size,size) int64: argmax over slots of the bilinearly upsampled attention."""
    _, _, h, w = attn.shape
    mh = bilinear_matrix(h, size).astype(attn.dtype)
    mw = bilinear_matrix(w, size).astype(attn.dtype)
    up = np.einsum("oh,bshw,pw->bsop", mh, attn, mw, optimize=True)
    return up.argmax(1)


# ----------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------

class MSFInference:
    """The inference part of an MSF checkpoint (a dict name -> array, keys prefixed ``m.``)."""

    def __init__(self, state: dict, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.w = {k: np.asarray(v).astype(self.dtype) for k, v in state.items()
                  if k.startswith((BACKBONE, PROJECT, INIT_MEAN, AGG))}
        w = self.w
        self.embed_dim = w[BACKBONE + "cls_token"].shape[-1]
        self.heads = self.embed_dim // HEAD_DIM
        if self.heads * HEAD_DIM != self.embed_dim:
            raise ValueError(f"ViT embed dim {self.embed_dim} is not a multiple of {HEAD_DIM}")
        blocks = {int(m.group(1)) for k in w if (m := re.match(re.escape(BACKBONE) + r"blocks\.(\d+)\.", k))}
        self.depth = len(blocks)
        if blocks != set(range(self.depth)):
            raise ValueError(f"ViT blocks are not 0..n-1: {sorted(blocks)}")
        self.patch = w[BACKBONE + "patch_embed.proj.weight"].shape[-1]
        n_tok = w[BACKBONE + "pos_embed"].shape[1] - 1
        self.grid = int(round(math.sqrt(n_tok)))
        if self.grid * self.grid != n_tok:
            raise ValueError(f"pos_embed has {n_tok} patch tokens, not a square grid")
        self.vit_size = self.grid * self.patch
        self.input_size = int(round(self.vit_size / BACKBONE_SCALE))
        self.project = self._mlp_layers(PROJECT)
        self.ffn = self._mlp_layers(AGG + "ffn.")
        self.num_slots, self.slot_dim = w[INIT_MEAN].shape[1:]

    def _mlp_layers(self, prefix):
        """Upstream ``MLP``: optional leading LayerNorm, Linear layers with GELU between (dropouts skipped)."""
        idx = sorted({int(m.group(1)) for k in self.w if (m := re.match(re.escape(prefix) + r"(\d+)\.weight$", k))})
        layers = []
        for i in idx:
            wt = self.w[f"{prefix}{i}.weight"]
            b = self.w.get(f"{prefix}{i}.bias")
            layers.append(("ln" if wt.ndim == 1 else "linear", wt, b))
        if not layers or any(kind == "ln" for kind, _, _ in layers[1:]):
            raise ValueError(f"unexpected MLP layout under {prefix}")
        return layers

    @staticmethod
    def _run_mlp(layers, x):
        linears = [l for l in layers if l[0] == "linear"]
        for kind, wt, b in layers:
            if kind == "ln":
                x = layer_norm(x, wt, b, LN_EPS)
            else:
                x = linear(x, wt, b)
                if wt is not linears[-1][1]:
                    x = gelu(x)
        return x

    # -- ViT ---------------------------------------------------------------------------------------------
    def backbone(self, image224: np.ndarray) -> np.ndarray:
        """(B,3,224,224) -> patch features (B, grid*grid, embed_dim)."""
        w, p, g, d = self.w, self.patch, self.grid, self.embed_dim
        pre = BACKBONE
        b, c = image224.shape[:2]
        x = image224.astype(self.dtype).reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5)
        x = x.reshape(b, g * g, c * p * p)
        x = linear(x, w[pre + "patch_embed.proj.weight"].reshape(d, -1), w[pre + "patch_embed.proj.bias"])
        cls = np.broadcast_to(w[pre + "cls_token"], (b, 1, d))
        x = np.concatenate([cls, x], 1) + w[pre + "pos_embed"]
        for i in range(self.depth):
            k = f"{pre}blocks.{i}."
            y = layer_norm(x, w[k + "norm1.weight"], w[k + "norm1.bias"], LN_EPS_VIT)
            x = x + w[k + "ls1.gamma"] * self._vit_attention(y, k)
            y = layer_norm(x, w[k + "norm2.weight"], w[k + "norm2.bias"], LN_EPS_VIT)
            y = linear(gelu(linear(y, w[k + "mlp.fc1.weight"], w[k + "mlp.fc1.bias"])),
                       w[k + "mlp.fc2.weight"], w[k + "mlp.fc2.bias"])
            x = x + w[k + "ls2.gamma"] * y
        x = layer_norm(x, w[pre + "norm.weight"], w[pre + "norm.bias"], LN_EPS_VIT)
        return x[:, 1:, :]

    def _vit_attention(self, x, k):
        w, h = self.w, self.heads
        b, n, d = x.shape
        qkv = linear(x, w[k + "attn.qkv.weight"], w[k + "attn.qkv.bias"])
        qkv = qkv.reshape(b, n, 3, h, d // h).transpose(2, 0, 3, 1, 4)  # (3,B,H,N,hd)
        q, kk, v = qkv[0], qkv[1], qkv[2]
        a = softmax((q * (d // h) ** -0.5) @ kk.transpose(0, 1, 3, 2), -1)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        return linear(o, w[k + "attn.proj.weight"], w[k + "attn.proj.bias"])

    # -- Slot Attention ----------------------------------------------------------------------------------
    def slot_attention(self, feats: np.ndarray, slots_init: np.ndarray | None = None):
        """feats (B,N,Dk) -> slots (B,S,D), attention a0 of the last iteration (B,S,N)."""
        w, a = self.w, AGG
        b = feats.shape[0]
        q = np.broadcast_to(w[INIT_MEAN], (b, self.num_slots, self.slot_dim)) if slots_init is None \
            else np.asarray(slots_init, dtype=self.dtype)
        kv = layer_norm(feats, w[a + "norm1kv.weight"], w[a + "norm1kv.bias"], LN_EPS)
        k = linear(kv, w[a + "proj_k.weight"])
        v = linear(kv, w[a + "proj_v.weight"])
        a0 = None
        for _ in range(SA_ITERS):
            prev = q
            qq = linear(layer_norm(q, w[a + "norm1q.weight"], w[a + "norm1q.bias"], LN_EPS), w[a + "proj_q.weight"])
            logits = (qq * qq.shape[-1] ** -0.5) @ k.transpose(0, 2, 1)  # (B,S,N)
            a0 = softmax(logits, 1)  # over slots
            attn = a0 / (a0.sum(2, keepdims=True) + SA_EPS)  # renormalise over tokens
            u = attn @ v
            q = self._gru(u, prev)
            q = q + self._run_mlp(self.ffn, layer_norm(q, w[a + "norm2.weight"], w[a + "norm2.bias"], LN_EPS))
        return q, a0

    def _gru(self, x, h):
        """torch.nn.GRUCell, gates (r, z, n)."""
        w, a = self.w, AGG
        gi = linear(x, w[a + "rnn.weight_ih"], w[a + "rnn.bias_ih"])
        gh = linear(h, w[a + "rnn.weight_hh"], w[a + "rnn.bias_hh"])
        d = h.shape[-1]
        r = sigmoid(gi[..., :d] + gh[..., :d])
        z = sigmoid(gi[..., d:2 * d] + gh[..., d:2 * d])
        n = np.tanh(gi[..., 2 * d:] + r * gh[..., 2 * d:])
        return (1.0 - z) * n + z * h

    # -- Whole path --------------------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, slots_init: np.ndarray | None = None, resized: bool = False) -> dict:
        """image: normalised (B,3,256,256) (or (B,3,224,224) with ``resized=True``).

        Returns float32 ``slots`` (B,S,D), ``attn`` (B,S,g,g) and int64 ``masks`` (B,256,256).
        """
        image = np.asarray(image)
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected (B,3,H,W), got {image.shape}")
        x = image.astype(self.dtype)
        if not resized:
            if image.shape[2:] != (self.input_size, self.input_size):
                raise ValueError(f"expected {self.input_size}x{self.input_size} input, got {image.shape[2:]}")
            x = bicubic_resize(x)
        if x.shape[2:] != (self.vit_size, self.vit_size):
            raise ValueError(f"ViT input must be {self.vit_size}, got {x.shape[2:]}")
        feats = self._run_mlp(self.project, self.backbone(x))
        slots, a0 = self.slot_attention(feats, slots_init)
        attn = a0.reshape(a0.shape[0], a0.shape[1], self.grid, self.grid)
        return {
            "slots": slots.astype(np.float32),
            "attn": attn.astype(np.float32),
            "masks": masks_from_attention(attn),
        }

    def describe(self) -> str:
        return (f"ViT embed {self.embed_dim}, depth {self.depth}, heads {self.heads}, patch {self.patch}, "
                f"grid {self.grid}; slots {self.num_slots}x{self.slot_dim}; input {self.input_size}")


def load_model(path, dtype=np.float64) -> MSFInference:
    return MSFInference(torchfmt.load(path), dtype)


# ----------------------------------------------------------------------------------------------------------
# Self-check against the upstream goldens
# ----------------------------------------------------------------------------------------------------------

IMAGES = ["motorcycle_left", "hubble_deep_field", "ihc", "camera", "logo"]
MODELS = ["tiny-slate-msf", "tiny-slotdiffusion-msf"]
TOL_SLOTS = 1e-4
TOL_ATTN = 1e-4
MIN_MASK_AGREEMENT = 0.999


def _check_erf() -> float:
    xs = np.concatenate([np.linspace(-7, 7, 20001), np.array([0.0, 1e-300, -1e-12, 5.999999, 6.0])])
    ref = np.array([math.erf(v) for v in xs])
    return float(np.max(np.abs(erf(xs) - ref)))


def self_check(fixtures: str, dtype) -> int:
    err = _check_erf()
    print(f"erf vs math.erf: max |d| = {err:.2e}")
    failures = int(err > 1e-14)
    for model in MODELS:
        t0 = time.time()
        net = load_model(os.path.join(fixtures, f"{model}.pth"), dtype)
        print(f"{model} ({net.describe()}), {np.dtype(dtype).name}:")
        for img in IMAGES:
            ref = os.path.join(fixtures, "ref", img)
            x = np.load(f"{ref}.input.npy")
            out = net(x)
            gs = np.load(f"{ref}.{model}.slots.npy")
            ga = np.load(f"{ref}.{model}.attn.npy")
            gm = np.load(f"{ref}.{model}.segment.npy")
            ds = float(np.max(np.abs(out["slots"] - gs)))
            da = float(np.max(np.abs(out["attn"] - ga)))
            agree = float(np.mean(out["masks"][0] == gm))
            bad = ds > TOL_SLOTS or da > TOL_ATTN or agree < MIN_MASK_AGREEMENT
            failures += bad
            print(f"  {img:18s} slots max|d| {ds:.2e}  attn max|d| {da:.2e}  masks {agree * 100:8.4f}% equal"
                  f"{'  FAIL' if bad else ''}")
        print(f"  ({time.time() - t0:.1f} s)")
    print("reference self-check:", "FAILED" if failures else "ok")
    return failures


def _default_fixtures() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("MSF_FIXTURES", os.path.join(here, "..", "..", "..", "shared", "fixtures"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-check", action="store_true", help="compare with the upstream goldens")
    ap.add_argument("--fixtures", default=None, help="fixture folder (default: ../shared/fixtures or $MSF_FIXTURES)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--checkpoint", help="upstream-format .pth")
    ap.add_argument("--input", help="(B,3,256,256) float32 .npy")
    ap.add_argument("--out", help="output .npz (input, slots, attn, masks)")
    args = ap.parse_args(argv)
    dtype = np.dtype(args.dtype)
    if args.self_check:
        return 1 if self_check(args.fixtures or _default_fixtures(), dtype) else 0
    if not (args.checkpoint and args.input and args.out):
        ap.error("give --self-check, or --checkpoint, --input and --out")
    net = load_model(args.checkpoint, dtype)
    x = np.load(args.input).astype(np.float32)
    out = net(x)
    np.savez(args.out, input=x, **out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
