"""Configs and train / eval / verify entry points: every smoke preset runs 2 CPU steps and writes its outputs."""

import json
import math
import subprocess
import sys

import pytest
import torch

from vlcore.config import ConfigError
from vlcore.errors import UserError

from beit3.config import CONFIG_DIR
from beit3.engine import Task, layer_id, param_groups
from beit3.models import (
    BEiT3,
    BEiT3ForCaptioning,
    BEiT3ForImageClassification,
    BEiT3ForNLVR2,
    BEiT3ForRetrieval,
    BEiT3ForVQA,
    BEiT3Pretrain,
)
from beit3.testing import TINY
from beit3.train import load_beit3_config
from beit3.train import main as train_main

METRIC = {"pretrain": "mim_loss", "vqa": "vqa_score", "nlvr2": "acc", "retrieval": "tr@1", "captioning": "bleu4",
          "imagenet": "top1"}


@pytest.mark.config
@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_preset_loads(preset):
    cfg = load_beit3_config(preset)
    assert cfg.task in METRIC
    if not preset.startswith("smoke"):
        assert cfg.train.precision == "bf16" and cfg.model.vocab_size == 64010


@pytest.mark.config
def test_paper_hyperparameters_in_presets():
    pre = load_beit3_config("pretrain_base_patch16_224")
    m, t = pre.mdm, pre.train
    assert (m.image_mask_ratio, m.text_mask_ratio, m.pair_text_mask_ratio) == (0.4, 0.15, 0.5)
    assert m.num_visual_tokens == 8192 and m.visual_tokenizer == "vqkd"
    assert (t.total_steps, t.global_batch_size, t.lr, t.warmup_steps) == (1_000_000, 2048, 1e-3, 10_000)
    assert tuple(t.betas) == (0.9, 0.98) and t.eps == 1e-6 and t.weight_decay == 0.05
    giant = load_beit3_config("pretrain_giant_patch14_224").model
    assert (giant.depth, giant.embed_dim, giant.patch_size, giant.multiway, giant.vl_layers) == (40, 1408, 14, "shared_attention", 3)
    assert round(giant.embed_dim * giant.mlp_ratio) == 6144
    vqa = load_beit3_config("finetune_vqa_base_480")
    assert (vqa.finetune.head_lr_weight, vqa.train.lr, vqa.train.global_batch_size, vqa.model.img_size) == (20.0, 3e-5, 128, 480)
    assert load_beit3_config("finetune_imagenet_large_224").train.layer_decay == 0.8
    assert load_beit3_config("finetune_captioning_base_480").finetune.caption_mask_prob == 0.7


@pytest.mark.config
def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError):
        load_beit3_config("smoke_vqa", ["train.no_such_key=1"])
    with pytest.raises(ConfigError):
        load_beit3_config("smoke_vqa", ["task=segmentation"])


@pytest.mark.unit
@pytest.mark.parametrize("cls", [BEiT3Pretrain, BEiT3ForRetrieval, BEiT3ForVQA, BEiT3ForNLVR2, BEiT3ForCaptioning,
                                 BEiT3ForImageClassification])
def test_task_models_keep_the_magneto_gain(cls):
    """The trap: a wrapper that re-initialises after the gain loses it. Our heads leave the backbone alone."""
    kw = dict(TINY, embed_dim=256, depth=6, num_heads=4, img_size=32, patch_size=16)
    torch.manual_seed(0)
    ref = BEiT3(**kw)
    torch.manual_seed(0)
    model = cls(**kw)
    own = dict(model.beit3.named_parameters())
    for name, p in ref.named_parameters():
        if name in own:
            assert torch.equal(own[name], p), name  # same draws, nothing re-initialised after the gain
    g = math.sqrt(math.log(12))
    fc1 = torch.cat([p.flatten() for n, p in model.beit3.named_parameters() if ".fc1." in n and n.endswith("weight")])
    q = torch.cat([p.flatten() for n, p in model.beit3.named_parameters() if ".qkv." in n and n.endswith("weight")])
    assert fc1.std().item() == pytest.approx(0.02 * g, rel=0.03)  # timm trunc_normal_ cuts at +-2 (absolute): std 0.02
    # q/k rows unscaled, v rows scaled: overall between the two
    assert 0.02 * 1.05 < q.std().item() < 0.02 * g * 0.95


@pytest.mark.unit
def test_layer_ids_and_vqa_head_lr():
    assert layer_id("beit3.text_embed.weight", 12) == 0
    assert layer_id("beit3.pos_embed_image.weight", 12) == 0
    assert layer_id("beit3.cls_token", 12) == 0
    assert layer_id("beit3.encoder.blocks.3.mlp.A.fc1.weight", 12) == 4
    assert layer_id("head.0.weight", 12) == 13 and layer_id("pooler.dense.weight", 12) == 13
    cfg = load_beit3_config("smoke_vqa", ["train.layer_decay=0.5"])
    model = BEiT3ForVQA(**dict(TINY, depth=cfg.model.depth), num_answers=3)
    scale = {n: g["lr_scale"] for g in param_groups(model, cfg) for n in g["param_names"]}
    assert scale["head.0.weight"] == pytest.approx(20.0) and scale["pooler.dense.weight"] == pytest.approx(1.0)
    assert scale["beit3.text_embed.weight"] == pytest.approx(0.5**3)  # L + 1 - 0 with L = 2
    assert len(scale) == sum(1 for _ in model.parameters())


@pytest.mark.smoke
@pytest.mark.parametrize("task", sorted(METRIC))
def test_smoke_preset_trains_and_writes_outputs(task, tmp_path):
    out = tmp_path / task
    assert train_main(["--config", f"smoke_{task}", "--set", f"train.out_dir={out}"]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["steps"] == 2 and math.isfinite(res["last_loss"])
    assert METRIC[task] in res and math.isfinite(res[METRIC[task]])
    assert (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file()
    assert res["weights"].endswith("model.safetensors")


@pytest.mark.smoke
def test_pretrain_then_finetune_and_eval(tmp_path):
    """MDM checkpoint initialises the VQA backbone (only the heads stay fresh); eval CLI reproduces eval.json."""
    from safetensors.torch import load_file

    from beit3.eval import evaluate_checkpoint

    pre = tmp_path / "pre"
    train_main(["--config", "smoke_pretrain", "--set", f"train.out_dir={pre}"])
    ft = tmp_path / "vqa"
    train_main(["--config", "smoke_vqa", "--set", f"train.out_dir={ft}", "--set", f"finetune.init_checkpoint={pre}"])
    res = json.loads((ft / "eval.json").read_text())
    assert res["left_at_init"] and all(k.startswith(("pooler.", "head.")) for k in res["left_at_init"])
    cfg = load_beit3_config("smoke_vqa")
    task = Task(cfg)
    model = task.build_model()
    task.load_init(model, str(pre))
    pre_sd = load_file(json.loads((pre / "eval.json").read_text())["weights"])
    assert torch.equal(model.beit3.text_embed.weight, pre_sd["beit3.text_embed.weight"])
    metrics = evaluate_checkpoint(cfg, str(ft))
    assert metrics["vqa_score"] == pytest.approx(res["vqa_score"])


@pytest.mark.smoke
def test_eval_refuses_checkpoint_without_head(tmp_path):
    from beit3.eval import evaluate_checkpoint

    pre = tmp_path / "pre"
    train_main(["--config", "smoke_pretrain", "--set", f"train.out_dir={pre}"])
    with pytest.raises(UserError, match="no imagenet head"):
        evaluate_checkpoint(load_beit3_config("smoke_imagenet"), str(pre))


@pytest.mark.smoke
def test_missing_data_files_and_bad_verify_input(tmp_path):
    with pytest.raises(UserError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        train_main(["--config", "finetune_vqa_base_480", "--set", f"data.root={tmp_path / 'vqav2'}"])
    ck = tmp_path / "beit3_base_patch16_224_in1k.pth"
    ck.write_bytes(b"x")
    out = subprocess.run([sys.executable, "-m", "beit3.verify", "--checkpoint", str(ck), "--data", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error:") and len(out.stderr.strip().splitlines()) == 1
