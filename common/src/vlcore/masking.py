"""Patch masking: BEiT blockwise masks, MAE per-sample random masking, plain random masks.

Every generator takes an explicit random source (``numpy.random.Generator`` or
``torch.Generator``) so that a seed reproduces the masks. In data-loader workers give
each worker its own seed (e.g. base seed + worker id), or all workers draw the same masks.
Masks are True where a patch is masked (hidden / replaced by the mask token).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class BlockwiseMaskGenerator:
    """BEiT blockwise masking on an H x W patch grid, exactly ``num_masking_patches`` masked.

    Repeatedly draws a rectangle of target area ~ U(min_num_patches, remaining budget)
    and aspect ratio log-uniform in [min_aspect, max_aspect] (default 1 / min_aspect),
    placed uniformly inside the grid; it is kept when it adds at least one new patch
    without exceeding the budget (10 tries per rectangle). When no rectangle fits any
    more, random single patches are masked (or unmasked) to hit the exact count, as the
    official BEiT v2 generator does.

    Args:
        input_size: grid (H, W) or side of a square grid.
        num_masking_patches: masked patches per mask (BEiT v2: 75 of 196).
        min_num_patches: smallest rectangle area (BEiT: 16).
        max_num_patches: largest rectangle area (default: ``num_masking_patches``).
        min_aspect, max_aspect: aspect-ratio range.
        seed: seed of the generator's own ``numpy.random.Generator``.
    """

    def __init__(
        self,
        *,
        input_size: int | tuple[int, int],
        num_masking_patches: int,
        min_num_patches: int = 16,
        max_num_patches: int | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.height, self.width = (input_size, input_size) if isinstance(input_size, int) else input_size
        if not 0 <= num_masking_patches <= self.height * self.width:
            raise ValueError(f"num_masking_patches={num_masking_patches} outside [0, {self.height * self.width}]")
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1.0 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"BlockwiseMaskGenerator({self.height}x{self.width}, masked={self.num_masking_patches}, "
            f"block area [{self.min_num_patches}, {self.max_num_patches}], log aspect {self.log_aspect_ratio})"
        )

    def _add_block(self, mask: np.ndarray, max_mask_patches: int, rng: np.random.Generator) -> int:
        for _ in range(10):
            # a + (b - a) * u also covers a budget below min_num_patches (Python random.uniform semantics)
            target_area = self.min_num_patches + (max_mask_patches - self.min_num_patches) * rng.random()
            aspect_ratio = math.exp(rng.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = int(rng.integers(0, self.height - h + 1))
                left = int(rng.integers(0, self.width - w + 1))
                window = mask[top : top + h, left : left + w]
                new = h * w - int(window.sum())
                if 0 < new <= max_mask_patches:
                    window[...] = True
                    return new
        return 0

    def __call__(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """One (H, W) bool mask; draws from ``rng`` if given, else from the generator's own."""
        rng = self.rng if rng is None else rng
        mask = np.zeros((self.height, self.width), dtype=bool)
        count = 0
        while count < self.num_masking_patches:
            budget = min(self.num_masking_patches - count, self.max_num_patches)
            delta = self._add_block(mask, budget, rng)
            if delta == 0:
                break
            count += delta
        if count < self.num_masking_patches:
            free = np.flatnonzero(~mask)
            mask.flat[rng.choice(free, self.num_masking_patches - count, replace=False)] = True
        elif count > self.num_masking_patches:  # cannot happen with the budget check; kept as a guard
            taken = np.flatnonzero(mask)
            mask.flat[rng.choice(taken, count - self.num_masking_patches, replace=False)] = False
        return mask

    def batch(self, batch_size: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        """(B, H*W) bool tensor of independent masks."""
        return torch.from_numpy(np.stack([self(rng).reshape(-1) for _ in range(batch_size)]))


class RandomMasking(NamedTuple):
    x_kept: torch.Tensor  # B, L_keep, D: visible tokens, in shuffled order
    mask: torch.Tensor  # B, L bool, True = removed, in the original order
    ids_restore: torch.Tensor  # B, L: gather index that undoes the shuffle
    ids_keep: torch.Tensor  # B, L_keep: original positions of the kept tokens


def random_masking(
    x: torch.Tensor, mask_ratio: float, *, generator: torch.Generator | None = None
) -> RandomMasking:
    """MAE per-sample random masking: keep ``int(L * (1 - mask_ratio))`` tokens per sample.

    x: (B, L, D). The kept tokens are the ones with the smallest uniform noise; to put
    decoder tokens back in order, append mask tokens to the kept ones and gather with
    ``ids_restore``.
    """
    B, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    noise = torch.rand(B, L, device=x.device, generator=generator)  # B, L
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, D))  # B, L_keep, D
    mask = torch.ones(B, L, dtype=torch.bool, device=x.device)
    mask[:, :len_keep] = False
    mask = torch.gather(mask, 1, ids_restore)
    return RandomMasking(x_kept, mask, ids_restore, ids_keep)


def random_patch_mask(
    batch_size: int,
    num_patches: int,
    num_masked: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B, N) bool mask with exactly ``num_masked`` uniformly chosen patches per row."""
    if not 0 <= num_masked <= num_patches:
        raise ValueError(f"num_masked={num_masked} outside [0, {num_patches}]")
    noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    ranks = noise.argsort(dim=1).argsort(dim=1)  # B, N: rank of each patch's noise
    return ranks < num_masked
