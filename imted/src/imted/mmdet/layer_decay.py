"""Layer-wise lr decay for imTED, as an mmengine optimizer-wrapper constructor.

Full training (``decoder_decay=False``): the encoder is decayed, id 0 = patch embed / cls / pos, id i+1 =
block i, every other parameter id L+1 (neck, RPN, MFM and the whole decoder head at full lr);
lr scale = rate ** (L + 1 - id).
Few-shot fine-tuning (``freeze_backbone=True, decoder_decay=True``): ``backbone.*`` is left out of the
optimizer (and frozen), the decoder is decayed instead: head LayerNorm + ``decoder_embed`` get
rate ** D_dec+1, decoder block j rate ** (D_dec - j), the rest 1.0.
No weight decay for 1-D parameters, biases, ``*_token`` and position tables.
"""

from __future__ import annotations

import re

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn


def encoder_layer_id(name: str, num_layers: int) -> int:
    if name.startswith(("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed")):
        return 0
    m = re.match(r"backbone\.blocks\.(\d+)\.", name)
    return int(m.group(1)) + 1 if m else num_layers + 1


def decoder_lr_scale(name: str, rate: float, decoder_depth: int) -> float:
    m = re.search(r"bbox_head\.decoder_blocks\.(\d+)\.", name)
    if m:
        return rate ** (decoder_depth - int(m.group(1)))
    if re.search(r"bbox_head\.(norm|decoder_embed)\.", name):
        return rate ** (decoder_depth + 1)
    return 1.0


def no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim == 1 or name.endswith(".bias") or name.endswith("_token") or "pos_embed" in name


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ImTEDLayerDecayConstructor(DefaultOptimWrapperConstructor):
    """paramwise_cfg: ``num_layers`` (encoder depth), ``layer_decay_rate``; for few-shot fine-tuning
    ``freeze_backbone=True`` and ``decoder_decay=True`` with ``decoder_depth``."""

    def add_params(self, params: list, module: nn.Module, **kwargs) -> None:
        cfg = dict(self.paramwise_cfg)
        num_layers = int(cfg.get("num_layers", 12))
        rate = float(cfg.get("layer_decay_rate", 0.75))
        freeze_backbone = bool(cfg.get("freeze_backbone", False))
        decoder_decay = bool(cfg.get("decoder_decay", False))
        decoder_depth = int(cfg.get("decoder_depth", 8))
        wd = self.base_wd if self.base_wd is not None else 0.0
        groups: dict[tuple[float, float], dict] = {}
        for name, p in module.named_parameters():
            if freeze_backbone and name.startswith("backbone."):
                p.requires_grad_(False)  # no gradients: saves the backbone's backward
                continue
            if not p.requires_grad:
                continue
            if decoder_decay:
                scale = decoder_lr_scale(name, rate, decoder_depth)
            else:
                scale = rate ** (num_layers + 1 - encoder_layer_id(name, num_layers))
            this_wd = 0.0 if no_decay(name, p) else wd
            g = groups.setdefault((scale, this_wd), {"params": [], "lr": self.base_lr * scale,
                                                      "weight_decay": this_wd, "lr_scale": scale, "names": []})
            g["params"].append(p)
            g["names"].append(name)
        for g in groups.values():
            g.pop("names")
            params.append(g)
        print_log(f"ImTEDLayerDecayConstructor: {len(groups)} parameter groups", logger="current")
