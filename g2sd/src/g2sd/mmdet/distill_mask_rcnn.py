"""G2SD specific distillation for detection: a Mask R-CNN student pulled towards a frozen,
task-fine-tuned Mask R-CNN teacher (MMDetection 3.x plug-in).

Per iteration the teacher runs backbone + pyramid + RPN head; the student's pyramid
features pass through one 3x3 adapter convolution per level, and

    L = L_det + w(t) * (feat_weight * L_feat + obj_weight * L_obj),   w(t) = min(1, t / warmup_iters)

with the FRS-style losses of :func:`g2sd.engine.losses.frs_distillation_losses` (the
teacher's objectness picks the feature-rich locations). Official values: feat 0.001,
obj 0.1, 500 warm-up iterations.

The teacher runs in eval mode under ``no_grad`` by default (deterministic targets). The
official detectron2 loop leaves it in train mode, where drop path makes its features
stochastic; ``teacher_train_mode=True`` reproduces that.
"""

from __future__ import annotations

import copy

import torch
from mmdet.models.detectors import MaskRCNN
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from torch import nn

from g2sd.engine.losses import frs_distillation_losses


class LevelAdapter(nn.Module):
    """One independent 3x3 convolution (with bias) per pyramid level, no activation (official ``ADAP``)."""

    def __init__(self, channels: int, num_levels: int) -> None:
        super().__init__()
        self.conv = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_levels)])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        return [conv(f) for conv, f in zip(self.conv, feats)]


@MODELS.register_module(name="G2SDDistillMaskRCNN")
class G2SDDistillMaskRCNN(MaskRCNN):
    """Mask R-CNN student with a frozen teacher and FRS feature / objectness distillation.

    Args:
        teacher: ``dict(cfg=<teacher model config>, checkpoint=<path or None>, train_mode=False)``.
        distill: ``dict(feat_weight=0.001, obj_weight=0.1, warmup_iters=500, num_levels=5, channels=256)``.
        **kwargs: ``MaskRCNN`` arguments of the student.
    """

    def __init__(self, *, teacher: dict, distill: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        d = dict(feat_weight=0.001, obj_weight=0.1, warmup_iters=500, num_levels=5, channels=256)
        d.update(distill or {})
        self.feat_weight, self.obj_weight = float(d["feat_weight"]), float(d["obj_weight"])
        self.warmup_iters = int(d["warmup_iters"])
        c = int(d["channels"])
        self.stu_adapter = LevelAdapter(c, int(d["num_levels"]))
        tcfg = copy.deepcopy(teacher["cfg"])
        if tcfg.get("backbone") is not None:
            tcfg["backbone"]["init_cfg"] = None  # the teacher's weights come from its own checkpoint
        self.teacher = MODELS.build(tcfg)
        self.teacher_checkpoint = teacher.get("checkpoint")
        self.teacher_train_mode = bool(teacher.get("train_mode", False))
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.train(self.teacher_train_mode)
        self._iter = 0  # used when no runner publishes the iteration

    def init_weights(self) -> None:
        super().init_weights()
        if self.teacher_checkpoint:
            from g2sd.convert import load_detector_checkpoint

            load_detector_checkpoint(self.teacher, self.teacher_checkpoint)

    def train(self, mode: bool = True) -> "G2SDDistillMaskRCNN":
        super().train(mode)
        self.teacher.train(self.teacher_train_mode)  # the teacher never follows the student into train mode
        return self

    def _distill_weight(self) -> float:
        it = MessageHub.get_current_instance().get_info("iter")
        t = self._iter if it is None else int(it)
        return min(1.0, t / self.warmup_iters) if self.warmup_iters > 0 else 1.0

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: list) -> dict:
        recorded: dict[str, list] = {"neck": [], "objectness": []}
        hooks = [
            self.neck.register_forward_hook(lambda m, i, o: recorded["neck"].append(o)),
            self.rpn_head.rpn_cls.register_forward_hook(lambda m, i, o: recorded["objectness"].append(o)),
        ]
        try:
            losses = super().loss(batch_inputs, batch_data_samples)
        finally:
            for h in hooks:
                h.remove()
        student_feats = recorded["neck"][0]  # p2-p6, each N, 256, H_l, W_l
        student_obj = recorded["objectness"]  # one N, A, H_l, W_l per level (RPN head called once per level)
        with torch.no_grad():
            t_feats = self.teacher.extract_feat(batch_inputs)
            t_obj, _ = self.teacher.rpn_head(t_feats)
        adapted = self.stu_adapter(student_feats)
        d = frs_distillation_losses(adapted, t_feats, student_obj, t_obj)
        w = self._distill_weight()
        self._iter += 1
        losses["loss_distill_feat"] = w * self.feat_weight * d["loss_feat"]
        losses["loss_distill_obj"] = w * self.obj_weight * d["loss_obj"]
        return losses
