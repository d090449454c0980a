"""MaskDistill pretraining model: a BEiT ViT (dense: every token enters the encoder, masked
patches replaced by the mask token) whose final normalised patch tokens go through one
linear layer ("FC head") to the teacher's feature width.

    images --patch embed, masked -> mask token, + [CLS]--> blocks (shared rel-pos bias) --> norm
           --> head_distill (d_s -> d_t) at every patch --> vlcore.mim objective (targets, N, L, positions)

The objective (``vlcore.mim``) owns the target normalisation, the loss and the supervised
positions, so the same student trains on MaskDistill, pixel, HOG or EMA targets. Parameter
names follow the BEiT v2 pretraining layout (``cls_token``, ``mask_token``, ``patch_embed``,
``rel_pos_bias``, ``blocks``, ``norm``) plus ``head_distill.*``, which fine-tuning drops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from vlcore.layers.init import trunc_normal_init_
from vlcore.mim import MIMObjective
from vlcore.models.beit import Beit

__all__ = ["MaskDistillForMIM", "MaskDistillOutput"]


class MaskDistillOutput(NamedTuple):
    loss: torch.Tensor
    pred: torch.Tensor  # B, N, d_t head outputs at every patch
    target: torch.Tensor  # B, N, d_t normalised targets


class MaskDistillForMIM(Beit):
    """Args (beyond :class:`vlcore.models.beit.Beit`'s): ``target_dim`` (teacher width d_t)."""

    def __init__(self, *, target_dim: int = 768, drop_path_rate: float = 0.0, init_values: float | None = 0.1,
                 init_std: float = 0.02, **kwargs) -> None:
        kwargs.setdefault("rel_pos", "shared")
        super().__init__(num_classes=0, global_pool="", use_mask_token=True, init_mode="pretrain",
                         drop_path_rate=drop_path_rate, init_values=init_values, init_std=init_std, **kwargs)
        self.target_dim = target_dim
        self.head_distill = nn.Linear(self.embed_dim, target_dim)
        with torch.no_grad():
            trunc_normal_init_(self.head_distill, std=init_std, cutoff=1.0)

    def forward(self, x: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        """Head outputs at every patch (B, N, d_t); the objective picks the supervised ones."""
        return self.head_distill(self.forward_features(x, bool_masked_pos)[:, 1:])

    def mim_loss(self, x: torch.Tensor, bool_masked_pos: torch.Tensor, target: torch.Tensor,
                 objective: MIMObjective) -> MaskDistillOutput:
        """``target``: the objective's normalised targets of the *uncorrupted* image (B, N, d_t)."""
        pred = self(x, bool_masked_pos)
        return MaskDistillOutput(objective.loss(pred.float(), target, bool_masked_pos), pred, target)
