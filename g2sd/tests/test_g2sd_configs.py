"""Every shipped YAML preset loads (typed, unknown keys refused) and builds its models."""

from pathlib import Path

import pytest
import torch

from g2sd.config import CONFIG_DIR
from g2sd.repro import load_mini_config
from g2sd.train import load_g2sd_config

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.config
@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_builds(name):
    from g2sd.engine.stages import build_mae_model, build_student_mae, build_vit

    if name.startswith("repro_"):
        mc = load_mini_config(str(CONFIG_DIR / f"{name}.yaml"))
        assert mc.student.embed_dim < mc.teacher.embed_dim and 1 <= mc.layer_index <= mc.teacher.decoder_depth
        return
    cfg = load_g2sd_config(name)
    with torch.device("meta"):  # paper sizes allocate nothing
        if cfg.stage == "mae_pretrain":
            m = build_mae_model(cfg.model)
        elif cfg.stage == "gd":
            m = build_student_mae(cfg)
            t = build_mae_model(cfg.teacher)
            assert m.decoderfeature_pred.fc2.out_features == t.decoder_embed_dim  # predictor width = teacher decoder
            assert 1 <= cfg.gd.layer_index <= len(t.decoder_blocks)
        else:
            m = build_vit(cfg.model, cfg.data.num_classes, distilled=cfg.stage == "sd")
    assert sum(p.numel() for p in m.parameters()) > 0
    if name.endswith("_in1k"):
        assert cfg.data.dataset == "imagefolder" and cfg.train.global_batch_size in (1024, 4096)


@pytest.mark.config
def test_paper_recipes_carry_the_official_hyperparameters():
    gd = load_g2sd_config("gd_vit-s_b2s_in1k")
    assert (gd.train.epochs, gd.train.global_batch_size, gd.train.blr, gd.train.betas) == (300, 4096, 1.5e-4, (0.9, 0.95))
    assert (gd.gd.layer_index, gd.gd.beta, gd.gd.supervise_all, gd.gd.encoder_loss_weight) == (4, 2.0, True, 0.0)
    sd = load_g2sd_config("sd_vit-s_b2s_in1k")
    assert (sd.train.epochs, sd.train.global_batch_size, sd.train.blr, sd.train.layer_decay) == (200, 1024, 1e-3, 0.75)
    assert (sd.cls.mixup, sd.cls.cutmix, sd.cls.label_smoothing, sd.model.drop_path_rate) == (0.8, 1.0, 0.1, 0.0)
    assert sd.teacher.global_pool == "avg" and sd.model.global_pool == "token"
    assert Path(gd.teacher_checkpoint).name == "mae_pretrain_vit_base_full.pth"  # the file with the decoder
