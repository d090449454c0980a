"""Segmentation specific distillation: channel-wise divergence of the decode-head logits.

    L = CE_decode + 0.4 CE_aux + loss_weight * CWD(student logits, teacher logits; tau)

The logits are the decode head's ``conv_seg`` outputs before up-sampling (N, K, H/4, W/4),
recorded with a forward hook on the student and computed by the frozen teacher (eval mode,
``no_grad``), as in the official distiller. Official weights: tau 1, loss_weight 3 (the
value its launch script passes; its config file says 10).
"""

from __future__ import annotations

import copy

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from g2sd.engine.losses import channel_wise_divergence


@MODELS.register_module(name="G2SDDistillEncoderDecoder")
class G2SDDistillEncoderDecoder(EncoderDecoder):
    """UperNet (or any EncoderDecoder) student with a frozen teacher segmentor.

    Args:
        teacher: ``dict(cfg=<teacher segmentor config>, checkpoint=<path or None>)``.
        distill: ``dict(tau=1.0, loss_weight=3.0)``.
        **kwargs: ``EncoderDecoder`` arguments of the student.
    """

    def __init__(self, *, teacher: dict, distill: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        d = dict(tau=1.0, loss_weight=3.0)
        d.update(distill or {})
        self.tau, self.cwd_weight = float(d["tau"]), float(d["loss_weight"])
        tcfg = copy.deepcopy(teacher["cfg"])
        tcfg["pretrained"] = None  # the teacher's weights come from its own checkpoint
        if tcfg.get("backbone") is not None:
            tcfg["backbone"]["init_cfg"] = None
        self.teacher = MODELS.build(tcfg)
        self.teacher_checkpoint = teacher.get("checkpoint")
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()

    def init_weights(self) -> None:
        super().init_weights()
        if self.teacher_checkpoint:
            from g2sd.convert import load_segmentor_checkpoint

            load_segmentor_checkpoint(self.teacher, self.teacher_checkpoint)

    def train(self, mode: bool = True) -> "G2SDDistillEncoderDecoder":
        super().train(mode)
        self.teacher.eval()
        return self

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        recorded: list[torch.Tensor] = []
        hook = self.decode_head.conv_seg.register_forward_hook(lambda m, i, o: recorded.append(o))
        try:
            losses = super().loss(inputs, data_samples)
        finally:
            hook.remove()
        with torch.no_grad():
            t_logits = self.teacher.decode_head(self.teacher.extract_feat(inputs))  # N, K, H/4, W/4
        losses["loss_cwd"] = self.cwd_weight * channel_wise_divergence(recorded[0], t_logits, tau=self.tau)
        return losses
