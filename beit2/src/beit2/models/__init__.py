"""Model configurations of beit2, each with the paper's parameter count.

`python -m beit2.models [--json]` lists them. Fine-tuning models are
``vlcore.models.beit.Beit`` (per-layer relative position bias, mean pooling +
``fc_norm``, 1000-class head); pretraining models are :class:`BeitV2ForMIM`; the
tokenizers are ``vlcore.tokenizers.VQKD``.
"""

from __future__ import annotations

from vlcore.models.beit import Beit
from vlcore.registry import ModelRegistry
from vlcore.tokenizers.vqkd import VQKD, build_vqkd

from beit2.models.pretrain import BeitV2ForMIM, MIMOutput

__all__ = ["REGISTRY", "SIZES", "Beit", "BeitV2ForMIM", "MIMOutput", "VQKD", "build_model"]

REGISTRY = ModelRegistry("beit2")

# width / depth / heads; early_layers is the block whose patches feed the aggregation branch
SIZES: dict[str, dict] = {
    "base": dict(embed_dim=768, depth=12, num_heads=12, init_values=0.1, early_layers=9),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, init_values=1e-5, early_layers=21),
}
_README = "BEiT v2 README model zoo"


def _finetune(size: str, **kw) -> Beit:
    s = SIZES[size]
    cfg = dict(embed_dim=s["embed_dim"], depth=s["depth"], num_heads=s["num_heads"], init_values=s["init_values"],
               rel_pos="per_layer", global_pool="avg", num_classes=1000)
    cfg.update(kw)
    return Beit(**cfg)


def _pretrain(size: str, **kw) -> BeitV2ForMIM:
    s = SIZES[size]
    cfg = dict(s, vocab_size=8192, head_layers=2)
    cfg.update(kw)
    return BeitV2ForMIM(**cfg)


@REGISTRY.register(
    "beitv2_base_patch16_224", paper_params_m=86.53,
    paper_source=f"{_README}: ViT-B/16 86.5M (86,530,984 with the 1000-class head)",
)
def beitv2_base_patch16_224(**kw) -> Beit:
    """ViT-B/16 for fine-tuning: per-layer relative position bias, layer scale, mean pooling, 1000 classes."""
    return _finetune("base", **kw)


@REGISTRY.register(
    "beitv2_large_patch16_224", paper_params_m=304.43, paper_source=f"{_README}: ViT-L/16 304M (304.43M with the head)"
)
def beitv2_large_patch16_224(**kw) -> Beit:
    """ViT-L/16 for fine-tuning: per-layer relative position bias, layer scale 1e-5, mean pooling, 1000 classes."""
    return _finetune("large", **kw)


@REGISTRY.register("beitv2_base_patch16_224_pt")
def beitv2_base_patch16_224_pt(**kw) -> BeitV2ForMIM:
    """ViT-B/16 MIM pretraining: shared rel-pos bias, 8192-way head, aggregation from block 9 through 2 blocks."""
    return _pretrain("base", **kw)


@REGISTRY.register("beitv2_large_patch16_224_pt")
def beitv2_large_patch16_224_pt(**kw) -> BeitV2ForMIM:
    """ViT-L/16 MIM pretraining: shared rel-pos bias, 8192-way head, aggregation from block 21 through 2 blocks."""
    return _pretrain("large", **kw)


@REGISTRY.register("vqkd_encoder_base_decoder_3x768x12_clip")
def vqkd_encoder_base_decoder_3x768x12_clip(**kw) -> VQKD:
    """VQ-KD tokenizer (trainable part): ViT-B/16 encoder, 8192 x 32 codebook, 3-block decoder -> CLIP 512-d."""
    return build_vqkd("vqkd_encoder_base_decoder_3x768x12_clip", **kw)


@REGISTRY.register("vqkd_encoder_base_decoder_1x768x12_clip")
def vqkd_encoder_base_decoder_1x768x12_clip(**kw) -> VQKD:
    """VQ-KD tokenizer with a 1-block decoder regressing CLIP ViT-B/16 features."""
    return build_vqkd("vqkd_encoder_base_decoder_1x768x12_clip", **kw)


@REGISTRY.register("vqkd_encoder_base_decoder_1x768x12_dino")
def vqkd_encoder_base_decoder_1x768x12_dino(**kw) -> VQKD:
    """VQ-KD tokenizer with a 1-block decoder regressing DINO ViT-B/16 features (768-d)."""
    return build_vqkd("vqkd_encoder_base_decoder_1x768x12_dino", **kw)


def build_model(name: str, **kw):
    """A registered configuration by name (with keyword overrides)."""
    return REGISTRY.build(name, **kw)


def _upernet(size: str):
    """UperNet + BEiT v2 backbone for ADE20K 512x512, built through MMSegmentation (the plug-in)."""
    import os

    import mmseg
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import beit2.mmseg  # noqa: F401 - registers BEiTv2ViT

    register_all_modules(init_default_scope=False)
    s = SIZES[size]
    d = s["embed_dim"]
    base = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", "_base_", "models", "upernet_beit.py")
    m = Config.fromfile(base).model
    m.pop("pretrained", None)
    m.backbone = dict(type="BEiTv2ViT", img_size=512, embed_dim=d, depth=s["depth"], num_heads=s["num_heads"],
                      init_values=s["init_values"], out_indices=(3, 5, 7, 11) if size == "base" else (7, 11, 15, 23))
    m.neck.embed_dim = d
    m.decode_head.in_channels = [d] * 4
    m.decode_head.channels = d
    m.auxiliary_head.in_channels = d
    with DefaultScope.overwrite_default_scope("mmseg"):
        return MODELS.build(m)


@REGISTRY.register(
    "upernet_beitv2_base_ade20k_512", paper_params_m=163.0, paper_source=f"{_README}: UperNet BEiTv2-base 163M"
)
def upernet_beitv2_base_ade20k_512(**kw):
    """UperNet (pool scales 1, 2, 3, 6; 768 channels) + FCN auxiliary head on BEiT v2 ViT-B/16, ADE20K 150 classes."""
    return _upernet("base")


@REGISTRY.register(
    "upernet_beitv2_large_ade20k_512", paper_params_m=441.0, paper_source=f"{_README}: UperNet BEiTv2-large 441M"
)
def upernet_beitv2_large_ade20k_512(**kw):
    """UperNet (1024 channels) + FCN auxiliary head on BEiT v2 ViT-L/16, ADE20K 150 classes."""
    return _upernet("large")
