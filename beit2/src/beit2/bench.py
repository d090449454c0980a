"""Benchmark cases of beit2 for `make bench` (`python -m vlcore.bench --papers beit2`): the BEiT v2
ViT against timm's `beitv2_*` of the same configuration, one training step and inference each."""

from __future__ import annotations

import torch

from vlcore.bench import BenchCase


def cases(quick: bool) -> list[BenchCase]:
    import timm

    from beit2.models import REGISTRY

    name = "beitv2_base_patch16_224"
    size, batch = (112, 4) if quick else (224, 16)
    return [BenchCase(
        name=f"BEiT v2 ViT-B/16 classifier @{size}", batch_size=batch,
        ours=lambda: REGISTRY.build(name, img_size=size),
        reference=lambda: timm.create_model(name, pretrained=False, img_size=size),
        reference_name=f"timm {name}",
        batch=lambda b: (torch.randn(b, 3, size, size),),
    )]


if __name__ == "__main__":  # python -m beit2.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "beit2", *sys.argv[1:]]))
