"""Segmentation plug-in: configs build, one training step with channel-wise distillation, mIoU on coco_mini."""

from pathlib import Path

import pytest
import torch

mmseg = pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mmseg"
SMOKE = CONFIGS / "g2sd-cwd_upernet_vit-tiny_1xb2-smoke_coco-mini-128.py"
COCO_MINI = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_mini"


def _registered():
    from mmseg.utils import register_all_modules

    import g2sd.mmseg  # noqa: F401

    register_all_modules()


@pytest.mark.config
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.py")))
def test_every_segmentation_config_builds(name):
    from mmseg.registry import MODELS

    _registered()
    cfg = Config.fromfile(str(CONFIGS / name))
    if cfg.model.get("data_preprocessor") is None:
        pytest.fail("segmentor without a data preprocessor")
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = MODELS.build(cfg.model)
    width = cfg.model.backbone.embed_dims
    assert model.backbone.cls_token.shape[-1] == width
    if "g2sd-cwd" in name:
        assert type(model).__name__ == "G2SDDistillEncoderDecoder" and model.cwd_weight == 3.0
        assert model.teacher.backbone.cls_token.shape[-1] > width
        assert not any(p.requires_grad for p in model.teacher.parameters())


@pytest.mark.smoke
@pytest.mark.skipif(not COCO_MINI.is_dir(), reason="needs ../shared/data/coco_mini")
def test_cwd_distillation_step_and_miou():
    from g2sd.testing import train_step_and_evaluate

    _registered()
    cfg = Config.fromfile(str(SMOKE))
    torch.manual_seed(0)
    model, loader, log_vars, metrics = train_step_and_evaluate(cfg, "mmseg")
    assert {"decode.loss_ce", "aux.loss_ce", "loss_cwd"} <= set(log_vars) and log_vars["loss_cwd"] > 0
    assert 0.0 <= metrics["mIoU"] <= 100.0
    model.train()
    data = model.data_preprocessor(next(iter(loader)), True)
    labels = torch.stack([s.gt_sem_seg.data for s in data["data_samples"]])
    assert labels.max() == 255 or labels.max() < 133  # remapped panoptic ids, 255 = unlabeled
    losses = model.loss(data["inputs"], data["data_samples"])
    assert torch.isfinite(losses["loss_cwd"])
    model.zero_grad()
    losses["loss_cwd"].backward()
    assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0
    assert model.auxiliary_head.conv_seg.weight.grad is None  # CWD acts on the decode head only
    assert all(p.grad is None for p in model.teacher.parameters())
