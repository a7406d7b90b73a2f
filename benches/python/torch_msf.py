"""The MSF inference path as a plain PyTorch module: the "standard Python path" baseline of the benchmarks.

Written from the upstream model definition (MultiScaleFusion ``model/basic.py`` DINO2ViT/MLP/Interpolate,
``model/ocl.py`` SlotAttention, ``util_model.py`` interpolat_argmax_attent) and the architecture notes, with the
upstream parameter names, so ``load_state_dict`` takes an upstream checkpoint's inference keys (prefix ``m.``
stripped). It is what a user would otherwise run: this module in PyTorch eager, or its ``torch.onnx.export`` in
onnxruntime-python. Sizes are read from the checkpoint.

Input: normalised (B,3,256,256); outputs slots (B,S,D), attn (B,S,g,g), masks (B,256,256) int64.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    def __init__(self, d: int, hidden: int, out: int):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(o.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, heads)
        self.ls1 = LayerScale(d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, hidden, d)
        self.ls2 = LayerScale(d)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, d: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, d, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """DINOv2 ViT (timm layout): class token, learned positions, pre-norm blocks with LayerScale."""

    def __init__(self, d: int, depth: int, heads: int, hidden: int, patch: int, grid: int):
        super().__init__()
        self.patch_embed = PatchEmbed(d, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, d))
        self.blocks = nn.ModuleList(Block(d, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 1:]


class Project(nn.Sequential):
    """``encode_project``: LayerNorm -> Linear -> GELU -> Linear (indices 0, 1, 3 as upstream)."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__(nn.LayerNorm(d_in, eps=1e-5), nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class Initializ(nn.Module):
    def __init__(self, s: int, d: int):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, s, d))
        self.logstd = nn.Parameter(torch.zeros(1, s, d))  # training noise only


class SlotAttention(nn.Module):
    def __init__(self, d_in: int, d: int, ffn: int, iters: int = 3, eps: float = 1e-5):
        super().__init__()
        self.iters, self.eps = iters, eps
        self.norm1q = nn.LayerNorm(d, eps=1e-5)
        self.proj_q = nn.Linear(d, d, bias=False)
        self.norm1kv = nn.LayerNorm(d_in, eps=1e-5)
        self.proj_k = nn.Linear(d_in, d, bias=False)
        self.proj_v = nn.Linear(d_in, d, bias=False)
        self.rnn = nn.GRUCell(d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Identity(), nn.Linear(ffn, d))

    def forward(self, feats, q):
        b, s, d = q.shape
        kv = self.norm1kv(feats)
        k, v = self.proj_k(kv), self.proj_v(kv)
        a0 = None
        for _ in range(self.iters):
            prev = q
            qq = self.proj_q(self.norm1q(q))
            a0 = torch.softmax((qq * d ** -0.5) @ k.transpose(1, 2), 1)
            u = (a0 / (a0.sum(2, keepdim=True) + self.eps)) @ v
            q = self.rnn(u.reshape(b * s, d), prev.reshape(b * s, d)).reshape(b, s, d)
            q = q + self.ffn(self.norm2(q))
        return q, a0


class MSF(nn.Module):
    def __init__(self, state: dict):
        super().__init__()
        w = {k[2:]: v for k, v in state.items() if k.startswith("m.")}
        d = w["encode_backbone.1.cls_token"].shape[-1]
        depth = len({int(m.group(1)) for k in w if (m := re.match(r"encode_backbone\.1\.blocks\.(\d+)\.", k))})
        patch = w["encode_backbone.1.patch_embed.proj.weight"].shape[-1]
        grid = int(round(math.sqrt(w["encode_backbone.1.pos_embed"].shape[1] - 1)))
        hidden = w["encode_backbone.1.blocks.0.mlp.fc1.weight"].shape[0]
        s, sd = w["initializ.mean"].shape[1:]
        ph, po = w["encode_project.1.weight"].shape[0], w["encode_project.3.weight"].shape[0]
        ffn = w["aggregat.ffn.0.weight"].shape[0]
        self.grid = grid
        self.encode_backbone = nn.Sequential(nn.Identity(), ViT(d, depth, d // 64, hidden, patch, grid))
        self.encode_project = Project(d, ph, po)
        self.initializ = Initializ(s, sd)
        self.aggregat = SlotAttention(po, sd, ffn)
        keep = {k: torch.as_tensor(v) for k, v in w.items() if k.split(".")[0] in
                ("encode_backbone", "encode_project", "initializ", "aggregat")}
        self.load_state_dict(keep, strict=True)
        self.eval()

    def forward(self, image):
        x = F.interpolate(image, scale_factor=0.875, mode="bicubic")
        feats = self.encode_project(self.encode_backbone(x))
        slots, a0 = self.aggregat(feats, self.initializ.mean.expand(image.shape[0], -1, -1))
        attn = a0.reshape(a0.shape[0], a0.shape[1], self.grid, self.grid)
        up = F.interpolate(attn, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return slots, attn, up.argmax(1)


def self_check(fixtures: str) -> int:
    """This module against the upstream goldens on the tiny fixtures (slots ≤ 1e-4, masks ≥ 99.9 %)."""
    import os
    import sys

    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "python"))
    import torchfmt

    bad = 0
    for m in ("tiny-slate-msf", "tiny-slotdiffusion-msf"):
        net = MSF(torchfmt.load(os.path.join(fixtures, f"{m}.pth")))
        for f in sorted(os.listdir(os.path.join(fixtures, "ref"))):
            if not f.endswith(".input.npy"):
                continue
            img = f[: -len(".input.npy")]
            ref = lambda what: np.load(os.path.join(fixtures, "ref", f"{img}.{m}.{what}.npy"))  # noqa: E731
            with torch.inference_mode():
                s, a, mk = net(torch.from_numpy(np.load(os.path.join(fixtures, "ref", f))))
            ds, agree = float(np.abs(s.numpy() - ref("slots")).max()), float((mk[0].numpy() == ref("segment")).mean())
            ok = ds <= 1e-4 and agree >= 0.999
            bad += not ok
            print(f"{m} {img}: slots max|Δ| {ds:.1e}, masks {100 * agree:.2f} % {'ok' if ok else 'FAIL'}")
    return 1 if bad else 0


if __name__ == "__main__":
    import sys

    sys.exit(self_check(sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures"))
