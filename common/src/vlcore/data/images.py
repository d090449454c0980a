"""Image loading that fails loudly on broken files.

PIL's global `ImageFile.LOAD_TRUNCATED_IMAGES` (often switched on by other code to
"get past" bad files) pads a truncated image with grey and carries on; here it is
held off while a file is decoded, so truncation raises `CorruptImageError` naming
the file. EXIF orientation is deliberately not applied: COCO and ADE20K
annotations refer to the stored pixel layout.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from vlcore.data.paths import DataNotFoundError
from vlcore.errors import UserError

_TRUNCATION_LOCK = threading.Lock()

# Modes a semantic label map may be stored in (one value per pixel).
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")


class CorruptImageError(UserError, ValueError):
    """An image file cannot be decoded completely; the message names the file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"corrupt or unreadable image: {self.path} ({reason})")


def _open_and_load(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise CorruptImageError(path, "not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise CorruptImageError(path, f"{type(e).__name__}: {e}") from e
    try:
        im.load()  # decodes everything; PIL closes a file it opened itself once a single frame is loaded
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        im.close()
        raise CorruptImageError(path, f"{type(e).__name__}: {e}") from e
    return im


def _decode(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataNotFoundError(f"image file not found: {path}", path)
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        return _open_and_load(path)
    # Someone switched truncation padding on; hold it off for this file only.
    with _TRUNCATION_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            return _open_and_load(path)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def load_image(path: str | os.PathLike[str], *, mode: str = "RGB") -> Image.Image:
    """Decode the whole file and convert it to `mode` (RGB by default: greyscale, palette and RGBA become RGB)."""
    p = Path(path)
    im = _decode(p)
    if im.mode != mode:
        try:
            im = im.convert(mode)
        except (OSError, ValueError) as e:
            raise CorruptImageError(p, f"cannot convert mode {im.mode} to {mode}: {e}") from e
    return im


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """The image as a uint8 array # H, W, 3."""
    return np.asarray(load_image(path, mode="RGB"), dtype=np.uint8)


def load_label_map(path: str | os.PathLike[str]) -> np.ndarray:
    """A single-channel label PNG as an integer array # H, W (values kept as stored, palette indices for mode P)."""
    p = Path(path)
    im = _decode(p)
    if im.mode not in _LABEL_MODES:
        raise CorruptImageError(p, f"expected a single-channel label map, got mode {im.mode}")
    arr = np.asarray(im)
    return arr.astype(np.uint8) if arr.max(initial=0) < 256 else arr.astype(np.int32)


def to_tensor(image: Image.Image | np.ndarray, *, scale: bool = True) -> torch.Tensor:
    """HWC uint8 (PIL or numpy) -> CHW tensor; float32 in [0, 1] when `scale`, else uint8."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an H, W, C image, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # C, H, W
    return t.float().div_(255.0) if scale else t
