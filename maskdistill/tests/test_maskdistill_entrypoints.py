"""train / eval entry points: presets load; the smoke presets chain pretrain -> fine-tune / linear probe -> eval."""

import json

import pytest
import torch

from vlcore.checkpoint import load_weights
from vlcore.config import load_config
from vlcore.errors import UserError

from maskdistill import eval as md_eval
from maskdistill import train
from maskdistill.config import CONFIG_DIR, Config, resolve_config_path


@pytest.mark.config
def test_every_shipped_preset_loads_and_paper_presets_carry_the_recipe():
    presets = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(presets) >= 8
    cfgs = {p.stem: load_config(Config, p) for p in presets}
    base = cfgs["pretrain_base_300e"]
    assert (base.train.lr, base.train.global_batch_size, base.train.clip_grad, base.train.epochs) == (1.5e-3, 2048,
                                                                                                     3.0, 300)
    assert (base.model.mask_ratio, base.objective.preset, base.objective.beta) == (0.4, "maskdistill", 1.0)
    assert (base.teacher.name, base.teacher.tensor) == ("clip_vit_base_patch16", "last_hidden")
    assert cfgs["pretrain_huge_300e"].teacher.name == "clip_vit_large_patch14"
    assert cfgs["pretrain_huge_300e"].model.name == "maskdistill_vit_huge_patch14_224_pt"
    ft = cfgs["finetune_base"]
    assert (ft.train.lr, ft.train.layer_decay, ft.train.epochs) == (5e-4, 0.65, 100)
    for p in presets:
        assert "python -m maskdistill." in p.read_text().split("\ntask")[0].split("\n_base_")[0], p.name
    assert resolve_config_path("smoke_pretrain") == str(CONFIG_DIR / "smoke_pretrain.yaml")
    with pytest.raises(Exception):
        load_config(Config, CONFIG_DIR / "smoke_pretrain.yaml", ["objective.nonsense=1"])


@pytest.mark.config
def test_real_teachers_need_a_local_path_and_the_grid_rule():
    cfg = load_config(Config, CONFIG_DIR / "pretrain_huge_300e.yaml")
    with pytest.raises(UserError, match="teacher.path"):
        train.build_teacher(cfg)
    assert train.teacher_name(load_config(Config, CONFIG_DIR / "pretrain_large_300e.yaml",
                                          ["teacher.name=auto"])) == "clip_vit_base_patch16"


@pytest.mark.smoke
def test_smoke_chain_trains_every_task_and_evaluates(tmp_path, capsys):
    def run(preset, *sets, task=None):
        out = tmp_path / (task or preset)
        extra = ["--task", task] if task else []
        assert train.main(["--config", preset, "--set", f"train.out_dir={out}", *extra,
                           *[f"--set={s}" for s in sets]]) == 0
        return out / "ckpt" / "step_000002" / "model.safetensors"

    pt = run("smoke_pretrain")
    pt_sd = load_weights(pt)
    assert pt_sd["head_distill.weight"].shape == (32, 32) and "mask_token" in pt_sd
    assert "rel_pos_bias.relative_position_bias_table" in pt_sd
    ft = run("smoke_finetune", f"model.init_checkpoint={pt}")
    ft_sd = load_weights(ft)
    assert "blocks.0.attn.rel_pos_bias.relative_position_bias_table" in ft_sd and "head_distill.weight" not in ft_sd
    lp = run("smoke_finetune", f"model.init_checkpoint={pt}", task="linprobe")
    lp_sd = load_weights(lp)
    assert torch.equal(lp_sd["backbone.blocks.1.mlp.fc2.weight"], pt_sd["blocks.1.mlp.fc2.weight"])
    capsys.readouterr()
    assert md_eval.main(["--config", "smoke_finetune", "--checkpoint", str(tmp_path / "smoke_finetune"),
                         "--set", "data.limit=32"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["images"] == 32 and 0 <= res["top1"] <= res["top5"] <= 100
    assert md_eval.main(["--config", "smoke_linprobe", "--checkpoint", str(tmp_path / "linprobe"),
                         "--set", "data.limit=16"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["task"] == "linprobe" and res["images"] == 16


@pytest.mark.smoke
@pytest.mark.parametrize("preset", ["mae", "maskfeat", "data2vec"])
def test_other_unified_view_presets_pretrain(tmp_path, preset):
    out = tmp_path / preset
    assert train.main(["--config", "smoke_pretrain", "--set", f"train.out_dir={out}",
                       "--set", f"objective.preset={preset}", "--set", "objective.top_k=1"]) == 0
    sd = load_weights(out / "ckpt" / "step_000002" / "model.safetensors")
    width = {"mae": 192, "maskfeat": 3 * 2 * 2 * 9, "data2vec": 32}[preset]  # HOG: 2x2 cells of 4 px, 9 bins
    assert sd["head_distill.weight"].shape == (width, 32)
