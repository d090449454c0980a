"""Exponential moving average of a model's weights.

A small stand-in for timm's ModelEmaV3 with a constant decay: importing timm costs
seconds, which every launched training process (and each rank of a torchrun job)
would pay just for this.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """`ema = decay * ema + (1 - decay) * model` over floating-point parameters and buffers.

    Integer buffers (e.g. BatchNorm's `num_batches_tracked`) are copied. The average
    starts from the weights at construction; `module` is an eval-mode copy.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        model_state = model.state_dict()
        for name, ema_v in self.module.state_dict().items():
            v = model_state[name].detach()
            if ema_v.is_floating_point():
                ema_v.lerp_(v.to(ema_v.dtype), 1.0 - self.decay)
            else:
                ema_v.copy_(v)
