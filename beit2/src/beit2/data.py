"""Datasets and transforms of the BEiT v2 recipes.

* ImageNet in the usual folder layout (``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*``)
  through torchvision's ``ImageFolder``; the CIFAR-10 subset of the shared data folder for
  small runs; images are decoded with checks (``vlcore.data.images``).
* Pretraining view pair (:class:`MIMTransform`): colour jitter 0.4, flip, *one*
  RandomResizedCrop box (scale 0.2-1) resized twice: 224 bicubic for the ViT (ImageNet
  mean / std) and 224 bicubic for the tokenizer (``[0, 1]``, no normalisation: the
  tokenizer rescales itself), plus a blockwise mask of 75 of 196 patches.
* Fine-tuning / evaluation transforms: timm's ``create_transform`` (RandAugment
  ``rand-m9-mstd0.5-inc1``, random erasing 0.25, bicubic; eval resize 224 / 0.875 + centre crop).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from vlcore.data import DataNotFoundError
from vlcore.data.images import load_image
from vlcore.masking import BlockwiseMaskGenerator

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataset",
    "MIMTransform",
    "PretrainDataset",
    "TensorImageDataset",
    "classification_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERP = {"bicubic": InterpolationMode.BICUBIC, "lanczos": InterpolationMode.LANCZOS,
           "bilinear": InterpolationMode.BILINEAR}
_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG")


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` -> (transformed image, class index); classes sorted by folder name.

    Corrupt images raise an error naming the file; ``limit`` keeps the first N files
    (sorted by path) for a fixed evaluation subset.
    """

    def __init__(self, root: str | os.PathLike, *, transform: Callable | None = None, limit: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError("image folder not found (expected root/<class>/<image>)", self.root)
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not self.classes:
            raise DataNotFoundError("no class folders in the image folder", self.root)
        self.samples = [
            (p, i) for i, c in enumerate(self.classes) for p in sorted((self.root / c).iterdir()) if p.suffix in _IMG_EXT
        ]
        if not self.samples:
            raise DataNotFoundError("no images in the class folders", self.root)
        if limit is not None:
            self.samples = sorted(self.samples)[:limit]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        img = load_image(path)
        return (self.transform(img) if self.transform else img), label


class TensorImageDataset(Dataset):
    """In-memory uint8 images (N, 3, H, W) and labels; items are PIL images, through ``transform`` if given."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, transform: Callable | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i].permute(1, 2, 0).numpy())
        return (self.transform(img) if self.transform else img), int(self.labels[i])


class MIMTransform:
    """One image -> (ViT view normalised, tokenizer view in [0, 1], mask (N,) bool).

    ``seed`` gives the mask generator a stream of its own (reproducible standalone use); training
    leaves it unset so that masks come from torch's global RNG, which checkpoints restore.
    """

    def __init__(
        self,
        *,
        input_size: int = 224,
        second_input_size: int = 224,
        patch_size: int = 16,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        color_jitter: float = 0.4,
        interpolation: Literal["bicubic", "bilinear", "lanczos"] = "bicubic",
        second_interpolation: Literal["bicubic", "bilinear", "lanczos"] = "bicubic",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        num_masking_patches: int = 75,
        min_mask_patches_per_block: int = 16,
        seed: int | None = None,
    ) -> None:
        self.common = T.Compose([T.ColorJitter(color_jitter, color_jitter, color_jitter) if color_jitter > 0
                                 else T.Lambda(lambda x: x), T.RandomHorizontalFlip(0.5)])
        self.crop = T.RandomResizedCrop(input_size, scale=crop_scale)
        self.sizes = (input_size, second_input_size)
        self.interp = (_INTERP[interpolation], _INTERP[second_interpolation])
        self.normalize = T.Normalize(mean, std)
        grid = input_size // patch_size
        self.masker = BlockwiseMaskGenerator(input_size=grid, num_masking_patches=num_masking_patches,
                                             min_num_patches=min_mask_patches_per_block, seed=seed)
        self.seeded = seed is not None

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img = self.common(img)
        top, left, h, w = self.crop.get_params(img, self.crop.scale, self.crop.ratio)  # one box, two resizes
        view = TF.resized_crop(img, top, left, h, w, [self.sizes[0]] * 2, self.interp[0])
        tok = TF.resized_crop(img, top, left, h, w, [self.sizes[1]] * 2, self.interp[1])
        # Without a seed the mask is drawn from torch's global RNG, like the crop and flip above: training
        # checkpoints save that state (and loader workers seed it), so a resumed run draws the same masks.
        rng = None if self.seeded else np.random.default_rng(int(torch.randint(0, 2**62, ())))
        mask = torch.from_numpy(self.masker(rng).reshape(-1))
        return self.normalize(TF.to_tensor(view)), TF.to_tensor(tok), mask


class PretrainDataset(Dataset):
    """Unlabelled images through :class:`MIMTransform` (any dataset yielding (PIL image, label))."""

    def __init__(self, base: Dataset, transform: MIMTransform) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, _ = self.base[i]
        return self.transform(img)


def classification_transform(
    *,
    train: bool,
    input_size: int = 224,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    reprob: float = 0.25,
    crop_pct: float = 0.875,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
) -> Callable:
    """The fine-tuning (train) or evaluation transform of the BEiT v2 recipe, via timm."""
    from timm.data import create_transform

    if train:
        return create_transform(input_size, is_training=True, auto_augment=auto_augment, re_prob=reprob,
                                re_mode="pixel", re_count=1, interpolation="bicubic", mean=mean, std=std,
                                scale=scale)
    return create_transform(input_size, is_training=False, interpolation="bicubic", crop_pct=crop_pct,
                            mean=mean, std=std)
