"""Goldens for msf-train's SlotDiffusion decoder, from diffusers itself: a small
UNet2DConditionModel with upstream SlotDiffusion-MSF's block types (DownBlock2D, then
CrossAttnDownBlock2D; UNetMidBlock2DCrossAttn; CrossAttnUpBlock2D, then UpBlock2D), seeded random
weights, one forward pass, and upstream's DDPMScheduler (scaled_linear, 0.0015 -> 0.0195, 1000 steps).

    python unet_golden.py OUT.pth

Writes one torch.save dict of float32 tensors (what the exporter's reader takes):
  m.decode.backbone.*  the UNet's state_dict, under upstream's prefix;
  unet.x, unet.t (timesteps as floats), unet.context, unet.sample  one eval-mode forward;
  ddpm.alphas_cumprod, ddpm.x0, ddpm.noise, ddpm.t, ddpm.noisy  the schedule and one add_noise.
The UNet's sizes are those the Rust test builds: channels 32/48/64/96, 2 layers per block, 2 heads
(diffusers' attention_head_dim), cross-attention width 16, 8 GroupNorm groups, 4 latent channels.
"""
import os
import sys

# Random weights only: diffusers must never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402


def main():
    torch.manual_seed(20260101)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=[32, 48, 64, 96],
        layers_per_block=2,
        cross_attention_dim=16,
        transformer_layers_per_block=1,
        attention_head_dim=2,
        norm_num_groups=8,
        dropout=0.1,
    ).eval()
    with torch.no_grad():
        # Norm weights start at 1 and biases at 0 (or small): move every vector parameter off
        # its default so that a swapped or missing one shows in the output.
        for p in unet.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(3, 4, 16, 16)
        t = torch.tensor([0, 417, 999])
        context = torch.randn(3, 5, 16)
        sample = unet(x, t, context).sample

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195)
    x0 = torch.randn(4, 4, 16, 16)
    noise = torch.randn_like(x0)
    ts = torch.tensor([0, 1, 500, 999])
    noisy = sched.add_noise(x0, noise, ts)

    out = {f"m.decode.backbone.{k}": v.float().contiguous() for k, v in unet.state_dict().items()}
    out.update({
        "unet.x": x, "unet.t": t.float(), "unet.context": context, "unet.sample": sample,
        "ddpm.alphas_cumprod": sched.alphas_cumprod.float(), "ddpm.x0": x0, "ddpm.noise": noise,
        "ddpm.t": ts.float(), "ddpm.noisy": noisy,
    })
    torch.save(out, sys.argv[1])
    print(f"unet golden: {len(out)} tensors, output std {sample.std():.3f}")


if __name__ == "__main__":
    main()
