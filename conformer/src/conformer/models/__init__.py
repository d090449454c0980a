"""Model configurations of conformer, each with the paper's parameter count and multiply-accumulates.

`python -m conformer.models [--json]` lists them (parameters counted on the meta device,
MACs with `count_macs`). Each configuration is also a timm model: `timm.create_model(name)`
works once `conformer` is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models import register_model
from torch import nn

from vlcore.registry import ModelRegistry

from conformer.models.conformer import Conformer, ConvBlock, ConvTransBlock, FCUDown, FCUUp, stage_layout

REGISTRY = ModelRegistry("conformer")

_README = "official README model zoo (pengzhiliang/Conformer) / paper Table 1"


@dataclass(frozen=True)
class MacSpec:
    paper_macs_g: float | None  # the paper's table, 10^9 multiply-accumulates
    img_size: int = 224
    tolerance: float = 0.01


# MACs the paper / official README give per configuration, at 224 x 224.
PAPER_MACS: dict[str, MacSpec] = {}


def _register(name: str, *, paper_params_m: float | None, paper_macs_g: float | None, source: str,
              mac_img_size: int = 224, **cfg):
    def builder(**kwargs) -> Conformer:
        return Conformer(**{**cfg, **kwargs})

    builder.__name__ = name
    builder.__doc__ = (
        f"Conformer r={cfg['channel_ratio']}, E={cfg['embed_dim']}, {cfg['num_heads']} heads, "
        f"depth {cfg.get('depth', 12)}, patch {cfg['patch_size']}"
    )
    REGISTRY.register(name, paper_params_m=paper_params_m, paper_source=source, tolerance=0.01)(builder)
    PAPER_MACS[name] = MacSpec(paper_macs_g, img_size=mac_img_size)

    # timm's registry derives the model name from the function name.
    def timm_entry(pretrained: bool = False, **kwargs) -> Conformer:
        if pretrained:
            raise ValueError(f"{name}: no weights are downloaded; convert an official checkpoint with "
                             "`python -m conformer.convert` and load it")
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's loader options
            kwargs.pop(key, None)
        return builder(**kwargs)

    timm_entry.__name__ = name
    timm_entry.__qualname__ = name
    timm_entry.__module__ = __name__
    register_model(timm_entry)
    return builder


conformer_tiny_patch16_224 = _register(
    "conformer_tiny_patch16_224", paper_params_m=23.5, paper_macs_g=5.2, source=_README,
    patch_size=16, channel_ratio=1, embed_dim=384, depth=12, num_heads=6, qkv_bias=True,
)
conformer_small_patch16_224 = _register(
    "conformer_small_patch16_224", paper_params_m=37.7, paper_macs_g=10.6, source=_README,
    patch_size=16, channel_ratio=4, embed_dim=384, depth=12, num_heads=6, qkv_bias=True,
)
conformer_base_patch16_224 = _register(
    "conformer_base_patch16_224", paper_params_m=83.3, paper_macs_g=23.3, source=_README,
    patch_size=16, channel_ratio=6, embed_dim=576, depth=12, num_heads=9, qkv_bias=True,
)
# The detection backbone (tokens at 1/32); the paper gives no ImageNet size for it.
conformer_small_patch32_224 = _register(
    "conformer_small_patch32_224", paper_params_m=None, paper_macs_g=None,
    source="official mmdetection/README (detection backbone; no size given)",
    patch_size=32, channel_ratio=4, embed_dim=384, depth=12, num_heads=6, qkv_bias=True,
)


# --- the mini reproduction's models (CIFAR-10, 32 x 32), all 0.33 M parameters within 1 % -------------------
# Shared small-image stem: 3x3 stride-2 conv to 32 channels, no max-pool (16 x 16 maps after it).
MICRO_STEM = dict(stem_chs=32, stem_kernel=3, stem_stride=2, stem_pool=False)

conformer_micro_patch16_32 = _register(
    "conformer_micro_patch16_32", paper_params_m=None, paper_macs_g=None,
    source="mini reproduction (CIFAR-10 32 x 32)", mac_img_size=32,
    patch_size=16, channel_ratio=0.5, embed_dim=48, depth=6, num_heads=2, qkv_bias=True, num_classes=10, **MICRO_STEM,
)


@REGISTRY.register("resnet_micro_32", paper_source="mini reproduction baseline (CIFAR-10 32 x 32)")
def resnet_micro_32(**kwargs) -> nn.Module:
    """Bottleneck ResNet = Conformer-micro's CNN branch alone, widened to the same size"""
    from conformer.models.baselines import BottleneckResNet

    return BottleneckResNet(**{"num_classes": 10, "channel_ratio": 0.84, "depth": 6, **MICRO_STEM, **kwargs})


@REGISTRY.register("deit_micro_patch4_32", paper_source="mini reproduction baseline (CIFAR-10 32 x 32)")
def deit_micro_patch4_32(**kwargs) -> nn.Module:
    """DeiT (timm VisionTransformer): patch 4 (64 tokens), width 66, depth 6, 2 heads"""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**{"img_size": 32, "patch_size": 4, "num_classes": 10, "embed_dim": 66, "depth": 6,
                                "num_heads": 2, "qkv_bias": True, **kwargs})


PAPER_MACS["resnet_micro_32"] = MacSpec(None, img_size=32)
PAPER_MACS["deit_micro_patch4_32"] = MacSpec(None, img_size=32)


def count_macs(model: nn.Module, img_size: int = 224, *, in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on a 1 x C x S x S input.

    Counted with `torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2) on a meta-device copy:
    convolutions, linear layers and the attention matmuls (q @ k^T and attn @ v) count;
    normalisation, activations, pooling, interpolation and additions do not, which is the
    convention of the paper's MAC column.
    """
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    # On the meta device every op is dispatched by shape, so attention counts whatever
    # kernel the real device would pick (CPU flash attention is not registered with the counter).
    if next(model.parameters()).device.type != "meta":
        model = copy.deepcopy(model).to("meta")
    x = torch.zeros(1, in_chans, img_size, img_size, device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def macs_table(names: list[str] | None = None) -> list[dict]:
    """name, macs_g, paper_macs_g, rel_diff and matches_paper for the registered configurations."""
    rows = []
    for name in names or REGISTRY.names():
        spec = PAPER_MACS.get(name, MacSpec(None))
        with torch.device("meta"):
            model = REGISTRY.build(name)
        macs = count_macs(model, spec.img_size)
        row = {"name": name, "macs": macs, "macs_g": round(macs / 1e9, 3), "mac_img_size": spec.img_size,
               "paper_macs_g": spec.paper_macs_g}
        if spec.paper_macs_g is not None:
            row["macs_rel_diff"] = round(macs / 1e9 / spec.paper_macs_g - 1.0, 5)
            row["macs_match_paper"] = abs(row["macs_rel_diff"]) <= spec.tolerance
        rows.append(row)
    return rows


__all__ = [
    "REGISTRY", "PAPER_MACS", "Conformer", "ConvBlock", "ConvTransBlock", "FCUDown", "FCUUp", "count_macs",
    "macs_table", "stage_layout",
]
