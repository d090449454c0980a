"""A small, fully observed language-model training loop for stability experiments.

The mini reproduction and the stability tests need every step's loss (to call a run
diverged), validation curves and update norms, from many short runs; this loop keeps
those and nothing else (no checkpoints, no processes). Full training runs go through
``vlcore.train.Trainer`` (``python -m magneto.train``).

Divergence (decided before any run): a non-finite training loss at any step (the run
stops there), or, after warmup, a training loss above the loss of the first step
("loss above its start").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.data.text import random_blocks
from vlcore.train.optim import lr_at


@dataclass(frozen=True)
class LMRunConfig:
    steps: int = 200
    batch_size: int = 16
    block_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 10
    schedule: str = "constant"
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_grad: float | None = None  # None: no clipping, so instability shows
    eval_every: int = 25
    eval_blocks: int = 64


@dataclass
class LMRunResult:
    train_loss: list[float] = field(default_factory=list)  # one per step done
    val_curve: list[list[float]] = field(default_factory=list)  # [[step, val loss], ...], step 0 included
    diverged: bool = False
    reason: str = ""
    steps_done: int = 0
    wall_s: float = 0.0

    @property
    def initial_val(self) -> float:
        return self.val_curve[0][1]

    @property
    def final_val(self) -> float:
        """Validation loss at the end; NaN when the run stopped on a non-finite loss."""
        return self.val_curve[-1][1] if self.val_curve else math.nan


def eval_blocks(ids: torch.Tensor, *, block_size: int, n_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_blocks`` evenly spaced (x, y) blocks of a split: the same fixed set for every run."""
    span = ids.numel() - block_size - 1
    if span < 0:
        raise ValueError(f"{ids.numel()} tokens cannot fill one block of {block_size} + 1")
    starts = torch.linspace(0, span, n_blocks).long()
    offs = torch.arange(block_size + 1)
    chunk = ids[starts[:, None] + offs]  # n, T + 1
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    was = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i : i + batch_size]).float()
            total += F.cross_entropy(logits.flatten(0, 1), y[i : i + batch_size].flatten(), reduction="sum").item()
            n += y[i : i + batch_size].numel()
    finally:
        model.train(was)
    return total / n


def train_lm(
    model: nn.Module,
    train_ids: torch.Tensor,
    val_ids: torch.Tensor,
    cfg: LMRunConfig,
    *,
    seed: int,
) -> LMRunResult:
    """Train ``model`` (ids (B, T) -> logits (B, T, V)) with Adam on random blocks of ``train_ids``.

    The batch order depends only on ``seed``, so variants trained with the same seed see
    the same batches.
    """
    t0 = time.time()
    gen = torch.Generator().manual_seed(10_007 + seed)
    vx, vy = eval_blocks(val_ids, block_size=cfg.block_size, n_blocks=cfg.eval_blocks)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
    )
    res = LMRunResult()
    res.val_curve.append([0, lm_loss(model, vx, vy)])
    model.train()
    for step in range(cfg.steps):
        lr = lr_at(step, lr=cfg.lr, total_steps=cfg.steps, warmup_steps=cfg.warmup_steps, schedule=cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = random_blocks(train_ids, block_size=cfg.block_size, batch_size=cfg.batch_size, generator=gen)
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        value = loss.item()
        res.train_loss.append(value)
        if not math.isfinite(value):
            res.diverged, res.reason = True, f"non-finite loss at step {step + 1}"
            res.val_curve.append([step + 1, math.nan])
            break
        if step >= cfg.warmup_steps and value > res.train_loss[0] and not res.diverged:
            res.diverged, res.reason = True, f"loss {value:.3f} above its start {res.train_loss[0]:.3f} at step {step + 1}"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        res.steps_done = step + 1
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            res.val_curve.append([step + 1, lm_loss(model, vx, vy)])
    res.wall_s = time.time() - t0
    return res
