"""Class counts and the many / medium / few shot groups of long-tailed evaluation.

The groups are defined on the *training* counts of each class (OLTR's protocol,
used by LDA's `main/train.py` and `main/valid.py`, which copy the training
split's grouping onto the evaluation split): many-shot > 100 training images,
few-shot < 20, medium-shot in between (20..100 inclusive).

The long-tailed subsampler itself (floor(n_max * IF^(-i/(C-1))) images for
class i, the LDAM / CIFAR-LT construction) is `vlcore.data.cifar.long_tail_counts`
/ `long_tail_indices`; they work on any label array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MANY_THRESHOLD = 100  # many-shot: more than this many training images
FEW_THRESHOLD = 20  # few-shot: fewer than this many


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    lab = np.asarray(labels, dtype=np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{lab.min()}, {lab.max()}]")
    return np.bincount(lab, minlength=num_classes).tolist()


@dataclass(frozen=True)
class ShotGroups:
    many: tuple[int, ...]
    medium: tuple[int, ...]
    few: tuple[int, ...]

    def of(self, cls: int) -> str:
        return "many" if cls in self.many else "medium" if cls in self.medium else "few"

    def as_array(self, num_classes: int) -> np.ndarray:
        """Per-class group id: 0 few, 1 medium, 2 many (the official `class_cate_index`)."""
        a = np.zeros(num_classes, dtype=np.int64)
        a[list(self.medium)] = 1
        a[list(self.many)] = 2
        return a


def shot_groups(train_counts: Sequence[int], many: int = MANY_THRESHOLD, few: int = FEW_THRESHOLD) -> ShotGroups:
    n = np.asarray(train_counts)
    return ShotGroups(
        many=tuple(int(i) for i in np.flatnonzero(n > many)),
        medium=tuple(int(i) for i in np.flatnonzero((n >= few) & (n <= many))),
        few=tuple(int(i) for i in np.flatnonzero(n < few)),
    )
