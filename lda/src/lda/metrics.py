"""Long-tailed classification metrics: overall and many / medium / few-shot top-1 accuracy.

Group accuracy is the fraction of correct predictions among the evaluation
samples whose class falls in the group (as the official `accuracy_shot`); on a
class-balanced test set this equals the mean of the per-class accuracies. A group
with no classes reports NaN rather than the official 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lda.data.longtail import ShotGroups, shot_groups


def shot_accuracy(pred: Sequence[int] | np.ndarray | torch.Tensor, target: Sequence[int] | np.ndarray | torch.Tensor,
                  groups: ShotGroups | Sequence[int]) -> dict[str, float]:
    """{'overall', 'many', 'medium', 'few'} top-1 in percent; `groups` may be the training class counts."""
    p = np.asarray(pred.cpu() if isinstance(pred, torch.Tensor) else pred).astype(np.int64)
    t = np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target).astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in shape: {p.shape} vs {t.shape}")
    if not isinstance(groups, ShotGroups):
        groups = shot_groups(groups)
    correct = p == t
    out = {"overall": 100.0 * float(correct.mean()) if correct.size else float("nan")}
    for name in ("many", "medium", "few"):
        mask = np.isin(t, np.asarray(getattr(groups, name), dtype=np.int64))
        out[name] = 100.0 * float(correct[mask].mean()) if mask.any() else float("nan")
    return out


def per_class_accuracy(pred, target, num_classes: int) -> np.ndarray:
    p = np.asarray(pred.cpu() if isinstance(pred, torch.Tensor) else pred)
    t = np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target)
    acc = np.full(num_classes, np.nan)
    for c in range(num_classes):
        m = t == c
        if m.any():
            acc[c] = 100.0 * float((p[m] == c).mean())
    return acc
