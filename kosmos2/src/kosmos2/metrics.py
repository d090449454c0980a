"""Grounding metrics: box IoU, REC accuracy at an IoU threshold, phrase-grounding recall@k.

Boxes are (x1, y1, x2, y2) in any consistent unit (pixels or normalised). A prediction that is
missing (None), malformed, non-finite or of zero area counts as a miss, never as an error.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["box_iou", "valid_box", "rec_hits", "rec_accuracy", "recall_at_k"]


def valid_box(box) -> bool:
    """True for 4 finite numbers with x2 > x1 and y2 > y1."""
    if box is None:
        return False
    try:
        v = [float(x) for x in box]
    except (TypeError, ValueError):
        return False
    return len(v) == 4 and all(math.isfinite(x) for x in v) and v[2] > v[0] and v[3] > v[1]


def _as_boxes(b) -> np.ndarray:
    a = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"boxes must have shape (4,) or (N, 4), got {a.shape}")
    return a


def box_iou(boxes1, boxes2):
    """IoU of xyxy boxes. Two single boxes give a float; otherwise an (N, M) array.

    Degenerate boxes (x2 <= x1 or y2 <= y1, or non-finite) have IoU 0 with everything.
    """
    single = np.ndim(boxes1) == 1 and np.ndim(boxes2) == 1
    a, b = _as_boxes(boxes1), _as_boxes(boxes2)
    ok_a = np.isfinite(a).all(1) & (a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])
    ok_b = np.isfinite(b).all(1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    a = np.where(ok_a[:, None], a, 0.0)
    b = np.where(ok_b[:, None], b, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # N
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # M
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # N, M, 2
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]  # N, M
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.where(ok_a[:, None] & ok_b[None, :] & (union > 0), inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou[0, 0]) if single else iou


def rec_hits(pred_boxes: Sequence, gt_boxes: Sequence, thr: float = 0.5) -> list[bool]:
    """Per-expression hit: the predicted box has IoU >= thr with the target (a missing prediction misses)."""
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"{len(pred_boxes)} predictions for {len(gt_boxes)} targets")
    return [valid_box(p) and box_iou(list(p), list(g)) >= thr for p, g in zip(pred_boxes, gt_boxes)]


def rec_accuracy(pred_boxes: Sequence, gt_boxes: Sequence, thr: float = 0.5) -> float:
    """Referring-expression comprehension accuracy: share of expressions with IoU(pred, gt) >= thr."""
    hits = rec_hits(pred_boxes, gt_boxes, thr)
    return sum(hits) / len(hits) if hits else 0.0


def recall_at_k(
    pred_boxes: Sequence[Sequence], gt_boxes: Sequence[Sequence], ks: Iterable[int] = (1, 5, 10), thr: float = 0.5
) -> dict:
    """Flickr30K-Entities phrase-grounding recall, any-box protocol.

    pred_boxes[i]: the boxes produced for phrase i, in generation order (may be empty);
    gt_boxes[i]: all ground-truth boxes of phrase i. Phrase i counts as a hit at k when any of its
    first k predicted boxes has IoU >= thr with any of its ground-truth boxes (with fewer than k
    predictions, all of them are used). Phrases without a ground-truth box are left out (`n`
    says how many were scored). Returns {"R@1": ..., "R@5": ..., "R@10": ..., "n": n}.
    """
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"{len(pred_boxes)} prediction lists for {len(gt_boxes)} phrases")
    ks = list(ks)
    hits = {k: 0 for k in ks}
    n = 0
    for preds, gts in zip(pred_boxes, gt_boxes):
        gts = [g for g in (gts or []) if valid_box(g)]
        if not gts:
            continue
        n += 1
        first_hit = None  # rank (1-based) of the first prediction that matches any GT box
        for r, p in enumerate(preds or [], start=1):
            if valid_box(p) and float(np.max(box_iou([list(p)], gts))) >= thr:
                first_hit = r
                break
        for k in ks:
            if first_hit is not None and first_hit <= k:
                hits[k] += 1
    out = {f"R@{k}": (hits[k] / n if n else 0.0) for k in ks}
    out["n"] = n
    return out
