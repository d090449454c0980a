"""Datasets of the classification runs: ImageNet (ImageFolder, DeiT transforms) and the shared CIFAR-10 subset."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from vlcore.data import DataNotFoundError

from conformer.config import AugConfig, DataConfig


class CifarTensors(Dataset):
    """uint8 CIFAR images -> normalised float tensors; training adds random crops (zero padding) and flips.

    Augmentations draw from torch's global RNG in `__getitem__`, which the trainer seeds
    per rank and restores on resume (with `num_workers=0`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, train: bool, img_size: int = 32,
                 pad: int = 4, flip: bool = True) -> None:
        from vlcore.data import CIFAR10_MEAN, CIFAR10_STD

        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels.long()
        self.train, self.pad, self.flip, self.img_size = train, pad, flip, img_size
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].float().div_(255)  # 3, 32, 32
        if self.train:
            if self.pad:
                x = torch.nn.functional.pad(x, (self.pad,) * 4)
                dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
                x = x[:, dy:dy + 32, dx:dx + 32]
            if self.flip and torch.rand(()) < 0.5:
                x = x.flip(-1)
        x = (x - self.mean) / self.std
        if self.img_size != x.shape[-1]:
            x = torch.nn.functional.interpolate(x[None], size=(self.img_size, self.img_size), mode="bicubic",
                                                align_corners=False)[0]
        return x, self.labels[i]


def cifar10_sets(data: DataConfig, aug: AugConfig) -> tuple[Dataset, Dataset, str]:
    """(train, test, description) from ../shared/data/cifar10 (or `data.root`)."""
    from vlcore.data import balanced_subset_indices, load_cifar10

    root = data.root or None
    xtr, ytr = load_cifar10("train", root=root)
    xte, yte = load_cifar10("test", root=root)
    # The file is sorted by class: a limit keeps the same number of images of every class (fixed choice).
    if data.train_limit:
        keep = torch.from_numpy(balanced_subset_indices(ytr, per_class=max(1, data.train_limit // 10), seed=0))
        xtr, ytr = xtr[keep], ytr[keep]
    if data.eval_limit:
        keep = torch.from_numpy(balanced_subset_indices(yte, per_class=max(1, data.eval_limit // 10), seed=0))
        xte, yte = xte[keep], yte[keep]
    train = CifarTensors(xtr, ytr, train=True, img_size=data.img_size, pad=aug.cifar_pad, flip=aug.cifar_flip)
    test = CifarTensors(xte, yte, train=False, img_size=data.img_size)
    return train, test, f"real: CIFAR-10 subset ({len(train)} train / {len(test)} test images)"


def imagenet_sets(data: DataConfig, aug: AugConfig) -> tuple[Dataset, Dataset, str]:
    """ImageFolder train / val with the DeiT transforms of the official recipe."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    if not data.root:
        raise DataNotFoundError("data.root must name the ImageNet folder holding train/ and val/", "")
    root = Path(data.root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataNotFoundError(
                f"{root / split}: not found (expected the ImageFolder layout root/{split}/<class>/)", root / split)
    t_train = create_transform(
        input_size=data.img_size, is_training=True, color_jitter=aug.color_jitter, auto_augment=aug.auto_augment,
        interpolation=data.interpolation, re_prob=aug.reprob, re_mode=aug.remode, re_count=1,
    )
    t_eval = create_transform(input_size=data.img_size, is_training=False, interpolation=data.interpolation,
                              crop_pct=data.crop_pct)
    train, val = ImageFolder(str(root / "train"), t_train), ImageFolder(str(root / "val"), t_eval)
    if data.train_limit:
        train = torch.utils.data.Subset(train, range(min(data.train_limit, len(train))))
    if data.eval_limit:
        val = torch.utils.data.Subset(val, range(min(data.eval_limit, len(val))))
    return train, val, f"real: ImageNet folder {root} ({len(train)} train / {len(val)} val images)"


def build_sets(data: DataConfig, aug: AugConfig) -> tuple[Dataset, Dataset, str]:
    if data.dataset == "cifar10":
        return cifar10_sets(data, aug)
    return imagenet_sets(data, aug)
