"""CIFAR-10 subset from the shared data folder, plus long-tailed and balanced subsets.

The subset is `cifar10/cifar10_subset.npz`: x_{train,test} uint8 (N, 32, 32, 3),
y_{train,test} uint8, files_{train,test}, classes (500 / 100 images per class).
The long-tailed profile is the usual exponential one (LDAM, LDA's long-tailed
CIFAR): class i keeps floor(n_max * IF^(-i / (C - 1))) images, head class first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vlcore.data.paths import DataFormatError, dataset_dir, require_dir, require_file

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_FOLDER = "cifar10"
CIFAR10_FILE = "cifar10_subset.npz"
# Per-channel statistics of the full CIFAR-10 training set, as commonly used for normalisation.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class CifarArrays:
    images: np.ndarray  # N, 32, 32, 3 uint8 RGB
    labels: np.ndarray  # N int64 in [0, len(classes))
    classes: tuple[str, ...]
    files: tuple[str, ...]  # source file per row (empty when unknown)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> "CifarArrays":
        idx = np.asarray(indices, dtype=np.int64)
        files = tuple(self.files[i] for i in idx) if self.files else ()
        return CifarArrays(self.images[idx], self.labels[idx], self.classes, files)


def check_labels(labels: np.ndarray, *, num_classes: int, source: str) -> np.ndarray:
    """int64 labels, or DataFormatError naming `source` when a label falls outside [0, num_classes)."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise DataFormatError(f"{source}: labels must be a 1-D integer array, got {lab.dtype} {lab.shape}")
    bad = np.flatnonzero((lab < 0) | (lab >= num_classes))
    if bad.size:
        raise DataFormatError(
            f"{source}: {bad.size} label(s) outside [0, {num_classes}), first at row {bad[0]} = {lab[bad[0]]}"
        )
    return lab.astype(np.int64)


def cifar10_path(*, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of the npz, checked: folder and file must exist."""
    folder = require_dir(dataset_dir(CIFAR10_FOLDER, root=root), f"the CIFAR-10 subset {CIFAR10_FILE}")
    return require_file(folder / CIFAR10_FILE, "the CIFAR-10 subset")


def load_cifar10_arrays(split: str = "train", *, root: str | os.PathLike[str] | None = None) -> CifarArrays:
    """The `train` or `test` split as numpy arrays (no pickle: the npz holds plain arrays)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = cifar10_path(root=root)
    with np.load(path, allow_pickle=False) as z:
        need = [f"x_{split}", f"y_{split}"]
        missing = [k for k in need if k not in z.files]
        if missing:
            raise DataFormatError(f"{path}: missing arrays {missing} (has {sorted(z.files)})")
        images = z[f"x_{split}"]
        classes = tuple(str(c) for c in z["classes"]) if "classes" in z.files else CIFAR10_CLASSES
        files = tuple(str(f) for f in z[f"files_{split}"]) if f"files_{split}" in z.files else ()
        raw_labels = z[f"y_{split}"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataFormatError(f"{path}: x_{split} must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    labels = check_labels(raw_labels, num_classes=len(classes), source=f"{path} y_{split}")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels in split {split}")
    return CifarArrays(images, labels, classes, files)


def load_cifar10(
    split: str = "train", *, root: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 # N, 3, 32, 32, labels int64 # N)."""
    a = load_cifar10_arrays(split, root=root)
    return torch.from_numpy(np.ascontiguousarray(a.images.transpose(0, 3, 1, 2))), torch.from_numpy(a.labels)


def long_tail_counts(*, n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Images kept per class: floor(n_max * IF^(-i / (C - 1))); class 0 keeps n_max, the last n_max / IF."""
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    if num_classes < 1 or n_max < 1:
        raise ValueError(f"need num_classes >= 1 and n_max >= 1, got {num_classes}, {n_max}")
    if num_classes == 1:
        return [n_max]
    # The small epsilon keeps exact products (500 * 0.01 = 5) from flooring to one less.
    return [
        max(1, math.floor(n_max * imbalance_factor ** (-i / (num_classes - 1)) + 1e-9)) for i in range(num_classes)
    ]


def long_tail_indices(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    imbalance_factor: float,
    num_classes: int | None = None,
    n_max: int | None = None,
    class_order: Sequence[int] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted row indices of a long-tailed subset of a (roughly) balanced label array.

    `class_order[k]` is the class given the k-th largest count (default: 0, 1, 2, ...).
    `n_max` defaults to the smallest class size, so every class can supply its count.
    Which images a class keeps is a seeded random choice, the same for the same seed.
    """
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    c = int(num_classes if num_classes is not None else lab.max() + 1)
    lab = check_labels(lab, num_classes=c, source="long_tail_indices")
    per_class = [np.flatnonzero(lab == k) for k in range(c)]
    available = min(len(p) for p in per_class)
    n_max = int(n_max if n_max is not None else available)
    order = list(class_order) if class_order is not None else list(range(c))
    if sorted(order) != list(range(c)):
        raise ValueError(f"class_order must be a permutation of 0..{c - 1}, got {order}")
    counts = long_tail_counts(n_max=n_max, num_classes=c, imbalance_factor=imbalance_factor)
    rng = np.random.default_rng(seed)
    keep = []
    for rank, k in enumerate(order):
        if counts[rank] > len(per_class[k]):
            raise ValueError(f"class {k} has {len(per_class[k])} samples, the profile asks for {counts[rank]}")
        keep.append(rng.permutation(per_class[k])[: counts[rank]])
    return np.sort(np.concatenate(keep))


def balanced_subset_indices(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    per_class: int,
    num_classes: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted row indices with exactly `per_class` rows of each class (seeded choice)."""
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    c = int(num_classes if num_classes is not None else lab.max() + 1)
    lab = check_labels(lab, num_classes=c, source="balanced_subset_indices")
    rng = np.random.default_rng(seed)
    keep = []
    for k in range(c):
        rows = np.flatnonzero(lab == k)
        if len(rows) < per_class:
            raise ValueError(f"class {k} has {len(rows)} samples, fewer than per_class={per_class}")
        keep.append(rng.permutation(rows)[:per_class])
    return np.sort(np.concatenate(keep))


class CIFAR10Subset(Dataset):
    """(image, label) pairs; the image is float32 # 3, 32, 32 in [0, 1] unless `transform` is given.

    `transform` receives the uint8 tensor # 3, 32, 32 (torchvision v2 transforms accept it).
    `indices` restricts the split, e.g. to `long_tail_indices(...)`.
    """

    def __init__(
        self,
        *,
        split: str = "train",
        root: str | os.PathLike[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        arrays: CifarArrays | None = None,
    ) -> None:
        a = arrays if arrays is not None else load_cifar10_arrays(split, root=root)
        if indices is not None:
            a = a.subset(indices)
        self.arrays = a
        self.classes = a.classes
        self.transform = transform
        self.images = torch.from_numpy(np.ascontiguousarray(a.images.transpose(0, 3, 1, 2)))  # N, 3, 32, 32
        self.targets = torch.from_numpy(a.labels)  # N

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def class_counts(self) -> list[int]:
        return torch.bincount(self.targets, minlength=len(self.classes)).tolist()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        img = self.transform(img) if self.transform is not None else img.float().div(255.0)
        return img, int(self.targets[i])
