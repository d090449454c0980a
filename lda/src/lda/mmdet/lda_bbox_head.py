"""The LDA objective in the RoI classification head of a two-stage detector.

No detection code was released with the paper, so this is our design, built to
keep every piece of the classification objective:

- two classifiers on the shared 1024-d RoI feature: `fc_cls` is g_b (balanced,
  C + 1 logits, the one used at inference, so mmdet's predict path is untouched)
  and `fc_cls_u` is g_u (unbalanced, C + 1 logits);
- L_u: mmdet's classification loss of g_u over all sampled RoIs (`loss_cls_u`);
- L_b = sum_i w_i CE(g_b(x_i), y_i) over the sampled RoIs, in the sum form of the
  classification code with the same 1/N scale, N = training instances:
  w = 1 / (C n_c) for a foreground RoI of class c (the importance weight of a
  class-balanced foreground distribution) and w = 1 / N for background RoIs (the
  balanced domain changes only which foreground class an object has);
- alpha = max(0, mean acc_u - mean acc_b)^2 from the top-1 accuracies (percent) of
  the two classifiers on foreground RoIs over the last `alpha_window` iterations;
  the loss is 2 alpha L_b (`loss_cls_b`);
- intra-/inter-class cosine distances on a 1024 -> 128 neck of the foreground
  RoI features, classes = ground-truth labels of the positive RoIs (`loss_intra`,
  `loss_inter`), margin 1.

`n_c` are training instance counts (`count_by='instance'`, default) or image
counts; they come from `class_counts` or from a COCO / LVIS annotation file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.roi_heads.standard_roi_head import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi

from lda.engine.losses import AdaptiveAlpha, inter_class_distance, intra_class_distance


def category_counts(ann_file: str, classes: Optional[Sequence[str]] = None, count_by: str = "instance") -> list[int]:
    """Training instance (or image) counts per label, labels in `classes` order (default: sorted category ids)."""
    if count_by not in ("instance", "image"):
        raise ValueError(f"count_by must be 'instance' or 'image', got {count_by!r}")
    path = Path(ann_file)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file for class counts not found: {path}")
    doc = json.loads(path.read_text())
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    if classes is not None:
        by_name = {c["name"]: c for c in cats}
        missing = [n for n in classes if n not in by_name]
        if missing:
            raise ValueError(f"{path}: classes not in its categories: {missing[:5]}")
        cats = [by_name[n] for n in classes]
    field = "instance_count" if count_by == "instance" else "image_count"
    if all(field in c for c in cats):  # LVIS ships the official counts in its categories
        return [int(c[field]) for c in cats]
    index = {c["id"]: i for i, c in enumerate(cats)}
    counts = [0] * len(cats)
    seen: set[tuple[int, int]] = set()
    for a in doc["annotations"]:
        k = index.get(a["category_id"])
        if k is None or a.get("iscrowd", 0):
            continue
        if count_by == "image":
            if (a["image_id"], k) in seen:
                continue
            seen.add((a["image_id"], k))
        counts[k] += 1
    return counts


@MODELS.register_module()
class LDABBoxHead(Shared2FCBBoxHead):
    def __init__(self, *args, class_counts: Optional[Sequence[int]] = None, count_ann_file: Optional[str] = None,
                 count_classes: Optional[Sequence[str]] = None, count_by: str = "instance", neck_dim: int = 128,
                 u_weight: float = 1.0, b_weight: float = 2.0, dist_weight: float = 1.0, margin: float = 1.0,
                 alpha_window: int = 100, gamma: float = 2.0, fixed_alpha: Optional[float] = None,
                 lb_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if class_counts is None:
            if count_ann_file is None:
                raise ValueError("LDABBoxHead needs class_counts or count_ann_file (the training annotations)")
            class_counts = category_counts(count_ann_file, count_classes, count_by)
        if len(class_counts) != self.num_classes:
            raise ValueError(f"LDABBoxHead: {len(class_counts)} class counts for num_classes={self.num_classes}")
        n = torch.tensor([max(int(c), 1) for c in class_counts], dtype=torch.float32)  # classes absent from training: 1
        weights = torch.cat([1.0 / (self.num_classes * n), (1.0 / n.sum()).view(1)])  # C + 1 (background last)
        self.register_buffer("roi_weights", weights, persistent=False)
        self.u_weight, self.b_weight, self.dist_weight = u_weight, b_weight, dist_weight
        self.margin, self.lb_scale = margin, lb_scale
        self.fc_cls_u = nn.Linear(self.cls_last_dim, self.num_classes + 1)  # g_u
        self.fc_neck = nn.Linear(self.cls_last_dim, neck_dim) if neck_dim and dist_weight > 0 else None
        self.alpha = AdaptiveAlpha(alpha_window, gamma, fixed_alpha)
        nn.init.normal_(self.fc_cls_u.weight, 0, 0.01)
        nn.init.zeros_(self.fc_cls_u.bias)

    def _branch_features(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        # The shared part of Shared2FCBBoxHead: flatten, two fc + ReLU; both branches see it.
        if self.with_avg_pool:
            x = self.avg_pool(x)
        x = x.flatten(1)  # R, 256 * 7 * 7
        for fc in self.shared_fcs:
            x = self.relu(fc(x))
        return x, x  # R, 1024

    def forward_lda(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        """(g_b logits, box deltas, g_u logits, neck embedding) of R RoIs."""
        x_cls, x_reg = self._branch_features(x)
        cls_score = self.fc_cls(x_cls)  # R, C + 1
        bbox_pred = self.fc_reg(x_reg)  # R, 4 C (or 4)
        cls_score_u = self.fc_cls_u(x_cls)  # R, C + 1
        embed = self.fc_neck(x_cls) if self.fc_neck is not None else None  # R, 128
        return cls_score, bbox_pred, cls_score_u, embed

    def loss_lda(self, cls_score: Tensor, bbox_pred: Tensor, cls_score_u: Tensor, embed: Optional[Tensor],
                 rois: Tensor, sampling_results: List[SamplingResult], rcnn_train_cfg) -> dict:
        labels, label_weights, bbox_targets, bbox_weights = self.get_targets(sampling_results, rcnn_train_cfg)
        # L_u and the box loss exactly as mmdet computes them, with g_u as the classifier.
        losses = self.loss(cls_score_u, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights)
        losses["loss_cls_u"] = self.u_weight * losses.pop("loss_cls")
        losses["acc_u"] = losses.pop("acc")
        ce = F.cross_entropy(cls_score, labels, reduction="none")  # R
        loss_b = (self.roi_weights[labels] * label_weights * ce).sum() * self.lb_scale
        fg = labels < self.num_classes
        if fg.any():
            acc_u = 100.0 * float((cls_score_u[fg].argmax(1) == labels[fg]).float().mean())
            acc_b = 100.0 * float((cls_score[fg].argmax(1) == labels[fg]).float().mean())
        else:
            acc_u = acc_b = 0.0
        if self.training:
            self.alpha.update(acc_u, acc_b)
        alpha = self.alpha.value()
        losses["loss_cls_b"] = self.b_weight * alpha * loss_b
        losses["alpha"] = cls_score.new_tensor(alpha)
        losses["acc"] = cls_score.new_tensor(acc_b)
        if embed is not None:
            e, y = embed[fg], labels[fg]
            if e.shape[0]:
                losses["loss_intra"] = self.dist_weight * intra_class_distance(e, y)
                losses["loss_inter"] = self.dist_weight * inter_class_distance(e, y, self.margin)
            else:
                losses["loss_intra"] = losses["loss_inter"] = embed.sum() * 0.0
        return losses


@MODELS.register_module()
class LDARoIHead(StandardRoIHead):
    """StandardRoIHead whose box branch trains with `LDABBoxHead.loss_lda`; inference is unchanged."""

    def bbox_loss(self, x: Tuple[Tensor], sampling_results: List[SamplingResult]) -> dict:
        if not isinstance(self.bbox_head, LDABBoxHead):
            raise TypeError(f"LDARoIHead needs an LDABBoxHead, got {type(self.bbox_head).__name__}")
        rois = bbox2roi([res.priors for res in sampling_results])  # R, 5
        bbox_feats = self.bbox_roi_extractor(x[: self.bbox_roi_extractor.num_inputs], rois)  # R, 256, 7, 7
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred, cls_score_u, embed = self.bbox_head.forward_lda(bbox_feats)
        loss_bbox = self.bbox_head.loss_lda(cls_score, bbox_pred, cls_score_u, embed, rois, sampling_results,
                                            self.train_cfg)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats, loss_bbox=loss_bbox)
