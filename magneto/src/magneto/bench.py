"""Benchmark cases of magneto for `make bench` (`python -m vlcore.bench --papers magneto`): the
Magneto (Sub-LN) ViT-B against timm's `VisionTransformer(scale_attn_norm=True, scale_mlp_norm=True)`,
the same operations in timm (the decoder stack against torchscale is the shared-core case)."""

from __future__ import annotations

import torch

from vlcore.bench import BenchCase


def cases(quick: bool) -> list[BenchCase]:
    from timm.models.vision_transformer import VisionTransformer

    from magneto.models import REGISTRY

    size, batch = (112, 4) if quick else (224, 16)
    return [BenchCase(
        name=f"Magneto ViT-B/16 @{size}", batch_size=batch,
        ours=lambda: REGISTRY.build("magneto_vit_base_patch16_224", img_size=size),
        reference=lambda: VisionTransformer(img_size=size, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                                            num_classes=1000, scale_attn_norm=True, scale_mlp_norm=True),
        reference_name="timm VisionTransformer(scale_attn_norm, scale_mlp_norm)",
        batch=lambda b: (torch.randn(b, 3, size, size),),
    )]


if __name__ == "__main__":  # python -m magneto.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "magneto", *sys.argv[1:]]))
