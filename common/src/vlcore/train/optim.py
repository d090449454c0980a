"""Parameter groups with layer-wise lr decay, and the per-step lr schedule.

Layer-wise lr decay (BEiT, MAE fine-tuning): with L transformer blocks, the
embeddings are layer 0, block i is layer i + 1 and everything after the blocks
(final norm, head) is layer L + 1. Layer `l` trains with
`lr * layer_decay ** (L + 1 - l)`, so the head keeps the full lr and the patch
embedding the most decayed one. Biases, norm weights (every 1-D parameter),
position embeddings and class / mask tokens get no weight decay.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterable, Literal

from torch import nn

# Parameter names (or their last component) that never get weight decay.
NO_WEIGHT_DECAY = ("pos_embed", "cls_token", "mask_token", "dist_token", "reg_token", "absolute_pos_embed",
                   "relative_position_bias_table")
_EMBED_PREFIXES = ("cls_token", "mask_token", "dist_token", "reg_token", "pos_embed", "absolute_pos_embed",
                   "patch_embed")  # before the first block; a shared rel_pos_bias counts as top, as in BEiT
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def vit_layer_id(name: str, num_layers: int) -> int:
    """Layer id of a parameter of a timm-style ViT: embeddings 0, `blocks.{i}` i + 1, the rest L + 1."""
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1)) + 1
    top = name.split(".")[0]
    if top in _EMBED_PREFIXES or name.startswith(_EMBED_PREFIXES):
        return 0
    return num_layers + 1


def _count_blocks(model: nn.Module) -> int:
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        return len(blocks)
    ids = [int(m.group(1)) for n, _ in model.named_parameters() if (m := _BLOCK.search(n))]
    return max(ids) + 1 if ids else 0


def _skip_weight_decay(name: str, param: nn.Parameter, skip: set[str]) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or name in skip or name.split(".")[-1] in skip


def param_groups_lrd(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float = 1.0,
    *,
    no_weight_decay: Iterable[str] = (),
    layer_id_fn: Callable[[str, int], int] | None = None,
    num_layers: int | None = None,
) -> list[dict]:
    """Optimizer param groups: one per (layer id, decay / no decay), each with an `lr_scale`.

    `layer_id_fn(name, num_layers) -> id in [0, num_layers + 1]` maps a parameter name to
    its layer (default `vit_layer_id`); `num_layers` defaults to `len(model.blocks)`.
    `no_weight_decay` adds names to the defaults and to `model.no_weight_decay()` if the
    model defines it. The trainer sets `group["lr"] = lr * group["lr_scale"]` every step.
    """
    layer_id_fn = layer_id_fn or vit_layer_id
    num_layers = _count_blocks(model) if num_layers is None else num_layers
    skip = set(NO_WEIGHT_DECAY) | set(no_weight_decay)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = layer_id_fn(name, num_layers)
        if not 0 <= layer <= num_layers + 1:
            raise ValueError(f"layer_id_fn gave layer {layer} for '{name}'; expected 0..{num_layers + 1}")
        decay = not _skip_weight_decay(name, p, skip)
        g = groups.setdefault((layer, decay), {
            "params": [], "param_names": [], "layer_id": layer,
            "weight_decay": weight_decay if decay else 0.0,
            "lr_scale": layer_decay ** (num_layers + 1 - layer),
        })
        g["params"].append(p)
        g["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def lr_at(
    step: int,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    schedule: Literal["cosine", "linear", "constant"] = "cosine",
) -> float:
    """The lr of update `step` (0-based): linear warmup to `lr`, then decay to `min_lr` at `total_steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return lr + (min_lr - lr) * progress
    raise ValueError(f"unknown lr schedule '{schedule}' (cosine, linear, constant)")
