"""Helpers for maskdistill's tests: tiny, randomly initialised models (no downloads)."""

from __future__ import annotations

import torch

from maskdistill.models.pretrain import MaskDistillForMIM
from maskdistill.models.teacher import ClipFeatureTeacher, tiny_clip_config

__all__ = ["ClipFeatureTeacher", "tiny_clip", "tiny_student", "tiny_batch"]


def tiny_clip(*, with_projection: bool = False, image_size: int = 32, patch_size: int = 8, seed: int = 0):
    """A randomly initialised transformers CLIP image tower built from a config."""
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    cls = CLIPVisionModelWithProjection if with_projection else CLIPVisionModel
    return cls(tiny_clip_config(image_size=image_size, patch_size=patch_size)).eval()


def tiny_student(target_dim: int = 32, seed: int = 0) -> MaskDistillForMIM:
    torch.manual_seed(seed)
    return MaskDistillForMIM(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, target_dim=target_dim)


def tiny_batch(seed: int = 0, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] (B, 3, 32, 32) and a mask with 6 of 16 patches per image."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 32, 32, generator=g)
    mask = torch.zeros(batch, 16, dtype=torch.bool)
    for b in range(batch):
        mask[b, torch.randperm(16, generator=g)[:6]] = True
    return images, mask


