"""Benchmark case of kosmos_g for `make bench` (`python -m vlcore.bench --papers kosmos_g`): one
stage-3 training step (interleaved prompt -> MLLM -> AlignerNet M -> condition -> diffusion loss
through a frozen diffusers U-Net, gradients into the MLLM and M) with our `diffusion_loss`, against
the same step written as diffusers' text-to-image training example writes it (``add_noise``,
``unet(...).sample``, ``F.mse_loss``) on the same modules, timesteps and noise. The U-Net keeps
SD v1.5's layout (four levels, cross-attention in the first three) at reduced width and latent size,
so that a step fits a CPU benchmark."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.bench import BenchCase

from kosmos_g.losses import diffusion_loss, freeze_
from kosmos_g.models.aligner import AlignerConfig, AlignerNet
from kosmos_g.models.kosmos_g import KosmosGEncoder


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(channels=(32, 64, 64, 64), latent=16, cross=64, heads=4, aligner_layers=1, batch=2)
    return dict(channels=(128, 256, 512, 512), latent=32, cross=512, heads=8, aligner_layers=2, batch=4)


def _modules(quick: bool) -> tuple[KosmosGEncoder, nn.Module, object]:
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from kosmos2.bench import _config as kosmos2_config
    from kosmos2.models.kosmos2 import Kosmos2Model

    from kosmos_g.sd import SD15_SCHEDULER

    s, cfg = _sizes(quick), kosmos2_config(quick)
    aligner = AlignerNet(AlignerConfig(mllm_dim=cfg.embed_dim, dim=s["cross"], num_heads=s["heads"],
                                       encoder_layers=s["aligner_layers"], decoder_layers=s["aligner_layers"],
                                       num_queries=77, with_reconstruction=False))
    unet = UNet2DConditionModel(
        sample_size=s["latent"], in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=s["channels"],
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=s["cross"], attention_head_dim=8, norm_num_groups=32 if not quick else 16,
    )
    return KosmosGEncoder(Kosmos2Model(cfg), aligner), freeze_(unet), DDPMScheduler(**SD15_SCHEDULER)


class _Step(nn.Module):
    """Loss of one stage-3 step; ``diffusers_style`` computes it the way diffusers' example does."""

    def __init__(self, quick: bool, diffusers_style: bool) -> None:
        super().__init__()
        self.encoder, self.unet, self.scheduler = _modules(quick)
        self.diffusers_style = diffusers_style

    def forward(self, px, ids, mask, latents, timesteps, noise):
        cond = self.encoder(ids, px, mask, torch.ones_like(ids))
        if self.diffusers_style:
            noisy = self.scheduler.add_noise(latents, noise, timesteps)
            pred = self.unet(noisy, timesteps, encoder_hidden_states=cond).sample
            return F.mse_loss(pred.float(), noise.float(), reduction="mean")
        return diffusion_loss(self.unet, self.scheduler, latents, cond, timesteps=timesteps, noise=noise)


def _batch(quick: bool, n: int) -> tuple:
    from kosmos2.bench import _config as kosmos2_config
    from kosmos2.bench import _inputs

    s = _sizes(quick)
    px, ids, mask = _inputs(kosmos2_config(quick), n)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(n, 4, s["latent"], s["latent"], generator=g)
    return px, ids, mask, latents, torch.randint(0, 1000, (n,), generator=g), torch.randn(latents.shape, generator=g)


def cases(quick: bool) -> list[BenchCase]:
    s = _sizes(quick)
    return [BenchCase(
        name=f"Kosmos-G stage-3 step: MLLM + M -> U-Net {'/'.join(map(str, s['channels']))} @{s['latent']}",
        batch_size=s["batch"],
        ours=lambda: _Step(quick, diffusers_style=False),
        reference=lambda: _Step(quick, diffusers_style=True),
        reference_name="the same step as diffusers' train_text_to_image (add_noise, UNet2DConditionModel, mse_loss)",
        batch=lambda n: _batch(quick, n),
        loss=lambda out: out,
    )]


if __name__ == "__main__":  # python -m kosmos_g.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "kosmos_g", *sys.argv[1:]]))
