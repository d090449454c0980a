"""kosmos2.train: presets load, smoke runs write checkpoints, the vision tower stays frozen, resume is exact."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlcore.config import ConfigError, load_config

from kosmos2.config import CONFIG_DIR, Config, resolve_config_path
from kosmos2.mini import Vocab
from kosmos2.train import build_model_from_config, main

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.config
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_builds(name):
    cfg = load_config(Config, resolve_config_path(name))
    with torch.device("meta"):
        model = build_model_from_config(cfg, Vocab(cfg.data.num_bins))
    frozen = not any(p.requires_grad for p in model.vision.parameters())
    assert frozen == cfg.model.freeze_vision
    if name.endswith("patch14_224"):
        assert cfg.train.lr == (2e-4 if name.startswith("pretrain") else 1e-5)
        assert cfg.train.warmup_steps == 375 and cfg.train.betas == (0.9, 0.98) and cfg.train.clip_grad == 2.0
        assert cfg.train.total_steps == (60000 if name.startswith("pretrain") else 10000)


@pytest.mark.config
def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="modell|model"):
        load_config(Config, resolve_config_path("smoke_pretrain"), ["model.freez_vision=true"])


def _run(out: Path, *extra: str) -> None:
    assert main(["--config", "smoke_pretrain", "--set", f"train.out_dir={out}", *(f"--set={e}" for e in extra)]) == 0


@pytest.mark.smoke
def test_smoke_pretrain_trains_the_lm_and_keeps_vision_frozen(tmp_path):
    _run(tmp_path / "a")
    s1 = load_file(tmp_path / "a/ckpt/step_000001/model.safetensors")
    s2 = load_file(tmp_path / "a/ckpt/step_000002/model.safetensors")
    assert (tmp_path / "a/config.yaml").is_file() and (tmp_path / "a/metrics.jsonl").is_file()
    vision = [k for k in s1 if k.startswith("vision.")]
    assert vision and all(torch.equal(s1[k], s2[k]) for k in vision)
    assert not torch.equal(s1["decoder.blocks.0.attn.qkv.weight"], s2["decoder.blocks.0.attn.qkv.weight"])
    assert not torch.equal(s1["connector.latent_query"], s2["connector.latent_query"])


@pytest.mark.smoke
def test_resume_continues_bit_identically(tmp_path):
    _run(tmp_path / "full")
    _run(tmp_path / "part", "train.stop_at_step=1")
    _run(tmp_path / "part", "train.resume=auto")
    a = load_file(tmp_path / "full/ckpt/step_000002/model.safetensors")
    b = load_file(tmp_path / "part/ckpt/step_000002/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
