"""Layer-wise lr decay for ``BEiTv2ViT`` inside an MMSegmentation model.

BEiT's rule: patch embedding / class token are layer 0, block i is layer i + 1, every
other parameter (neck, heads) layer L + 1; group lr = base lr x decay^(L + 1 - layer);
no weight decay on 1-D parameters, biases, tokens and relative position tables.
(MMSegmentation's own constructor keys on ``backbone.layers.N`` names, which this
backbone does not use.)
"""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

from vlcore.train.optim import param_groups_lrd, vit_layer_id


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BEiTv2LayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75)``."""

    def add_params(self, params: list, module, **kwargs) -> None:
        num_layers = int(self.paramwise_cfg.get("num_layers"))
        decay = float(self.paramwise_cfg.get("layer_decay_rate", self.paramwise_cfg.get("decay_rate", 1.0)))

        def layer_id(name: str, n: int) -> int:
            if name.startswith("backbone."):
                return vit_layer_id(name[len("backbone."):], n)
            return n + 1

        groups = param_groups_lrd(module, self.base_wd or 0.0, decay, layer_id_fn=layer_id, num_layers=num_layers,
                                  no_weight_decay=("relative_position_bias_table", "cls_token", "pos_embed"))
        for g in groups:
            g["lr"] = self.base_lr * g["lr_scale"]
            g.pop("param_names", None)
            g.pop("layer_id", None)
        params.extend(groups)
