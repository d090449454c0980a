"""ADE20K SceneParsing layout reader and confusion-matrix mIoU.

Layout (as in ADEChallengeData2016 and the shared sample): `images/*.jpg`,
`annotations/*.png` with the same stems, `objectInfo150.csv`. Label PNGs hold
0 = other / ignore and 1..150 = classes; `reduce_zero_label` maps them to 255 and
0..149, as ADE20K training does.

mIoU follows the usual segmentation-benchmark definition: per-class IoU =
intersection / union from one confusion matrix accumulated over all images;
classes whose union is empty are NaN and left out of the mean.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vlcore.data.images import load_image, load_label_map, to_tensor
from vlcore.data.paths import DataFormatError, dataset_dir, require_dir, require_file

ADE20K_NUM_CLASSES = 150
ADE20K_SAMPLE_FOLDER = "ade20k_sceneparsing_sample"
IGNORE_INDEX = 255


def load_ade20k_classes(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names from objectInfo150.csv in Idx order; the first synonym of each ("building;edifice" -> "building")."""
    p = require_file(path, "the ADE20K class list objectInfo150.csv")
    with open(p, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "Idx" not in rows[0] or "Name" not in rows[0]:
        raise DataFormatError(f"{p}: expected columns Idx and Name")
    rows.sort(key=lambda r: int(r["Idx"]))
    idx = [int(r["Idx"]) for r in rows]
    if idx != list(range(1, len(rows) + 1)):
        raise DataFormatError(f"{p}: class indices must run 1..{len(rows)} without gaps")
    return tuple(r["Name"].split(";")[0].strip() for r in rows)


def reduce_zero_label(label: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """0 -> 255 (ignored), k -> k - 1; 255 stays 255. Works on numpy or torch integer maps (returns int64)."""
    return _shift_labels(label)


def _shift_labels(label: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    # Separate from the public name, which the metric functions' keyword argument shadows.
    if isinstance(label, torch.Tensor):
        out = label.long() - 1
        out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
        return out
    out = label.astype(np.int64) - 1
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out


class ADE20KSceneParsing(Dataset):
    """(image float32 # 3, H, W in [0, 1], label int64 # H, W) pairs of an ADE20K-layout folder.

    Default folder: the shared 3-image sample. With `reduce_zero_label` (default) labels are 0..149 and 255.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        data_root: str | os.PathLike[str] | None = None,
        images: str = "images",
        annotations: str = "annotations",
        reduce_zero_label: bool = True,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        base = Path(root) if root is not None else dataset_dir(ADE20K_SAMPLE_FOLDER, root=data_root)
        require_dir(base, "an ADE20K SceneParsing folder (images/, annotations/, objectInfo150.csv)")
        self.image_dir = require_dir(base / images, "ADE20K JPEG images")
        self.ann_dir = require_dir(base / annotations, "ADE20K label PNGs")
        csv_path = base / "objectInfo150.csv"
        self.classes = load_ade20k_classes(csv_path) if csv_path.is_file() else tuple(str(i) for i in range(1, 151))
        self.names = sorted(p.stem for p in self.image_dir.glob("*.jpg"))
        if not self.names:
            raise DataFormatError(f"{self.image_dir}: no .jpg images")
        missing = [n for n in self.names if not (self.ann_dir / f"{n}.png").is_file()]
        if missing:
            raise DataFormatError(f"{self.ann_dir}: no label map for {len(missing)} image(s), e.g. {missing[0]}.png")
        self.reduce_zero_label = reduce_zero_label
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.names)

    def label(self, i: int) -> torch.Tensor:
        path = self.ann_dir / f"{self.names[i]}.png"
        raw = load_label_map(path)
        top = int(raw.max(initial=0))
        if top > self.num_classes and top != IGNORE_INDEX:
            raise DataFormatError(f"{path}: label value {top} exceeds the {self.num_classes} classes")
        lab = torch.from_numpy(raw.astype(np.int64))  # H, W
        return reduce_zero_label(lab) if self.reduce_zero_label else lab

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.image_dir / f"{self.names[i]}.jpg"
        x = to_tensor(load_image(path))  # 3, H, W
        y = self.label(i)
        if tuple(y.shape) != tuple(x.shape[1:]):
            raise DataFormatError(f"{path}: image is {tuple(x.shape[1:])}, its label map {tuple(y.shape)}")
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y


# --- metrics ----------------------------------------------------------------------------------


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    reduce_zero_label: bool = False,
) -> torch.Tensor:
    """int64 # C, C with rows = ground truth, columns = prediction; pixels whose target is `ignore_index` are skipped.

    With `reduce_zero_label` the target is first mapped as ADE20K's raw labels (0 -> ignore, k -> k - 1).
    """
    # numpy: on CPU its bincount and masking are much faster than torch's for single label maps.
    p_arr, t_arr = _as_numpy(pred), _as_numpy(target)
    if p_arr.shape != t_arr.shape:
        raise ValueError(f"prediction and target shapes differ: {p_arr.shape} vs {t_arr.shape}")
    t_arr = t_arr.astype(np.int64, copy=False)
    if reduce_zero_label:
        t_arr = _shift_labels(t_arr)
    p_arr = p_arr.reshape(-1).astype(np.int64, copy=False)
    t_arr = t_arr.reshape(-1)
    keep = t_arr != ignore_index
    p_arr, t_arr = p_arr[keep], t_arr[keep]
    if t_arr.size and (t_arr.min() < 0 or t_arr.max() >= num_classes):
        raise ValueError(
            f"target values must be in [0, {num_classes}) or {ignore_index}, found {t_arr.min()}..{t_arr.max()}"
        )
    if p_arr.size and (p_arr.min() < 0 or p_arr.max() >= num_classes):
        raise ValueError(f"predicted values must be in [0, {num_classes}), found {p_arr.min()}..{p_arr.max()}")
    cm = np.bincount(t_arr * num_classes + p_arr, minlength=num_classes * num_classes)
    return torch.from_numpy(cm.reshape(num_classes, num_classes).astype(np.int64))


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def metrics_from_confusion(cm: torch.Tensor) -> dict[str, float | list[float]]:
    """mIoU, mAcc (mean class recall), aAcc (pixel accuracy) and per-class IoU (NaN where the union is empty)."""
    cm = cm.double()
    inter = cm.diag()
    gt = cm.sum(1)
    pr = cm.sum(0)
    union = gt + pr - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float("nan")))
    acc = torch.where(gt > 0, inter / gt.clamp_min(1), torch.full_like(inter, float("nan")))
    total = cm.sum()
    valid_iou = iou[~iou.isnan()]
    valid_acc = acc[~acc.isnan()]
    return {
        "mIoU": float(valid_iou.mean()) if valid_iou.numel() else float("nan"),
        "mAcc": float(valid_acc.mean()) if valid_acc.numel() else float("nan"),
        "aAcc": float(inter.sum() / total) if total > 0 else float("nan"),
        "IoU": iou.tolist(),
    }


def mean_iou(
    preds: Sequence[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
    targets: Sequence[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    reduce_zero_label: bool = False,
) -> dict[str, float | list[float]]:
    """mIoU over a set of label maps (one map, a batch tensor, or a list of maps of different sizes)."""
    m = SegmentationMeter(num_classes=num_classes, ignore_index=ignore_index, reduce_zero_label=reduce_zero_label)
    if isinstance(preds, (torch.Tensor, np.ndarray)):
        preds, targets = [preds], [targets]
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    for p, t in zip(preds, targets):
        m.update(p, t)
    return m.compute()


class SegmentationMeter:
    """Accumulates one confusion matrix over batches; `compute()` gives the metrics of everything seen."""

    def __init__(self, *, num_classes: int, ignore_index: int = IGNORE_INDEX, reduce_zero_label: bool = False) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        self.cm += confusion_matrix(
            pred, target, num_classes=self.num_classes,
            ignore_index=self.ignore_index, reduce_zero_label=self.reduce_zero_label,
        )

    def compute(self) -> dict[str, float | list[float]]:
        return metrics_from_confusion(self.cm)
