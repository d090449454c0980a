"""Detection plug-in: configs build, one training step with the FRS losses and a COCO evaluation on coco_mini."""

from pathlib import Path

import pytest
import torch

mmdet = pytest.importorskip("mmdet")

from mmengine.config import Config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mmdet"
SMOKE = CONFIGS / "g2sd-frs_vitdet-mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-256.py"
COCO_MINI = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_mini"


def _registered():
    from mmdet.utils import register_all_modules

    import g2sd.mmdet  # noqa: F401

    register_all_modules()


@pytest.mark.config
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.py")))
def test_every_detection_config_builds(name):
    from mmdet.registry import MODELS

    _registered()
    cfg = Config.fromfile(str(CONFIGS / name))
    from accelerate import init_empty_weights

    with init_empty_weights():  # paper-size models: no memory, no weight files read
        model = MODELS.build(cfg.model)
    width = cfg.model.backbone.embed_dim
    assert model.backbone.pos_embed.shape[-1] == width
    if "g2sd-frs" in name:
        assert type(model).__name__ == "G2SDDistillMaskRCNN"
        assert model.teacher.backbone.pos_embed.shape[-1] > width  # a larger teacher
        assert not any(p.requires_grad for p in model.teacher.parameters())


@pytest.mark.smoke
@pytest.mark.skipif(not COCO_MINI.is_dir(), reason="needs ../shared/data/coco_mini")
def test_distillation_step_and_coco_evaluation():
    from g2sd.testing import train_step_and_evaluate

    _registered()
    cfg = Config.fromfile(str(SMOKE))
    torch.manual_seed(0)
    model, loader, log_vars, metrics = train_step_and_evaluate(cfg, "mmdet")
    # A training step through the optimiser wrapper logs the distillation terms.
    assert {"loss_rpn_cls", "loss_cls", "loss_mask", "loss_distill_feat", "loss_distill_obj"} <= set(log_vars)
    assert log_vars["loss_distill_feat"] > 0 and log_vars["loss_distill_obj"] > 0
    for key in ("coco/bbox_mAP", "coco/segm_mAP"):
        assert 0.0 <= metrics[key] <= 1.0
    # The distillation terms on a real batch: gradients reach the student and its adapter, never the teacher.
    model.train()
    assert not model.teacher.training  # the teacher stays in eval mode
    data = model.data_preprocessor(next(iter(loader)), True)
    losses = model.loss(data["inputs"], data["data_samples"])
    feat, obj = losses["loss_distill_feat"], losses["loss_distill_obj"]
    assert torch.isfinite(feat) and torch.isfinite(obj)
    model.zero_grad()
    (feat + obj).backward()
    assert model.stu_adapter.conv[0].weight.grad.abs().sum() > 0
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
