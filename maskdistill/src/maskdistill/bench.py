"""Benchmark cases of maskdistill for `make bench` (`python -m vlcore.bench --papers maskdistill`).

The pretraining student ViT-B/16 (shared relative position bias, mask token, linear head to the
teacher's width) on a 40 %-masked batch, against timm's ``beitv2_base_patch16_224`` built with the
same shared relative position bias and the same linear head. timm has no mask token, so the
reference sees the unmasked batch: the arithmetic is the same, the token replacement is not."""

from __future__ import annotations

import torch
from torch import nn

from vlcore.bench import BenchCase


class _TimmStudent(nn.Module):
    def __init__(self, size: int, target_dim: int) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model("beitv2_base_patch16_224", pretrained=False, img_size=size, num_classes=0,
                                         use_rel_pos_bias=False, use_shared_rel_pos_bias=True, init_values=0.1)
        self.head = nn.Linear(self.encoder.embed_dim, target_dim)

    def forward(self, x: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(x)[:, 1:])


def cases(quick: bool) -> list[BenchCase]:
    from maskdistill.models import REGISTRY

    size, batch = (112, 4) if quick else (224, 16)
    n = (size // 16) ** 2

    def masked(b: int) -> tuple:
        g = torch.Generator().manual_seed(0)
        mask = torch.zeros(b, n, dtype=torch.bool)
        mask[:, torch.randperm(n, generator=g)[: int(0.4 * n)]] = True
        return torch.randn(b, 3, size, size, generator=g), mask

    return [BenchCase(
        name=f"MaskDistill ViT-B/16 pretraining step @{size}", batch_size=batch,
        ours=lambda: REGISTRY.build("maskdistill_vit_base_patch16_224_pt", img_size=size),
        reference=lambda: _TimmStudent(size, 768),
        reference_name="timm beitv2_base (shared rel-pos) + linear head",
        batch=masked,
    )]


if __name__ == "__main__":  # python -m maskdistill.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "maskdistill", *sys.argv[1:]]))
