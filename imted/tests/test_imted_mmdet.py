"""The plug-in through mmengine's Runner: configs build, one training step, COCO evaluation on coco_mini."""

import pytest
import torch

from vlcore.data.paths import shared_data_root

CONFIGS = {
    "faster": ("imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py", ["bbox"]),
    "mask": ("imted_mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py", ["bbox", "segm"]),
}


@pytest.mark.smoke
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_config_trains_one_step_and_evaluates_on_coco_mini(kind, tmp_path):
    if not (shared_data_root() / "coco_mini" / "annotations").is_dir():
        pytest.skip("coco_mini not available")
    from imted.engine import build_runner

    cfg, metrics = CONFIGS[kind]
    runner = build_runner(cfg, [], str(tmp_path))
    model = runner.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    runner.train()
    after = dict(model.named_parameters())
    changed = [n for n in before if not torch.equal(before[n], after[n].detach())]
    # The step reaches the backbone, the pyramid path and the decoder head (and the mask head).
    for prefix in ("backbone.blocks.0.", "neck.", "rpn_head.", "roi_head.bbox_head.decoder_blocks.0.",
                   "roi_head.bbox_head.fc_cls", "roi_head.mfm_factor") + (("roi_head.mask_head.",) if kind == "mask" else ()):
        assert any(n.startswith(prefix) for n in changed), prefix
    res = runner.test()
    for m in metrics:
        v = res[f"coco/{m}_mAP"]
        assert 0.0 <= v <= 1.0
        assert f"coco/{m}_mAP_50" in res


@pytest.mark.unit
def test_layer_decay_groups_follow_the_recipe():
    from mmengine.optim import build_optim_wrapper

    from imted.testing import tiny_detector

    model = tiny_detector()
    cfg = dict(type="OptimWrapper", constructor="ImTEDLayerDecayConstructor",
               optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
               paramwise_cfg=dict(num_layers=2, layer_decay_rate=0.75))
    from mmdet.registry import OPTIM_WRAPPERS  # noqa: F401  (mmdet scope)

    ow = build_optim_wrapper(model, cfg)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in ow.optimizer.param_groups for p in g["params"]}
    p = dict(model.named_parameters())
    assert lr_of[id(p["backbone.patch_embed.proj.weight"])] == pytest.approx((1e-4 * 0.75 ** 3, 0.05))
    assert lr_of[id(p["backbone.blocks.1.attn.qkv.weight"])] == pytest.approx((1e-4 * 0.75, 0.05))
    assert lr_of[id(p["backbone.blocks.1.attn.qkv.bias"])] == pytest.approx((1e-4 * 0.75, 0.0))
    assert lr_of[id(p["backbone.pos_embed"])][1] == 0.0
    assert lr_of[id(p["roi_head.bbox_head.decoder_blocks.0.mlp.fc1.weight"])] == pytest.approx((1e-4, 0.05))

    # Few-shot fine-tuning: backbone out of the optimizer and frozen; the decoder decayed instead.
    model = tiny_detector()
    cfg["paramwise_cfg"] = dict(freeze_backbone=True, decoder_decay=True, decoder_depth=1, layer_decay_rate=0.8)
    ow = build_optim_wrapper(model, cfg)
    lr_of = {id(p): g["lr"] for g in ow.optimizer.param_groups for p in g["params"]}
    p = dict(model.named_parameters())
    assert not any(id(v) in lr_of for n, v in p.items() if n.startswith("backbone."))
    assert not any(v.requires_grad for n, v in p.items() if n.startswith("backbone."))
    assert lr_of[id(p["roi_head.bbox_head.decoder_embed.weight"])] == pytest.approx(1e-4 * 0.8 ** 2)
    assert lr_of[id(p["roi_head.bbox_head.decoder_blocks.0.attn.qkv.weight"])] == pytest.approx(1e-4 * 0.8)
    assert lr_of[id(p["roi_head.bbox_head.fc_cls.weight"])] == pytest.approx(1e-4)
