"""The imTED detector: a two-stage detector whose RPN sees the pyramid and whose box head sees the
last ViT map, with the whole MAE (encoder + decoder) loadable into backbone + box head."""

from __future__ import annotations

import copy

import torch
from mmdet.models.detectors import TwoStageDetector
from mmdet.registry import MODELS
from mmengine.logging import print_log

from imted.convert import load_mae_into_detector


@MODELS.register_module()
class ImTED(TwoStageDetector):
    """``extract_feat`` returns ``(N2..N6, V)``: the RPN gets the five pyramid maps, the RoI head all six.

    Args:
        mae_checkpoint: an MAE checkpoint (official ``{'model': ...}`` .pth, safetensors or state dict file)
            loaded in ``init_weights``: encoder -> backbone, encoder norm + decoder -> box head.
        load_decoder: False keeps the box head randomly initialised (the "random decoder" ablation).
    """

    def __init__(self, *, mae_checkpoint: str | None = None, load_decoder: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mae_checkpoint = mae_checkpoint
        self.load_decoder = load_decoder

    def init_weights(self) -> None:
        super().init_weights()
        if self.mae_checkpoint:
            report = load_mae_into_detector(self, self.mae_checkpoint, load_decoder=self.load_decoder)
            print_log(f"imTED: loaded {len(report['loaded'])} tensors from {self.mae_checkpoint}", logger="current")

    def extract_feat(self, batch_inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.backbone(batch_inputs)
        return self.neck(x) if self.with_neck else x

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: list) -> dict:
        x = self.extract_feat(batch_inputs)
        losses = dict()
        proposal_cfg = self.train_cfg.get("rpn_proposal", self.test_cfg.rpn)
        rpn_samples = copy.deepcopy(batch_data_samples)
        for s in rpn_samples:  # the RPN is class-agnostic
            s.gt_instances.labels = torch.zeros_like(s.gt_instances.labels)
        rpn_losses, rpn_results = self.rpn_head.loss_and_predict(x[:-1], rpn_samples, proposal_cfg=proposal_cfg)
        for key in list(rpn_losses):
            if "loss" in key and "rpn" not in key:
                rpn_losses[f"rpn_{key}"] = rpn_losses.pop(key)
        losses.update(rpn_losses)
        losses.update(self.roi_head.loss(x, rpn_results, batch_data_samples))
        return losses

    def predict(self, batch_inputs: torch.Tensor, batch_data_samples: list, rescale: bool = True) -> list:
        x = self.extract_feat(batch_inputs)
        if batch_data_samples[0].get("proposals", None) is None:
            rpn_results = self.rpn_head.predict(x[:-1], batch_data_samples, rescale=False)
        else:
            rpn_results = [s.proposals for s in batch_data_samples]
        results = self.roi_head.predict(x, rpn_results, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: torch.Tensor, batch_data_samples: list) -> tuple:
        x = self.extract_feat(batch_inputs)
        rpn_results = self.rpn_head.predict(x[:-1], batch_data_samples, rescale=False)
        return (self.rpn_head.forward(x[:-1]), self.roi_head.forward(x, rpn_results, batch_data_samples))
