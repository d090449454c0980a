"""Datasets of the G2SD stages: the shared CIFAR-10 subset (mini reproduction, tests) and
ImageNet-style image folders (paper scale).

CIFAR-10 images are held as one normalised float tensor; their augmentation (random crop
after zero padding, horizontal flip) is done per batch by :func:`pad_crop_flip`, which
keeps a CPU epoch of 5,000 images cheap. Image folders use the recipes' torchvision / timm
transforms per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from vlcore.data.paths import require_dir

from g2sd.config import DataConfig, G2SDConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TensorImages(Dataset):
    """(image # 3, H, W float, label) pairs from in-memory tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def _cifar(split: str, cfg: DataConfig) -> TensorImages:
    from vlcore.data.cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar10

    x, y = load_cifar10(split, root=cfg.root)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return TensorImages((x.float() / 255.0 - mean) / std, y)


def _subset(ds: Dataset, n: int, seed: int) -> Dataset:
    if n <= 0 or n >= len(ds):
        return ds
    idx = np.random.default_rng(seed).permutation(len(ds))[:n]
    return Subset(ds, np.sort(idx).tolist())


def build_train_set(cfg: G2SDConfig) -> Dataset:
    d = cfg.data
    if d.dataset == "cifar10":
        return _subset(_cifar("train", d), d.train_subset, d.seed)
    return _subset(_image_folder("train", cfg), d.train_subset, d.seed)


def build_eval_set(cfg: G2SDConfig) -> Dataset:
    d = cfg.data
    if d.dataset == "cifar10":
        ds = _cifar("test", d)
    else:
        ds = _image_folder("val", cfg)
    # The test split is stored class by class: a subset is a fixed random choice, not the first rows.
    return _subset(ds, d.eval_subset, 0)


def _image_folder(split: str, cfg: G2SDConfig) -> Dataset:
    from torchvision import datasets, transforms

    if cfg.data.root is None:
        raise ValueError("data.root must name a folder with train/ and val/ for data.dataset=imagefolder")
    from pathlib import Path

    folder = require_dir(Path(cfg.data.root) / split, f"an ImageNet-style {split}/ folder of class sub-folders")
    size = cfg.model.img_size
    bicubic = transforms.InterpolationMode.BICUBIC
    norm = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if split != "train":
        tf = transforms.Compose([transforms.Resize(int(size * 256 / 224), interpolation=bicubic),
                                 transforms.CenterCrop(size), transforms.ToTensor(), norm])
    elif cfg.stage in ("mae_pretrain", "gd"):
        tf = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=(cfg.data.crop_scale_min, 1.0), interpolation=bicubic),
            transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
    else:
        from timm.data import create_transform

        tf = create_transform(input_size=size, is_training=True, auto_augment=cfg.data.auto_augment,
                              interpolation="bicubic", re_prob=cfg.data.reprob, re_mode="pixel", re_count=1,
                              mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return datasets.ImageFolder(str(folder), transform=tf)


def pad_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch (B, C, H, W) back to H x W, then random flips."""
    B, C, H, W = x.shape
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None].expand(B, C, H, W + 2 * pad)
        xp = torch.gather(xp, 2, rows)  # B, C, H, W + 2 pad
        cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :].expand(B, C, H, W)
        x = torch.gather(xp, 3, cols)  # B, C, H, W
    flip = torch.rand(B, generator=generator).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)
