"""Model configurations of beit3, each with the paper's parameter count.

`python -m beit3.models [--json]` lists them. Backbone entries count the Multiway
encoder with both embeddings (the released checkpoints' ``beit3.*`` tensors); ``_itc``
adds the two retrieval projections (README "222M / 674M"); ``_pretrain`` adds the untied
MLM (d -> 64010) and MIM (d -> 8192) heads (README "276M / 746M").
"""

from vlcore.registry import ModelRegistry

from beit3.models.beit3 import (
    BEiT3,
    BEiT3ForCaptioning,
    BEiT3ForImageClassification,
    BEiT3ForNLVR2,
    BEiT3ForRetrieval,
    BEiT3ForVQA,
    BEiT3Pretrain,
)

REGISTRY = ModelRegistry("beit3")

BASE = dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16, img_size=224)
LARGE = dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0, patch_size=16, img_size=224)
# paper giant: 40 x 1408, FFN 6144, 16 heads, patch 14, shared attention, VL-FFN in the top 3 layers
GIANT = dict(
    embed_dim=1408, depth=40, num_heads=16, mlp_ratio=6144 / 1408, patch_size=14, img_size=224,
    multiway="shared_attention", vl_layers=3,
)
_README = "unilm beit3/README.md model table"


@REGISTRY.register("beit3_base_patch16_224", paper_params_m=221.0, paper_source="parameter arithmetic of the released base checkpoint (backbone)")
def beit3_base_patch16_224(**kw) -> BEiT3:
    """BEiT-3 base, released decoupled Multiway backbone."""
    return BEiT3(**{**BASE, **kw})


@REGISTRY.register("beit3_base_itc_patch16_224", paper_params_m=222.0, paper_source=_README)
def beit3_base_itc_patch16_224(**kw) -> BEiT3ForRetrieval:
    """BEiT-3 base with the retrieval (ITC) heads."""
    return BEiT3ForRetrieval(**{**BASE, **kw})


@REGISTRY.register("beit3_base_pretrain_patch16_224", paper_params_m=276.0, paper_source=_README)
def beit3_base_pretrain_patch16_224(**kw) -> BEiT3Pretrain:
    """BEiT-3 base with untied MLM and MIM heads (pretrained checkpoint)."""
    return BEiT3Pretrain(**{**BASE, **kw})


@REGISTRY.register("beit3_large_patch16_224", paper_params_m=672.7, paper_source="parameter arithmetic of the released large checkpoint (backbone)")
def beit3_large_patch16_224(**kw) -> BEiT3:
    """BEiT-3 large, released decoupled Multiway backbone."""
    return BEiT3(**{**LARGE, **kw})


@REGISTRY.register("beit3_large_itc_patch16_224", paper_params_m=674.0, paper_source=_README)
def beit3_large_itc_patch16_224(**kw) -> BEiT3ForRetrieval:
    """BEiT-3 large with the retrieval (ITC) heads."""
    return BEiT3ForRetrieval(**{**LARGE, **kw})


@REGISTRY.register("beit3_large_pretrain_patch16_224", paper_params_m=746.0, paper_source=_README)
def beit3_large_pretrain_patch16_224(**kw) -> BEiT3Pretrain:
    """BEiT-3 large with untied MLM and MIM heads (pretrained checkpoint)."""
    return BEiT3Pretrain(**{**LARGE, **kw})


@REGISTRY.register(
    "beit3_giant_patch14_224",
    paper_params_m=1900.0,
    paper_source="BEiT-3 paper Sec. 2.3 (1.9B: V 692M, L 692M, VL 52M, attention 317M)",
    tolerance=0.04,  # the paper rounds to 0.1B; its split sums to 1.75B before embeddings
)
def beit3_giant_patch14_224(**kw) -> BEiT3:
    """BEiT-3 giant (paper): shared attention, V/L-FFN experts, VL-FFN in the top 3 layers."""
    return BEiT3(**{**GIANT, **kw})


__all__ = [
    "REGISTRY", "BEiT3", "BEiT3Pretrain", "BEiT3ForRetrieval", "BEiT3ForVQA", "BEiT3ForNLVR2",
    "BEiT3ForCaptioning", "BEiT3ForImageClassification",
]
