"""Model configurations of maskdistill, each with the paper's parameter count.

`python -m maskdistill.models [--json]` lists them. Students for fine-tuning are
``vlcore.models.beit.Beit`` (per-layer relative position bias, mean pooling + ``fc_norm``,
1000-class head), as BEiT v2; pretraining models are :class:`MaskDistillForMIM` (shared
relative position bias, mask token, one linear "FC" head to the teacher's width); the
frozen CLIP teacher is :class:`maskdistill.models.teacher.ClipFeatureTeacher`.
"""

from __future__ import annotations

from vlcore.models.beit import Beit
from vlcore.registry import ModelRegistry

from maskdistill.models.pretrain import MaskDistillForMIM, MaskDistillOutput
from maskdistill.models.teacher import TEACHER_FOR_SIZE, TEACHERS, ClipFeatureTeacher

__all__ = ["REGISTRY", "SIZES", "TEACHERS", "TEACHER_FOR_SIZE", "Beit", "ClipFeatureTeacher", "MaskDistillForMIM",
           "MaskDistillOutput", "build_model"]

REGISTRY = ModelRegistry("maskdistill")

# width / depth / heads / patch / layer-scale init (BEiT v2: 0.1 base, 1e-5 large and huge)
SIZES: dict[str, dict] = {
    "base": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, init_values=0.1),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, patch_size=16, init_values=1e-5),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16, patch_size=14, init_values=1e-5),
}
_CARD = "paper card section 3 (BEiT-style block, 1000-class head)"


def _finetune(size: str, **kw) -> Beit:
    s = SIZES[size]
    cfg = dict(embed_dim=s["embed_dim"], depth=s["depth"], num_heads=s["num_heads"], patch_size=s["patch_size"],
               init_values=s["init_values"], rel_pos="per_layer", global_pool="avg", num_classes=1000)
    cfg.update(kw)
    return Beit(**cfg)


def _pretrain(size: str, **kw) -> MaskDistillForMIM:
    s = SIZES[size]
    cfg = dict(s, target_dim=TEACHERS[TEACHER_FOR_SIZE[size]]["dim"])
    cfg.update(kw)
    return MaskDistillForMIM(**cfg)


@REGISTRY.register("maskdistill_vit_base_patch16_224", paper_params_m=86.5,
                   paper_source=f"issue / {_CARD}: ViT-B/16 86.5M (86.53M calc)")
def maskdistill_vit_base_patch16_224(**kw) -> Beit:
    """ViT-B/16 student for fine-tuning: per-layer rel-pos bias, layer scale 0.1, mean pooling, 1000 classes."""
    return _finetune("base", **kw)


@REGISTRY.register("maskdistill_vit_large_patch16_224", paper_params_m=304.4,
                   paper_source=f"issue / {_CARD}: ViT-L/16 304.4M (304.43M calc)")
def maskdistill_vit_large_patch16_224(**kw) -> Beit:
    """ViT-L/16 student for fine-tuning: per-layer rel-pos bias, layer scale 1e-5, mean pooling, 1000 classes."""
    return _finetune("large", **kw)


@REGISTRY.register("maskdistill_vit_huge_patch14_224", paper_params_m=632.3,
                   paper_source=f"issue / {_CARD}: ViT-H/14 632.3M (632.25M calc)")
def maskdistill_vit_huge_patch14_224(**kw) -> Beit:
    """ViT-H/14 student for fine-tuning: 256 patches at 224, layer scale 1e-5, mean pooling, 1000 classes."""
    return _finetune("huge", **kw)


@REGISTRY.register("maskdistill_vit_base_patch16_224_pt", paper_params_m=86.26, paper_source=f"{_CARD}: 86.26M calc")
def maskdistill_vit_base_patch16_224_pt(**kw) -> MaskDistillForMIM:
    """ViT-B/16 MaskDistill pretraining: shared rel-pos bias, mask token, FC head 768 -> 768 (CLIP-B/16)."""
    return _pretrain("base", **kw)


@REGISTRY.register("maskdistill_vit_large_patch16_224_pt", paper_params_m=303.92,
                   paper_source=f"{_CARD}: 303.92M calc")
def maskdistill_vit_large_patch16_224_pt(**kw) -> MaskDistillForMIM:
    """ViT-L/16 MaskDistill pretraining: FC head 1024 -> 768 (CLIP-B/16 teacher)."""
    return _pretrain("large", **kw)


@REGISTRY.register("maskdistill_vit_huge_patch14_224_pt", paper_params_m=631.81, paper_source=f"{_CARD}: 631.81M calc")
def maskdistill_vit_huge_patch14_224_pt(**kw) -> MaskDistillForMIM:
    """ViT-H/14 MaskDistill pretraining: FC head 1280 -> 1024 (CLIP-L/14 teacher)."""
    return _pretrain("huge", **kw)


def build_model(name: str, **kw):
    """A registered configuration by name (with keyword overrides)."""
    return REGISTRY.build(name, **kw)
