"""Benchmark cases of g2sd for `make bench` (`python -m vlcore.bench --papers g2sd`): the ViT-S
specific-distillation student (class + distillation token, two heads) against timm's DeiT-S
distilled model, the same architecture. (The plain ViT-S student *is* timm's class.)"""

from __future__ import annotations

import torch

from vlcore.bench import BenchCase


def _sum_heads(out) -> torch.Tensor:
    logits = out if torch.is_tensor(out) else out[0] + out[1]
    return logits.float().pow(2).mean()


def _timm_deit_s_distilled():
    import timm

    m = timm.create_model("deit_small_distilled_patch16_224", pretrained=False)
    m.set_distilled_training(True)  # both heads' logits in training, as ours
    return m


def cases(quick: bool) -> list[BenchCase]:

    from g2sd.models import REGISTRY

    batch = 8 if quick else 32
    return [BenchCase(
        name="G2SD distilled student ViT-S/16 @224", batch_size=batch,
        ours=lambda: REGISTRY.build("g2sd_vit_small_patch16_224_dist"),
        reference=_timm_deit_s_distilled,
        reference_name="timm deit_small_distilled_patch16_224",
        batch=lambda b: (torch.randn(b, 3, 224, 224),),
        loss=_sum_heads,
    )]


if __name__ == "__main__":  # python -m g2sd.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "g2sd", *sys.argv[1:]]))
