"""CIFAR-10-LT from the shared real CIFAR-10 subset, held in memory as uint8 tensors.

Training images are augmented on the fly with the official CIFAR recipe
(random 32x32 crop of the 4-pixel zero-padded image, horizontal flip), done on
whole batches of tensors, then normalised with the official constants. The
long-tailed subset is `vlcore.data.cifar.long_tail_indices` (floor(n_max *
IF^(-i/9)) images for class i); the test set stays balanced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlcore.data.cifar import load_cifar10_arrays, long_tail_counts, long_tail_indices

# Normalisation of the official CIFAR datasets (`lib/dataset/imbalance_cifar.py`).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)


@dataclass
class TensorSplit:
    images: Tensor  # N, 3, 32, 32 uint8
    labels: Tensor  # N int64
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def _to_tensor_split(arrays, num_classes: int) -> TensorSplit:
    x = torch.from_numpy(np.ascontiguousarray(arrays.images.transpose(0, 3, 1, 2)))
    return TensorSplit(x, torch.from_numpy(arrays.labels).long(), num_classes)


def cifar10_lt(*, imbalance_factor: float = 100.0, root: str | os.PathLike | None = None, n_max: int | None = None,
               subsample_seed: int = 0) -> tuple[TensorSplit, TensorSplit]:
    """(long-tailed train split, balanced test split) of the shared CIFAR-10 subset."""
    train, test = load_cifar10_arrays("train", root=root), load_cifar10_arrays("test", root=root)
    c = len(train.classes)
    idx = long_tail_indices(train.labels, imbalance_factor=imbalance_factor, num_classes=c, n_max=n_max,
                            seed=subsample_seed)
    return _to_tensor_split(train.subset(idx), c), _to_tensor_split(test, c)


def generated_lt(*, imbalance_factor: float = 100.0, n_max: int | None = None,
                 subsample_seed: int = 0) -> tuple[TensorSplit, TensorSplit]:
    """The same construction on the generated shapes set (500 / 100 images per class before subsampling)."""
    from lda.data.synthetic import generate_shapes

    xtr, ytr = generate_shapes(500, seed=1)
    xte, yte = generate_shapes(100, seed=2)
    idx = long_tail_indices(ytr, imbalance_factor=imbalance_factor, num_classes=10, n_max=n_max, seed=subsample_seed)
    to = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa: E731
    return (TensorSplit(to(xtr[idx]), torch.from_numpy(ytr[idx]), 10), TensorSplit(to(xte), torch.from_numpy(yte), 10))


def expected_counts(imbalance_factor: float, n_max: int = 500, num_classes: int = 10) -> list[int]:
    return long_tail_counts(n_max=n_max, num_classes=num_classes, imbalance_factor=imbalance_factor)


def normalise(x: Tensor) -> Tensor:
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float().div_(255.0) - mean) / std


def augment(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop of the zero-padded image plus horizontal flip, per sample; uint8 in, uint8 out."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # B, 3, H + 2p, W + 2p
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # B, H
    cols = (dx[:, None] + torch.arange(w)[None, :])  # B, W
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # B, H, W, 3
    return out.permute(0, 3, 1, 2).contiguous()


class TensorBatches:
    """Epochs of shuffled, augmented, normalised batches from an in-memory split (last partial batch dropped)."""

    def __init__(self, split: TensorSplit, batch_size: int, *, train: bool, seed: int = 0, drop_last: bool = True):
        self.split, self.batch_size, self.train, self.drop_last = split, batch_size, train, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def steps_per_epoch(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self):
        n = len(self.split)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        for s in range(self.steps_per_epoch()):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            x = self.split.images[idx]
            if self.train:
                x = augment(x, self.generator)
            yield normalise(x), self.split.labels[idx]
