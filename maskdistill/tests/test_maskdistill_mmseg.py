"""ADE20K UperNet through beit2's MMSegmentation plug-in, started from a MaskDistill checkpoint."""

from pathlib import Path

import pytest
import torch

mmseg = pytest.importorskip("mmseg")
from mmengine.config import Config  # noqa: E402

from vlcore.data import shared_data_root  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mmseg"
DATA = shared_data_root() / "ade20k_sceneparsing_sample"


@pytest.mark.config
@pytest.mark.parametrize("size,depth,out,lr,decay", [("base", 12, (3, 5, 7, 11), 5e-5, 0.75),
                                                     ("large", 24, (7, 11, 15, 23), 4e-5, 0.9)])
def test_configs_inherit_beit2s_plugin(size, depth, out, lr, decay):
    cfg = Config.fromfile(str(CONFIGS / f"upernet_maskdistill-{size}_8xb2-160k_ade20k-512x512.py"))
    assert cfg.custom_imports.imports == ["beit2.mmseg"] and cfg.model.backbone.type == "BEiTv2ViT"
    bb = cfg.model.backbone
    assert (bb.depth, tuple(bb.out_indices), bb.img_size, bb.patch_size) == (depth, out, 512, 16)
    assert cfg.optim_wrapper.constructor == "BEiTv2LayerDecayOptimizerConstructor"
    assert (cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.paramwise_cfg.layer_decay_rate) == (lr, decay)
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == depth
    assert cfg.train_cfg.max_iters == 160000 and cfg.crop_size == (512, 512)
    assert cfg.model.decode_head.num_classes == 150


def _tiny_maskdistill_checkpoint(path):
    """A MaskDistill pretraining model (2 blocks, width 32, patch 16, 32 px) saved as a run's model.safetensors."""
    from safetensors.torch import save_file

    from maskdistill.models import build_model

    torch.manual_seed(0)
    m = build_model("maskdistill_vit_base_patch16_224_pt", img_size=32, embed_dim=32, depth=2, num_heads=2,
                    target_dim=24)
    with torch.no_grad():
        m.rel_pos_bias.relative_position_bias_table.normal_()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return m


@pytest.mark.convert
def test_converter_drops_the_distillation_head_and_beit2_loads_it(tmp_path):
    from mmseg.registry import MODELS

    import beit2.mmseg  # noqa: F401
    from beit2.convert import detect_layout

    from maskdistill.convert import beit2_pretrain_state_dict, main

    src = _tiny_maskdistill_checkpoint(tmp_path / "model.safetensors")
    out = tmp_path / "pt.pth"
    assert main(["--input", str(tmp_path / "model.safetensors"), "--output", str(out)]) == 0
    sd = torch.load(out, weights_only=True)["model"]
    assert detect_layout(sd) == "pretrain" and not any(k.startswith("head_distill") for k in sd)
    assert sd["rel_pos_bias.relative_position_index"].shape == (5, 5)  # 2 x 2 grid + class token
    # the public re-implementation's wrapper: student.* next to teacher.*
    wrapped = {**{f"module.student.{k}": v for k, v in src.state_dict().items()}, "module.teacher.w": torch.ones(1)}
    sd2, dropped = beit2_pretrain_state_dict(wrapped)
    assert "module.teacher.w" in dropped and "head_distill.weight" in dropped
    assert set(sd2) == set(sd) and torch.equal(sd2["blocks.1.mlp.fc2.weight"], src.blocks[1].mlp.fc2.weight)
    for ck in (out, tmp_path / "model.safetensors"):  # converted, and our file as it is
        bb = MODELS.build(dict(type="BEiTv2ViT", img_size=64, embed_dim=32, depth=2, num_heads=2, out_indices=(0, 1),
                               pretrained=str(ck)))
        bb.init_weights()
        assert torch.equal(bb.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
        t = bb.blocks[0].attn.rel_pos_bias.relative_position_bias_table  # shared 2x2 table re-gridded to 4x4
        assert t.shape == (7 * 7 + 3, 2) and torch.equal(t[-3:], src.rel_pos_bias.relative_position_bias_table[-3:])


@pytest.mark.smoke
def test_upernet_trains_a_step_from_a_maskdistill_checkpoint_and_reports_miou(tmp_path, capsys):
    import json

    from beit2.mmseg.testing import small_upernet_config

    from maskdistill.convert import main as convert_main
    from maskdistill.segment import main as segment_main

    if not DATA.is_dir():
        pytest.skip("ADE20K sample not found")
    src = _tiny_maskdistill_checkpoint(tmp_path / "model.safetensors")
    assert convert_main(["--input", str(tmp_path / "model.safetensors"), "--output", str(tmp_path / "pt.pth")]) == 0
    cfg = Config.fromfile(str(CONFIGS / "upernet_maskdistill-base_8xb2-160k_ade20k-512x512.py"))
    cfg = small_upernet_config(cfg, tmp_path / "work", DATA)
    cfg.model.backbone.pretrained = str(tmp_path / "pt.pth")
    cfg.dump(str(tmp_path / "small.py"))
    capsys.readouterr()
    assert segment_main(["--config", str(tmp_path / "small.py")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= metrics["mIoU"] <= 100.0 and 0.0 <= metrics["aAcc"] <= 100.0
    last = Path((tmp_path / "work" / "last_checkpoint").read_text().strip())
    from vlcore.mmrun import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    ck = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    moved = ck["backbone.blocks.1.mlp.fc1.weight"]
    # started from the checkpoint, then one step moved it (a little: lr warm-up factor 1e-3)
    assert not torch.equal(moved, src.blocks[1].mlp.fc1.weight)
    assert (moved - src.blocks[1].mlp.fc1.weight).abs().max() < 1e-3
