"""COCO-protocol box / mask AP plus LVIS-style frequency-bucket AP (AP_r, AP_c, AP_f).

LVIS groups categories by the number of *training images* that contain them:
rare 1-10, common 11-100, frequent > 100, and reports the mean AP (over IoU
0.50:0.95) of the categories in each group. `LongTailCocoMetric` does the same
on any COCO-format set: buckets come from the `frequency` field of LVIS
categories when present, else from image counts in `train_ann_file`. Categories
without ground truth in the evaluated images are left out of the means (as in
COCO / LVIS). Evaluation is pycocotools' (non-federated) COCOeval; on real LVIS
use mmdet's `LVISMetric` (needs the `lvis` package), which reports the same buckets
with LVIS's federated protocol.
"""

from __future__ import annotations

import contextlib
import io
import json
import os.path as osp
import tempfile
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from mmengine.fileio import load

from mmdet.datasets.api_wrappers import COCOeval
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS

RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100


def frequency_buckets(train_ann_file: str, rare_max: int = RARE_MAX_IMAGES,
                      common_max: int = COMMON_MAX_IMAGES) -> dict[str, str]:
    """category name -> 'r' / 'c' / 'f' from LVIS `frequency` fields or training image counts.

    Keyed by name because an evaluator may renumber categories (mmdet converts
    ground truth to COCO json with ids 0..C-1 when it is given no annotation file).
    """
    path = Path(train_ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"training annotation file for frequency buckets not found: {path}")
    doc = json.loads(path.read_text())
    cats = doc["categories"]
    if all("frequency" in c for c in cats):
        return {c["name"]: c["frequency"] for c in cats}
    images: dict[int, set] = {c["id"]: set() for c in cats}
    for a in doc.get("annotations", []):
        if a["category_id"] in images and not a.get("iscrowd", 0):
            images[a["category_id"]].add(a["image_id"])
    name = {c["id"]: c["name"] for c in cats}
    out = {}
    for cid, ims in images.items():
        n = len(ims)
        out[name[cid]] = "r" if n <= rare_max else "c" if n <= common_max else "f"
    return out


def bucket_ap(precision: np.ndarray, cat_names: Sequence[str], buckets: dict[str, str]) -> dict[str, float]:
    """Mean over categories of each bucket of AP@[.5:.95] from COCOeval's precision (T, R, K, A, M)."""
    per_cat = {}
    for k, name in enumerate(cat_names):
        p = precision[:, :, k, 0, -1]  # T, R at area 'all', the largest max-dets
        p = p[p > -1]
        if p.size:
            per_cat[name] = float(np.mean(p))
    out = {}
    for b in ("r", "c", "f"):
        vals = [ap for name, ap in per_cat.items() if buckets.get(name) == b]
        out[b] = float(np.mean(vals)) if vals else float("nan")
    return out


@METRICS.register_module()
class LongTailCocoMetric(CocoMetric):
    def __init__(self, *args, train_ann_file: str, rare_max: int = RARE_MAX_IMAGES,
                 common_max: int = COMMON_MAX_IMAGES, **kwargs):
        super().__init__(*args, **kwargs)
        self.buckets = frequency_buckets(train_ann_file, rare_max, common_max)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        eval_results = super().compute_metrics(results)
        if self.format_only:
            return eval_results
        _, preds = zip(*results)
        with tempfile.TemporaryDirectory() as tmp:
            files = self.results2json(preds, osp.join(tmp, "results"))
            for metric in self.metrics:
                if metric not in ("bbox", "segm") or metric not in files:
                    continue
                dets = load(files[metric])
                if not dets:
                    for b in ("r", "c", "f"):
                        eval_results[f"{metric}_AP_{b}"] = 0.0
                    continue
                if metric == "segm":
                    for d in dets:
                        d.pop("bbox", None)  # area from the mask, as CocoMetric does
                with contextlib.redirect_stdout(io.StringIO()):
                    coco_eval = COCOeval(self._coco_api, self._coco_api.loadRes(dets), metric)
                    coco_eval.params.catIds = self.cat_ids
                    coco_eval.params.imgIds = self.img_ids
                    coco_eval.params.maxDets = list(self.proposal_nums)
                    coco_eval.params.iouThrs = self.iou_thrs
                    coco_eval.evaluate()
                    coco_eval.accumulate()
                names = [c["name"] for c in self._coco_api.loadCats(self.cat_ids)]
                for b, v in bucket_ap(coco_eval.eval["precision"], names, self.buckets).items():
                    eval_results[f"{metric}_AP_{b}"] = round(v, 4) if np.isfinite(v) else v
        return eval_results


