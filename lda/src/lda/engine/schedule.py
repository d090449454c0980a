"""The official per-epoch learning-rate schedules (`lib/utils/lr_scheduler.py`), in closed form.

The official scheduler is stepped after every epoch, so epoch e (0-based) trains
with the value at `last_epoch = e`:
- warm-up (e < W): lr * (f (1 - e/W) + e/W), f = 1/3;
- `warmup_cosine`: lr at e = W, then the recursive cosine
  lr_e = eta + (lr_{e-1} - eta) (1 + cos(pi e/T)) / (1 + cos(pi (e-1)/T)), which telescopes to
  eta + (lr - eta) (1 + cos(pi e/T)) / (1 + cos(pi W/T));
- `warmup_multistep`: lr * warm-up * factor^(number of milestones <= e).
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence


def epoch_lr(epoch: int, *, lr: float, epochs: int, schedule: str = "warmup_cosine", warmup_epochs: int = 5,
             warmup_factor: float = 1.0 / 3.0, min_lr: float = 1e-4, milestones: Sequence[int] = (160, 180),
             lr_factor: float = 0.01) -> float:
    warm = 1.0
    if epoch < warmup_epochs:
        a = epoch / warmup_epochs
        warm = warmup_factor * (1.0 - a) + a
    if schedule == "warmup_multistep":
        return lr * warm * lr_factor ** bisect.bisect_right(list(milestones), epoch)
    if schedule != "warmup_cosine":
        raise ValueError(f"unknown schedule '{schedule}' (warmup_cosine, warmup_multistep)")
    if epoch < warmup_epochs:
        return lr * warm
    t, w = math.pi / epochs, warmup_epochs
    return min_lr + (lr - min_lr) * (1.0 + math.cos(t * epoch)) / (1.0 + math.cos(t * w))
