"""Readers for the published long-tailed split files.

- ImageNet-LT (Liu et al. 2019, OLTR) and Places-LT: text files, one
  `<relative path> <label>` per line, e.g. `train/n01440764/n01440764_10026.JPEG 0`
  (`ImageNet_LT_{train,val,test}.txt`: 115,846 / 20,000 / 50,000 lines, 1000
  classes; `Places_LT_{train,val,test}.txt`: 62,500 / 7,300 / 36,500, 365 classes).
- iNaturalist 2018: the official JSON (`train2018.json` / `val2018.json`: COCO-like
  `images`, `annotations` with `category_id`, `categories`), or the same kind of
  text list (`iNaturalist18_train.txt`) used by OLTR-style code bases.

Errors name the file and line. `SplitImageDataset` reads the images with their
usual folder layouts; for Places-LT the official code maps `train/<cls>/<file>` to
the `data_large` tree `train/<c>/<cls>/<file>` (`layout="places365_large"`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from torch.utils.data import Dataset

from lda.data.longtail import class_counts
from vlcore.data.paths import DataFormatError, require_file

# Number of classes of each benchmark, checked when a split says which one it is.
NUM_CLASSES = {"imagenet_lt": 1000, "places_lt": 365, "inaturalist2018": 8142}


@dataclass(frozen=True)
class LTSplit:
    paths: tuple[str, ...]
    labels: np.ndarray  # N int64
    num_classes: int
    source: str

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        return class_counts(self.labels, self.num_classes)


def read_split_txt(path: str | os.PathLike, num_classes: int | None = None) -> LTSplit:
    """`<path> <label>` per line (ImageNet-LT, Places-LT, iNaturalist lists). Blank lines are skipped."""
    p = require_file(path, "a split file with '<image path> <label>' lines")
    paths, labels = [], []
    with open(p, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            parts = line.strip().split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DataFormatError(f"{p}:{i}: expected '<image path> <label>', got {line.strip()[:80]!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise DataFormatError(f"{p}:{i}: label {parts[1]!r} is not an integer") from None
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise DataFormatError(f"{p}:{i}: label {label} outside [0, {num_classes})")
            paths.append(parts[0])
            labels.append(label)
    if not paths:
        raise DataFormatError(f"{p}: no entries")
    lab = np.asarray(labels, dtype=np.int64)
    return LTSplit(tuple(paths), lab, int(num_classes if num_classes is not None else lab.max() + 1), str(p))


def read_inaturalist_json(path: str | os.PathLike) -> LTSplit:
    """The official iNaturalist JSON: labels are `category_id`s (0-based in the 2018 release)."""
    p = require_file(path, "an iNaturalist annotation JSON (train2018.json / val2018.json)")
    try:
        doc = json.loads(Path(p).read_text())
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in doc]
    if missing:
        raise DataFormatError(f"{p}: missing keys {missing} (an iNaturalist JSON has images, annotations, categories)")
    file_of = {im["id"]: im["file_name"] for im in doc["images"]}
    cat_ids = sorted(c["id"] for c in doc["categories"])
    if cat_ids != list(range(len(cat_ids))):
        raise DataFormatError(f"{p}: category ids are not 0..{len(cat_ids) - 1}")
    paths, labels = [], []
    for a in doc["annotations"]:
        if a["image_id"] not in file_of:
            raise DataFormatError(f"{p}: annotation {a.get('id')} names image {a['image_id']}, which is not listed")
        paths.append(file_of[a["image_id"]])
        labels.append(int(a["category_id"]))
    return LTSplit(tuple(paths), np.asarray(labels, dtype=np.int64), len(cat_ids), str(p))


def read_split(path: str | os.PathLike, benchmark: str | None = None) -> LTSplit:
    """Dispatch on the file type; `benchmark` (imagenet_lt, places_lt, inaturalist2018) checks the class count."""
    num_classes = NUM_CLASSES.get(benchmark) if benchmark else None
    if benchmark and num_classes is None:
        raise ValueError(f"unknown benchmark '{benchmark}'; known: {', '.join(NUM_CLASSES)}")
    split = read_inaturalist_json(path) if str(path).endswith(".json") else read_split_txt(path, num_classes)
    if num_classes is not None and split.num_classes != num_classes:
        raise DataFormatError(f"{path}: {split.num_classes} classes, {benchmark} has {num_classes}")
    return split


def places_large_path(rel: str) -> str:
    """Official Places-LT mapping onto the Places365 `data_large` tree.

    train/airfield/0001.jpg -> train/a/airfield/0001.jpg; train/apartment_building-outdoor/x.jpg ->
    train/a/apartment_building/outdoor/x.jpg; val/airfield/Places365_val_0001.jpg -> val/Places365_val_0001.jpg.
    """
    parts = rel.split("/")
    if parts[0] != "train":
        return "/".join(["val", parts[-1]])
    cls = parts[1].replace("-", "/")
    return "/".join(["train", cls[0], cls, parts[-1]])


class SplitImageDataset(Dataset):
    """(image, label) from a split file under `image_root`; `transform` takes a PIL RGB image."""

    def __init__(self, split: LTSplit, image_root: str | os.PathLike, transform: Callable | None = None,
                 layout: Literal["as_listed", "places365_large"] = "as_listed"):
        self.split, self.root, self.transform, self.layout = split, Path(image_root), transform, layout
        self.targets = split.labels

    def __len__(self) -> int:
        return len(self.split)

    def image_path(self, i: int) -> Path:
        rel = self.split.paths[i]
        return self.root / (places_large_path(rel) if self.layout == "places365_large" else rel)

    def __getitem__(self, i: int):
        from vlcore.data.images import load_image

        img = load_image(self.image_path(i))
        return (self.transform(img) if self.transform else img), int(self.targets[i])
