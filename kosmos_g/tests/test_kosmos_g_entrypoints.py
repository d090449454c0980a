import json
import subprocess
import sys

import pytest

from vlcore.config import ConfigError, load_config

from kosmos_g.config import CONFIG_DIR, TrainConfig, resolve_config_path


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.config
def test_presets_load_and_carry_the_card_recipes():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"stage2_align", "stage3_instruct", "mini_align", "mini_instruct", "smoke_align", "smoke_instruct"} <= set(names)
    for n in names:
        load_config(TrainConfig, resolve_config_path(n))
    s2 = load_config(TrainConfig, resolve_config_path("stage2_align"))
    assert (s2.batch_size, s2.steps, s2.optim.lr, s2.optim.warmup_steps) == (3584, 300000, 1e-3, 375)
    s3 = load_config(TrainConfig, resolve_config_path("stage3_instruct"))
    assert (s3.batch_size, s3.steps, s3.cfg_drop, s3.optim.betas) == (1024, 200000, 0.1, (0.9, 0.98))
    with pytest.raises(ConfigError, match="nope"):
        load_config(TrainConfig, resolve_config_path("smoke_align"), ["optim.nope=1"])


@pytest.mark.smoke
@pytest.mark.slow
def test_train_eval_sample_smoke_from_any_directory(tmp_path):
    a, i = tmp_path / "a", tmp_path / "i"
    r = _run(["kosmos_g.train", "--config", "smoke_align", "--set", f"out_dir={a}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(["kosmos_g.train", "--config", "smoke_instruct", "--set", f"out_dir={i}",
              "--set", f"init={a / 'checkpoint.pt'}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((i / "metrics.json").read_text())
    assert m["unet_unchanged"] is True and m["stage"] == "instruct"
    r = _run(["kosmos_g.eval", "--checkpoint", str(i / "checkpoint.pt"), "--samples", "8", "--steps", "2",
              "--judge-steps", "5", "--out", str(tmp_path / "ev.json")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert 0 <= ev["colour"] <= 1 and ev["fid_judge_features"] >= 0
    r = _run(["kosmos_g.sample", "--checkpoint", str(i / "checkpoint.pt"), "--out", str(tmp_path / "s.png"),
              "--num", "2", "--steps", "2"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "s.png").stat().st_size > 100


@pytest.mark.smoke
def test_user_errors_are_one_line(tmp_path):
    r = _run(["kosmos_g.train", "--config", "smoke_align", "--set", "bogus=1"], tmp_path)
    assert r.returncode != 0 and "unknown key 'bogus'" in r.stderr and "Traceback" not in r.stderr
    r = _run(["kosmos_g.train", "--config", "stage2_align"], tmp_path)
    assert r.returncode != 0 and "does not ship" in r.stderr and "Traceback" not in r.stderr
    r = _run(["kosmos_g.train", "--config", "smoke_instruct", "--set", f"init={tmp_path / 'none.pt'}"], tmp_path)
    assert r.returncode != 0 and "checkpoint not found" in r.stderr
