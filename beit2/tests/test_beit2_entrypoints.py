"""train / eval / verify entry points: the smoke presets chain VQ-KD -> MIM -> fine-tune / linear probe."""

import json

import pytest
import torch

from vlcore.checkpoint import load_weights
from vlcore.config import load_config

from beit2 import eval as beit2_eval
from beit2 import train, verify
from beit2.config import CONFIG_DIR, Config, resolve_config_path


@pytest.mark.config
def test_every_shipped_preset_loads_and_paper_presets_carry_the_recipe():
    presets = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(presets) >= 10
    cfgs = {p.stem: load_config(Config, p) for p in presets}
    base = cfgs["pretrain_base_1600e"]
    assert (base.train.lr, base.train.global_batch_size, base.train.clip_grad) == (1.5e-3, 2048, 3.0)
    assert (base.model.num_masking_patches, base.model.early_layers, base.model.layer_scale_init) == (75, 9, 0.1)
    assert cfgs["pretrain_base_300e"].train.betas == (0.9, 0.98)
    assert cfgs["pretrain_large_1600e"].model.early_layers == 21
    ft = cfgs["finetune_base_1600e"]
    assert (ft.train.lr, ft.train.layer_decay, ft.model.drop_path, ft.data.mixup) == (5e-4, 0.6, 0.2, 0.8)
    assert (cfgs["finetune_large_1600e"].train.layer_decay, cfgs["finetune_large_1600e"].train.lr) == (0.8, 2e-4)
    vq = cfgs["vqkd_base_clip"]
    assert (vq.vqkd.num_codes, vq.vqkd.code_dim, vq.train.lr, vq.train.betas) == (8192, 32, 2e-4, (0.9, 0.99))
    # every header says how to run it
    for p in presets:
        assert "python -m beit2." in p.read_text().split("\n\n")[0], p.name
    # a bare preset name resolves from any working directory
    assert resolve_config_path("smoke_vqkd") == str(CONFIG_DIR / "smoke_vqkd.yaml")


@pytest.mark.smoke
def test_smoke_chain_trains_every_task_and_evaluates(tmp_path):
    def run(preset, *sets):
        out = tmp_path / preset
        assert train.main(["--config", preset, "--set", f"train.out_dir={out}", *[f"--set={s}" for s in sets]]) == 0
        return out / "ckpt" / "step_000002" / "model.safetensors"

    tok = run("smoke_vqkd")
    assert "quantize.embedding.weight" in load_weights(tok)
    pt = run("smoke_pretrain", f"model.tokenizer_weights={tok}")
    assert "lm_head.weight" in load_weights(pt) and "cls_pt_layers.0.gamma_1" in load_weights(pt)
    ft = run("smoke_finetune", f"model.init_checkpoint={pt}")
    ft_sd = load_weights(ft)
    assert "blocks.0.attn.rel_pos_bias.relative_position_bias_table" in ft_sd and "head.weight" in ft_sd
    lp = run("smoke_linprobe", f"model.init_checkpoint={pt}")
    lp_sd = load_weights(lp)
    pt_sd = load_weights(pt)
    # the probe trains only its head: the backbone is the pretrained one, untouched
    assert torch.equal(lp_sd["backbone.blocks.1.mlp.fc2.weight"], pt_sd["blocks.1.mlp.fc2.weight"])
    metrics = [json.loads(l) for l in (tmp_path / "smoke_pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert {"mlm_acc", "loss_agg"} <= set(metrics[-1])


@pytest.mark.smoke
def test_eval_reports_top1_and_codebook_usage(tmp_path, capsys):
    out = tmp_path / "ft"
    assert train.main(["--config", "smoke_finetune", "--set", f"train.out_dir={out}"]) == 0
    assert beit2_eval.main(["--config", "smoke_finetune", "--checkpoint", str(out), "--set", "data.limit=32"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["images"] == 32 and 0 <= res["top1"] <= res["top5"] <= 100
    tok = tmp_path / "tok"
    assert train.main(["--config", "smoke_vqkd", "--set", f"train.out_dir={tok}"]) == 0
    assert beit2_eval.main(["--config", "smoke_vqkd", "--checkpoint", str(tok), "--set", "data.limit=16"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["assignments"] == 16 * 16 and 1 <= res["used"] <= 32


@pytest.mark.smoke
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from vlcore.cli import run_cli

    monkeypatch.chdir(tmp_path)  # presets are found from any working directory
    cases = [
        (train.main, ["--config", "smoke_vqkd", "--set", "model.dpeth=3"], "unknown key 'model.dpeth'"),
        (train.main, ["--config", "smoke_pretrain"], "needs a trained tokenizer"),
        (verify.main, ["--checkpoint", "ade20k_base_pt1k", "--data", str(tmp_path)], "cannot download"),
    ]
    for main, argv, message in cases:
        with pytest.raises(SystemExit) as e:
            run_cli(main, argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.convert
def test_results_yaml_lists_every_headline(tmp_path):
    from vlcore.verify import load_results

    heads = {h.id: h for h in load_results(verify.RESULTS)}
    assert {h.paper_value for h in heads.values()} >= {85.5, 86.5, 87.3, 88.4, 80.1, 53.1, 56.7, 97.0}
    assert all(h.ours in ("converted", "trained", "pending") for h in heads.values())
    assert all(h.checkpoint.get("url", "").endswith(".pth") for h in heads.values())


@pytest.mark.convert
def test_verify_evaluates_a_local_classifier_on_an_image_folder(tmp_path, capsys):
    from PIL import Image
    from timm.models.beit import Beit as TimmBeit

    for c in ("a", "b"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), (60 * i, 100, 200 if c == "a" else 0)).save(tmp_path / "val" / c / f"{i}.png")
    ref = TimmBeit(img_size=224, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=2,
                   use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1)
    ck = tmp_path / "tiny_ft.pth"
    torch.save({"model": ref.state_dict()}, ck)
    assert verify.main(["--checkpoint", str(ck), "--data", str(tmp_path), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "tiny_ft.pth: metric = " in out and "nothing to compare" in out
