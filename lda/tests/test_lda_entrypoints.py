"""Entry points: train / eval / verify / models / convert / repro run and write their outputs; bad input exits 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lda.config import CONFIG_DIR, LDATrainConfig, resolve_config_path
from vlcore.config import ConfigError, load_config
from vlcore.data.paths import shared_data_root

HAS_CIFAR = (shared_data_root() / "cifar10" / "cifar10_subset.npz").is_file()
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


@pytest.mark.config
@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_preset_loads_and_builds_its_model(preset):
    from lda.engine.trainer import build_model

    cfg = load_config(LDATrainConfig, resolve_config_path(preset))
    with torch.device("meta"):
        m = build_model(cfg)
    assert (m.head_u is not None) == (cfg.method == "lda")
    wants_neck = cfg.method == "lda" and cfg.lda.dist_weight > 0
    assert (m.neck is not None) == wants_neck
    assert Path(CONFIG_DIR / f"{preset}.yaml").read_text().startswith("#")  # a header saying how to run it


@pytest.mark.config
def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        load_config(LDATrainConfig, resolve_config_path("cifar10_lt_smoke"), ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="'method' must be one of"):
        load_config(LDATrainConfig, None, ["method=lad"])


@pytest.mark.smoke
@pytest.mark.skipif(not HAS_CIFAR, reason="shared CIFAR-10 subset not present")
def test_train_then_eval_from_another_directory(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lda.train", "--config", "cifar10_lt_smoke", "--set", f"out_dir={out}",
           "--set", "threads=1"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert set(res["metrics"]) == {"overall", "many", "medium", "few"} and res["steps"] == 9
    assert (out / "metrics.jsonl").is_file() and (out / "run_info.json").is_file() and (out / "config.yaml").is_file()
    from lda.eval import main as eval_main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert eval_main(["--config", "cifar10_lt_smoke", "--checkpoint", str(out), "--json"]) == 0
    ev = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert ev["overall"] == pytest.approx(res["metrics"]["overall"])  # the same weights, the same test set



@pytest.mark.smoke
def test_bad_input_exits_2_with_one_line(capsys, tmp_path):
    from lda.eval import main as eval_main
    from lda.train import main as train_main
    from vlcore.cli import run_cli

    for main, argv, needle in (
        (train_main, ["--config", "cifar10_lt_smoke", "--set", "optim.lrr=1"], "optim.lrr"),
        (train_main, ["--config", "no_such_preset"], "no_such_preset"),
        (eval_main, ["--config", "cifar10_lt_smoke", "--checkpoint", str(tmp_path / "none")], "checkpoint not found"),
    ):
        with pytest.raises(SystemExit) as e:
            run_cli(main, argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and needle in err, err


@pytest.mark.smoke
@pytest.mark.skipif(not HAS_CIFAR, reason="shared CIFAR-10 subset not present")
def test_verify_evaluates_an_official_layout_checkpoint(tmp_path, capsys):
    import numpy as np

    from lda.convert import ours_to_official
    from lda.models import REGISTRY
    from lda.verify import main as verify_main

    m = REGISTRY.build("lda_bbn_resnet32_cifar10_lt")
    torch.save({"state_dict": ours_to_official(m.state_dict()), "epoch": 200, "best_result": np.float64(0.1)},
               tmp_path / "best_model.pth")
    code = verify_main(["--checkpoint", str(tmp_path / "best_model.pth"), "--data", str(shared_data_root()),
                        "--limit", "40"])
    out = capsys.readouterr().out
    assert code == 0 and "cifar10_lt (lda_bbn_resnet32_cifar10_lt)" in out and "on 40 images" in out
    assert "no expected value recorded" in out


@pytest.mark.smoke
def test_repro_smoke_writes_every_arm(tmp_path):
    from lda.repro import main as repro_main

    code = repro_main(["--out", str(tmp_path), "--seeds", "1", "--epochs", "1", "--workers", "1",
                       "--data-root", str(tmp_path / "no_data")])  # no shared data: the generated set stands in
    r = json.loads((tmp_path / "lda.json").read_text())
    assert code in (0, 1) and r["holds"] == (code == 0)
    assert r["data"].startswith("generated:")
    arms = r["extra"]["0"]["arms"]
    assert set(arms) == {"ce", "reweight", "lda"}
    assert {"overall", "many", "medium", "few", "wall_s"} <= set(arms["lda"]) and "alpha_mean" in arms["lda"]
    assert r["summary"]["best_baseline"] in ("ce", "reweight") and (tmp_path / "lda.png").stat().st_size > 5000
