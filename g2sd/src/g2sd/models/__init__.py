"""Model configurations of g2sd, each with the paper's parameter count.

`python -m g2sd.models [--json]` lists them. Students and teachers at paper scale:

* classification ViTs (timm ``vit_*_patch16_224``, 1000 classes) and the distillation-token
  students of specific distillation;
* MAE teachers (encoder + decoder, ``dec512d8b``) and the generic-distillation MAE students
  (``dec256d4b`` / ``dec128d4b`` decoders with the feature predictors).
"""

from __future__ import annotations

from functools import partial

import timm
from torch import nn

from vlcore.models.mae import ENCODERS, build_mae
from vlcore.registry import ModelRegistry

from g2sd.models.g2sd_mae import G2SDStudentMAE, freeze, teacher_features
from g2sd.models.vit_distill import DistilledVisionTransformer

REGISTRY = ModelRegistry("g2sd")

__all__ = [
    "REGISTRY",
    "DistilledVisionTransformer",
    "G2SDStudentMAE",
    "build_classifier",
    "build_gd_student",
    "freeze",
    "teacher_features",
]

_TABLE = "G2SD comparison table (students '5 M' / '22 M'); exact ViT/16 count with a 1000-class head"


def build_classifier(
    *, embed_dim: int, depth: int, num_heads: int, patch_size: int = 16, img_size: int = 224, num_classes: int = 1000,
    distilled: bool = False, global_pool: str = "token", drop_path_rate: float = 0.0,
) -> nn.Module:
    """A timm ViT classifier (LayerNorm eps 1e-6, qkv bias); ``distilled`` adds the distillation token."""
    kw = dict(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
              num_classes=num_classes, drop_path_rate=drop_path_rate, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    if distilled:
        return DistilledVisionTransformer(**kw)
    return timm.models.vision_transformer.VisionTransformer(global_pool=global_pool, **kw)


def build_gd_student(
    *, embed_dim: int, depth: int, num_heads: int, decoder_embed_dim: int, decoder_depth: int,
    decoder_num_heads: int, target_dim: int, encoder_target_dim: int, patch_size: int = 16, img_size: int = 224,
) -> G2SDStudentMAE:
    return G2SDStudentMAE(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads,
        target_dim=target_dim, encoder_target_dim=encoder_target_dim,
    )


def _size(name: str) -> dict:
    e = ENCODERS[name]
    return dict(embed_dim=e.embed_dim, depth=e.depth, num_heads=e.num_heads, patch_size=e.patch_size)


@REGISTRY.register("vit_tiny_patch16_224", paper_params_m=5.72, paper_source=_TABLE)
def vit_tiny_patch16_224(**kw):
    """ViT-Ti/16 student after fine-tuning, class-token head."""
    return build_classifier(**_size("tiny"), **kw)


@REGISTRY.register("vit_small_patch16_224", paper_params_m=22.05, paper_source=_TABLE)
def vit_small_patch16_224(**kw):
    """ViT-S/16 student after fine-tuning, class-token head."""
    return build_classifier(**_size("small"), **kw)


@REGISTRY.register("vit_base_patch16_224", paper_params_m=86.57, paper_source="MAE ViT-B/16 teacher (86 M)")
def vit_base_patch16_224(**kw):
    """ViT-B/16 teacher fine-tuned as MAE does (global average pooling + fc_norm)."""
    return build_classifier(**_size("base"), global_pool="avg", **kw)


@REGISTRY.register("vit_large_patch16_224", paper_params_m=304.33, paper_source="MAE ViT-L/16 teacher (304 M)")
def vit_large_patch16_224(**kw):
    """ViT-L/16 teacher fine-tuned as MAE does (global average pooling + fc_norm)."""
    return build_classifier(**_size("large"), global_pool="avg", **kw)


@REGISTRY.register("g2sd_vit_tiny_patch16_224_dist", paper_params_m=5.91,
                   paper_source="ViT-Ti/16 + distillation token and head (5.72 M + 0.19 M)")
def g2sd_vit_tiny_patch16_224_dist(**kw):
    """ViT-Ti/16 specific-distillation student: distillation token appended last, two heads."""
    return build_classifier(**_size("tiny"), distilled=True, **kw)


@REGISTRY.register("g2sd_vit_small_patch16_224_dist", paper_params_m=22.44,
                   paper_source="ViT-S/16 + distillation token and head (22.05 M + 0.39 M)")
def g2sd_vit_small_patch16_224_dist(**kw):
    """ViT-S/16 specific-distillation student: distillation token appended last, two heads."""
    return build_classifier(**_size("small"), distilled=True, **kw)


@REGISTRY.register("mae_vit_base_patch16_dec512d8b", paper_params_m=111.91,
                   paper_source="MAE ViT-B/16 with 512-d 8-block decoder: encoder 85.80 M + decoder 26.11 M")
def mae_vit_base_patch16_dec512d8b(**kw):
    """MAE-B teacher of generic distillation (the full checkpoint with decoder)."""
    return build_mae("mae_vit_base_patch16_dec512d8b", **kw)


@REGISTRY.register("mae_vit_large_patch16_dec512d8b", paper_params_m=329.54,
                   paper_source="MAE ViT-L/16 with 512-d 8-block decoder: encoder 303.30 M + decoder 26.24 M")
def mae_vit_large_patch16_dec512d8b(**kw):
    """MAE-L teacher of generic distillation (L -> S)."""
    return build_mae("mae_vit_large_patch16_dec512d8b", **kw)


@REGISTRY.register("g2sd_mae_vit_small_patch16_dec256d4b", paper_params_m=26.5, tolerance=0.01,
                   paper_source="GD student ViT-S + dec256d4b: encoder 21.67 + decoder 3.51 + predictor 0.39 "
                                "+ unused encoder predictor 0.89 M")
def g2sd_mae_vit_small_patch16_dec256d4b(**kw):
    """Generic-distillation student ViT-S/16 (teacher MAE-B: targets 512-d decoder, 768-d encoder)."""
    e = _size("small")
    return build_gd_student(**e, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8, target_dim=512,
                            encoder_target_dim=768, **kw)


@REGISTRY.register("g2sd_mae_vit_tiny_patch16_dec128d4b", paper_params_m=7.5, tolerance=0.01,
                   paper_source="GD student ViT-Ti + dec128d4b: encoder 5.52 + decoder 0.94 + predictor 0.33 "
                                "+ unused encoder predictor 0.74 M")
def g2sd_mae_vit_tiny_patch16_dec128d4b(**kw):
    """Generic-distillation student ViT-Ti/16 (teacher MAE-B)."""
    e = _size("tiny")
    return build_gd_student(**e, decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4, target_dim=512,
                            encoder_target_dim=768, **kw)


@REGISTRY.register("g2sd_mae_vit_small_patch16_dec256d4b_l2s")
def g2sd_mae_vit_small_patch16_dec256d4b_l2s(**kw):
    """Generic-distillation student ViT-S/16 for an MAE-L teacher (1024-d encoder target)."""
    e = _size("small")
    return build_gd_student(**e, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8, target_dim=512,
                            encoder_target_dim=1024, **kw)
