"""Loss, training step and evaluation of Conformer's two heads (official `engine.py` semantics).

Training: the criterion is applied to each head and averaged,
L = 1/2 * loss(conv_logits, y) + 1/2 * loss(trans_logits, y), with soft-target cross-entropy
under Mixup / CutMix (label smoothing folded into the targets) or label-smoothed
cross-entropy without them. Evaluation: top-1 of conv_logits + trans_logits, plus each
head's own top-1. Single-head models (the baselines) go through the same functions.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from conformer.config import AugConfig, ConformerConfig


def head_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Both heads of a Conformer (through DDP's forward), or the one output of another model."""
    raw = model.module if hasattr(model, "module") else model
    if hasattr(raw, "forward_heads"):
        return tuple(model(x, return_heads=True))
    return (model(x),)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def build_mixup(aug: AugConfig, num_classes: int):
    """timm's Mixup / CutMix with label smoothing, or None when both are off."""
    if aug.mixup <= 0 and aug.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=aug.mixup, cutmix_alpha=aug.cutmix, prob=aug.mixup_prob,
                 switch_prob=aug.mixup_switch_prob, mode=aug.mixup_mode, label_smoothing=aug.smoothing,
                 num_classes=num_classes)


def make_step_fn(cfg: ConformerConfig) -> Callable[[nn.Module, Any], tuple[torch.Tensor, Mapping[str, Any]]]:
    mixup = build_mixup(cfg.aug, cfg.model.num_classes)
    smoothing = cfg.aug.smoothing

    def step_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        x, y = batch
        if mixup is not None:
            if x.shape[0] % 2:
                raise ValueError(f"Mixup / CutMix need an even per-device batch, got {x.shape[0]}")
            x, target = mixup(x, y)
            outs = head_logits(model, x)
            losses = [soft_cross_entropy(o, target) for o in outs]
        else:
            outs = head_logits(model, x)
            losses = [F.cross_entropy(o.float(), y, label_smoothing=smoothing) for o in outs]
        loss = sum(losses) / len(losses)
        metrics = {f"loss_{name}": l.detach() for name, l in zip(("conv", "trans"), losses)} if len(losses) == 2 else {}
        return loss, metrics

    return step_fn


def eval_fn(model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
    """top-1 (%) of the summed logits, and of each head for a Conformer."""
    x, y = batch
    outs = head_logits(model, x)
    total = sum(o.float() for o in outs)
    top5 = total.topk(min(5, total.shape[-1]), dim=-1).indices
    m = {
        "acc1": (total.argmax(-1) == y).float().mean() * 100,
        "acc5": (top5 == y[:, None]).any(-1).float().mean() * 100,
    }
    if len(outs) == 2:
        m["acc1_conv"] = (outs[0].argmax(-1) == y).float().mean() * 100
        m["acc1_trans"] = (outs[1].argmax(-1) == y).float().mean() * 100
    return m


def build_model(cfg: ConformerConfig) -> nn.Module:
    """The registered model with the run's class count and drop path; weights from `init_checkpoint` if set."""
    from conformer.models import REGISTRY

    model = REGISTRY.build(cfg.model.name, num_classes=cfg.model.num_classes, drop_path_rate=cfg.model.drop_path_rate)
    if cfg.model.init_checkpoint:
        from vlcore.checkpoint import load_state_dict_strict

        from conformer.convert import load_state_dict_any

        sd = load_state_dict_any(cfg.model.init_checkpoint)
        own = model.state_dict()
        # Fine-tuning to another class count: keep our freshly initialised heads.
        for k in [k for k in sd if k.endswith(("cls_head.weight", "cls_head.bias")) and k in own
                  and sd[k].shape != own[k].shape]:
            sd[k] = own[k]
        load_state_dict_strict(model, sd, source=cfg.model.init_checkpoint)
    return model

