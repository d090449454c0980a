"""Layer-wise lr decay for a ViTDet detector (detectron2's ``get_vit_lr_decay_rate``).

Backbone parameters get ``decay_rate ** (num_layers + 1 - layer_id)`` with the patch
embedding and position table at layer 0 and ``backbone.blocks.i`` at i + 1; everything
else (pyramid, heads, adapters) keeps the full lr. Norms, biases and the position table
get no weight decay. Frozen parameters (a distillation teacher) are left out.
"""

from __future__ import annotations

import re

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")


def vit_lr_decay_layer(name: str, num_layers: int) -> int:
    if name.startswith(("backbone.patch_embed", "backbone.pos_embed")):
        return 0
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1)) + 1
    return num_layers + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name="G2SDViTLayerDecayConstructor")
class ViTLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(num_layers=12, decay_rate=0.7)``."""

    def add_params(self, params: list, module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
        num_layers = int(self.paramwise_cfg.get("num_layers", 12))
        decay_rate = float(self.paramwise_cfg.get("decay_rate", 0.7))
        groups: dict[str, dict] = {}
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            no_wd = p.ndim == 1 or name.endswith(".bias") or "pos_embed" in name or "norm" in name
            layer = vit_lr_decay_layer(name, num_layers)
            key = f"layer_{layer}_{'no_decay' if no_wd else 'decay'}"
            if key not in groups:
                scale = decay_rate ** (num_layers + 1 - layer)
                groups[key] = {"params": [], "param_names": [], "lr_scale": scale, "lr": self.base_lr * scale,
                               "weight_decay": 0.0 if no_wd else self.base_wd, "group_name": key}
            groups[key]["params"].append(p)
            groups[key]["param_names"].append(name)
        params.extend(groups.values())
