"""Evaluation metrics: DreamBench-style DINO / CLIP-I / CLIP-T and FID (card §6).

The paper's feature extractors (DINO ViT-S/16, CLIP ViT-B/32, Inception-v3) are pretrained
networks; here every metric takes the extractor as an argument, so any offline network can be
used (the tests and the mini reproduction use small ones built in code).

* DINO / CLIP-I: mean cosine similarity between the features of each generated image and its
  reference image (the single input image, as in the paper's protocol), x 1 (DINO is reported
  x 100 in the paper's tables, then / 100).
* CLIP-T: mean cosine between image embeddings and text embeddings of the prompt (with the
  class noun), times ``logit_scale`` = 1 by default (CLIPScore uses 100 and clips at 0).
* FID: ``torchmetrics.image.fid.FrechetInceptionDistance`` with a custom feature module
  (``FeatureExtractor`` wraps any ``nn.Module`` image -> (B, D)).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def feature_cosine(features: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                   references: torch.Tensor) -> float:
    """Mean over pairs of cos(f(image_i), f(reference_i)); ``references`` (B, ...) or one (1, ...)."""
    a = features(images).flatten(1).float()
    b = features(references).flatten(1).float()
    if b.shape[0] == 1:
        b = b.expand_as(a)
    return float(F.cosine_similarity(a, b, dim=-1).mean())


def dino_score(dino: Callable, images: torch.Tensor, references: torch.Tensor) -> float:
    """DreamBench DINO: cosine of DINO features, generated vs reference."""
    return feature_cosine(dino, images, references)


def clip_i_score(clip_image: Callable, images: torch.Tensor, references: torch.Tensor) -> float:
    """DreamBench CLIP-I: cosine of CLIP image embeddings, generated vs reference."""
    return feature_cosine(clip_image, images, references)


@torch.no_grad()
def clip_t_score(clip_image: Callable, clip_text: Callable, images: torch.Tensor, texts, *,
                 logit_scale: float = 1.0, clip_at_zero: bool = False) -> float:
    """DreamBench CLIP-T: cosine of image and prompt embeddings (CLIPScore = 100 x max(cos, 0))."""
    a = F.normalize(clip_image(images).flatten(1).float(), dim=-1)
    b = F.normalize(clip_text(texts).flatten(1).float(), dim=-1)
    cos = (a * b).sum(-1)
    if clip_at_zero:
        cos = cos.clamp_min(0)
    return float((logit_scale * cos).mean())


class FeatureExtractor(nn.Module):
    """Adapter for torchmetrics FID: float images in [0, 1] (B, 3, H, W) -> (B, num_features)."""

    def __init__(self, net: nn.Module, num_features: int, input_size: int | None = None):
        super().__init__()
        self.net = net
        self.num_features = num_features
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.net(x).flatten(1).double()


def fid(extractor: FeatureExtractor, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 256) -> float:
    """FID between two image sets (float in [0, 1]) with a custom feature extractor (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=True)
    for i in range(0, len(real), batch_size):
        metric.update(real[i: i + batch_size], real=True)
    for i in range(0, len(fake), batch_size):
        metric.update(fake[i: i + batch_size], real=False)
    return float(metric.compute())


def frechet_distance(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) in float64 (hand reference for tests)."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    ev = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * ev)
