"""A generated 10-class image set, the stand-in for CIFAR-10 when the shared data is absent.

Class c draws shape c % 5 (disc, square, triangle, cross, ring) in palette c // 5
(warm / cool hues) at a random position and size on a noisy random background,
32 x 32 RGB uint8. Seeded, so every run sees the same images.
"""

from __future__ import annotations

import numpy as np


def _shape_mask(kind: int, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if kind == 0:
        return dy * dy + dx * dx <= r * r
    if kind == 1:
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if kind == 2:
        return (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if kind == 3:
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    d = np.sqrt(dy * dy + dx * dx)
    return (d <= r) & (d >= r * 0.55)


def generate_shapes(n_per_class: int, *, seed: int = 0, size: int = 32, num_classes: int = 10):
    """(images uint8 N x size x size x 3, labels int64 N), classes in blocks of n_per_class."""
    rng = np.random.default_rng(seed)
    images = np.empty((num_classes * n_per_class, size, size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(num_classes), n_per_class).astype(np.int64)
    for i, c in enumerate(labels):
        bg = rng.uniform(0, 120, size=3)
        img = bg + rng.normal(0, 25, size=(size, size, 3))
        hue = rng.uniform(0.0, 0.35) + (0.5 if c // 5 else 0.0)
        colour = 255 * np.clip(np.abs(np.array([hue * 6 - 3, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)])), 0, 1)
        r = rng.uniform(6, 12)
        mask = _shape_mask(int(c % 5), size, rng.uniform(r, size - r), rng.uniform(r, size - r), r)
        img[mask] = colour + rng.normal(0, 20, size=(int(mask.sum()), 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels
