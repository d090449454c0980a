"""The MMSegmentation plug-in: the shipped UperNet config, scaled down, trains a step and reports
mIoU on the ADE20K sample and on COCO semantic masks of the shared data."""

from pathlib import Path

import pytest
import torch

mmseg = pytest.importorskip("mmseg")
from mmengine.config import Config, ConfigDict  # noqa: E402

PKG = Path(__file__).resolve().parents[1]
CONFIG = PKG / "configs" / "mmseg" / "upernet_beitv2-base_8xb2-160k_ade20k-512x512.py"
from vlcore.data import shared_data_root  # noqa: E402

DATA = shared_data_root()
if not (DATA / "ade20k_sceneparsing_sample").is_dir():
    pytest.skip("shared data (ADE20K sample, coco_mini) not found", allow_module_level=True)


def small(cfg: Config, work_dir: Path) -> Config:
    """The shipped config at 64 px with a 2-block, 32-wide backbone, BatchNorm and one iteration."""
    from beit2.mmseg.testing import small_upernet_config

    return small_upernet_config(cfg, work_dir, DATA / "ade20k_sceneparsing_sample")


@pytest.mark.smoke
def test_upernet_config_trains_a_step_and_reports_miou_on_ade20k_and_coco(tmp_path):
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(CONFIG))
    assert cfg.model.backbone.type == "BEiTv2ViT" and cfg.custom_imports.imports == ["beit2.mmseg"]
    assert cfg.model.backbone.out_indices == (3, 5, 7, 11) and cfg.model.test_cfg.stride == (341, 341)
    runner = Runner.from_cfg(small(cfg, tmp_path / "ade"))
    before = runner.model.backbone.blocks[0].mlp.fc1.weight.detach().clone()
    runner.train()
    assert not torch.equal(before, runner.model.backbone.blocks[0].mlp.fc1.weight)  # a step was taken
    metrics = runner.val()
    assert 0.0 <= metrics["mIoU"] <= 100.0

    coco = small(cfg, tmp_path / "coco")
    coco.model.decode_head.num_classes = 133
    coco.model.auxiliary_head.num_classes = 133
    pipe = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(96, 64), keep_ratio=True),
            dict(type="LoadAnnotations", reduce_zero_label=False), dict(type="PackSegInputs")]
    coco.val_dataloader.dataset = ConfigDict(
        type="COCOPanopticSemanticDataset", data_root=str(DATA / "coco_mini"), indices=3,
        data_prefix=dict(img_path=str(DATA / "coco_mini/images/val2017"),
                         seg_map_path=str(DATA / "coco_mini/semantic_masks/val2017")), pipeline=pipe)
    coco.test_dataloader = coco.val_dataloader
    coco.train_cfg = ConfigDict(type="IterBasedTrainLoop", max_iters=0, val_interval=1)
    runner = Runner.from_cfg(coco)
    ds = runner.val_dataloader.dataset
    assert len(ds.metainfo["classes"]) == 133 and len(ds) == 3
    sample = ds[0]["data_samples"].gt_sem_seg.data
    assert sample.max() <= 255 and set(sample.unique().tolist()) - {255} <= set(range(133))
    assert 0.0 <= runner.val()["mIoU"] <= 100.0


@pytest.mark.unit
def test_backbone_loads_a_pretraining_checkpoint_and_layer_decay_groups(tmp_path):
    from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    import beit2.mmseg  # noqa: F401
    from beit2.convert import official_from_pretrain
    from beit2.models import BeitV2ForMIM

    src = BeitV2ForMIM(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, vocab_size=8, early_layers=1,
                       head_layers=1)
    with torch.no_grad():
        src.rel_pos_bias.relative_position_bias_table.normal_()
    ck = tmp_path / "pt.pth"
    torch.save({"model": official_from_pretrain(src)}, ck)
    bb = MODELS.build(dict(type="BEiTv2ViT", img_size=64, embed_dim=32, depth=2, num_heads=2, out_indices=(0, 1),
                           pretrained=str(ck)))
    bb.init_weights()
    assert torch.equal(bb.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    # the 2x2 pretraining grid's table, re-gridded to 4x4: class rows unchanged
    t = bb.blocks[0].attn.rel_pos_bias.relative_position_bias_table
    assert t.shape == (7 * 7 + 3, 2) and torch.equal(t[-3:], src.rel_pos_bias.relative_position_bias_table[-3:])
    feats = bb(torch.randn(1, 3, 64, 64))
    assert [f.shape for f in feats] == [(1, 32, 4, 4)] * 2

    model = torch.nn.Module()
    model.backbone = bb
    model.decode_head = torch.nn.Linear(32, 3)
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="BEiTv2LayerDecayOptimizerConstructor",
        optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05)),
        paramwise_cfg=dict(num_layers=2, layer_decay_rate=0.5)))
    opt = ctor(model).optimizer
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(bb.patch_embed.proj.weight)] == 0.125
    assert lr_of[id(bb.blocks[1].attn.qkv.weight)] == 0.5
    assert lr_of[id(model.decode_head.weight)] == 1.0
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd_of[id(bb.cls_token)] == 0 and wd_of[id(bb.blocks[0].mlp.fc1.weight)] == 0.05
