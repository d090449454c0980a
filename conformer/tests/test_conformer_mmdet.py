"""The MMDetection 3.x plug-in: paper configs build at full size, smoke configs train a step and run COCO eval."""

from pathlib import Path

import pytest
import torch

from conformer.testing import DATA, one_torch_thread, randomize_  # noqa: F401

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mmdet"
PAPER = {  # official mmdetection/README: parameters (M) of the detectors
    "conformer_faster-rcnn_conformer-s-p32_fpn_8xb2-1x_coco.py": 55.4,
    "conformer_mask-rcnn_conformer-s-p32_fpn_8xb2-1x_coco.py": 58.1,
}
SMOKE = [
    "conformer_faster-rcnn_conformer-micro-p32_fpn_1xb2-smoke_coco-mini.py",
    "conformer_mask-rcnn_conformer-micro-p32_fpn_1xb2-smoke_coco-mini.py",
]


def _models():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import conformer.mmdet  # noqa: F401  (registers ConformerDet)

    register_all_modules(init_default_scope=True)
    return MODELS


@pytest.mark.config
@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_build_with_the_released_size(name):
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS / name))
    assert cfg.custom_imports.imports == ["conformer.mmdet"]
    bb = cfg.model.backbone
    assert (bb.type, bb.patch_size, bb.channel_ratio, bb.embed_dim, bb.norm_eval) == ("ConformerDet", 32, 4, 384, True)
    assert cfg.model.neck.in_channels == [256, 512, 1024, 1024]
    assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=1e-4, weight_decay=1e-4)
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (1344, 800)
    models = _models()
    with torch.device("meta"):
        det = models.build(cfg.model)
    n = sum(p.numel() for p in det.parameters()) / 1e6
    assert abs(n / PAPER[name] - 1) < 0.005, n


@pytest.mark.unit
def test_backbone_strides_norm_eval_freezing_and_pretrained_loading(tmp_path):
    from conformer.convert import ours_to_mmdet_backbone
    from conformer.mmdet import ConformerDet
    from vlcore.checkpoint import CheckpointMismatchError

    kw = dict(channel_ratio=0.25, embed_dim=32, num_heads=2, depth=6)
    bb = ConformerDet(**kw)
    assert bb.out_channels == [16, 32, 64, 64]
    assert not any(k.startswith(("trans_norm", "conv_cls_head", "trans_cls_head")) for k in bb.state_dict())
    bb.train()
    assert not bb.conv1.weight.requires_grad and not bb.bn1.training
    assert not any(m.training for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bb.conv_trans_3.trans_block.training  # only BatchNorm is kept in eval mode
    outs = bb(torch.randn(1, 3, 128, 192))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 48), (16, 24), (8, 12), (4, 6)]

    # ImageNet weights in the official container {'model': ...} load through init_cfg.
    from conformer.models import Conformer

    src = randomize_(Conformer(patch_size=32, num_classes=5, **kw), seed=7)
    torch.save({"model": src.state_dict(), "epoch": 1}, tmp_path / "in1k.pth")
    det = ConformerDet(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "in1k.pth")), **kw)
    det.init_weights()
    for k, v in ours_to_mmdet_backbone(src.state_dict()).items():
        assert torch.equal(det.state_dict()[k], v), k
    # A checkpoint that does not cover the backbone is an error, not a silent partial load.
    sd = src.state_dict()
    sd.pop("conv_trans_2.expand_block.bn.weight")
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(CheckpointMismatchError, match="expand_block.bn.weight"):
        ConformerDet(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "partial.pth")), **kw).init_weights()


@pytest.mark.smoke
@pytest.mark.parametrize("name", SMOKE)
def test_smoke_config_trains_one_step_and_evaluates_on_coco_mini(name, tmp_path):
    if not (DATA / "coco_mini" / "annotations" / "instances_val2017.json").is_file():
        pytest.skip("coco_mini not found")
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(CONFIGS / name))
    cfg.work_dir = str(tmp_path)
    cfg.log_level = "WARNING"
    cfg.train_cfg.val_interval = 2  # validation runs once, below
    runner = Runner.from_cfg(cfg)
    runner.train()  # one iteration (2 images)
    losses = runner.message_hub.get_scalar("train/loss").current()
    assert torch.isfinite(torch.tensor(losses))
    metrics = runner.val_loop.run()  # COCO evaluation on 4 val images
    keys = ["coco/bbox_mAP"] + (["coco/segm_mAP"] if "mask" in name else [])
    for k in keys:
        assert k in metrics and 0.0 <= metrics[k] <= 1.0, metrics
