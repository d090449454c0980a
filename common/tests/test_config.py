"""Typed configs: YAML presets with _base_, --set overrides, type checks and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from vlcore.config import ConfigError, add_config_args, config_from_args, config_to_dict, load_config, save_config

SCRIPTS = Path(__file__).parent / "scripts"


@dataclass(frozen=True)
class ModelCfg:
    depth: int = 2
    drop_path: float = 0.0
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    betas: tuple[float, float] = (0.9, 0.999)
    milestones: tuple[int, ...] = ()
    name: Optional[str] = None


@dataclass(frozen=True)
class OptimCfg:
    lr: float = 1e-3
    warmup: int = 0
    decay_layers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunCfg:
    model: ModelCfg = field(default_factory=ModelCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    seed: int = 0
    amp: bool = False
    note: Optional[str] = None


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.config
def test_defaults_and_frozen():
    cfg = load_config(RunCfg)
    assert cfg == RunCfg()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


@pytest.mark.config
def test_yaml_holds_only_differences_and_base_inherits(tmp_path):
    _write(tmp_path / "base" / "common.yaml", "model:\n  depth: 12\n  drop_path: 0.1\nseed: 7\n")
    child = _write(tmp_path / "presets" / "tiny.yaml",
                   "_base_: ../base/common.yaml\nmodel:\n  depth: 4\n  norm: rmsnorm\noptim:\n  lr: 2.0e-4\n")
    cfg = load_config(RunCfg, child)
    assert cfg.model.depth == 4  # child wins
    assert cfg.model.drop_path == 0.1  # inherited from the base
    assert cfg.model.norm == "rmsnorm"
    assert cfg.seed == 7
    assert cfg.optim.lr == 2e-4
    assert cfg.model.betas == (0.9, 0.999) and cfg.optim.warmup == 0  # untouched defaults

    # a list of bases: later bases win, the file itself wins over all of them
    _write(tmp_path / "a.yaml", "seed: 1\namp: true\n")
    _write(tmp_path / "b.yaml", "seed: 2\n")
    top = _write(tmp_path / "top.yaml", "_base_: [a.yaml, b.yaml]\nnote: hello\n")
    cfg = load_config(RunCfg, top)
    assert (cfg.seed, cfg.amp, cfg.note) == (2, True, "hello")


@pytest.mark.config
def test_overrides_parse_and_coerce(tmp_path):
    preset = _write(tmp_path / "p.yaml", "model:\n  depth: 6\n")
    cfg = load_config(RunCfg, preset, [
        "model.depth=8", "model.betas=[0.9, 0.98]", "model.milestones=[10,20,30]", "model.norm=rmsnorm",
        "model.name=null", "optim.lr=1e-3", "optim.warmup=5", "amp=true", "note=run 1", "model.drop_path=1",
        "optim.decay_layers=[blocks, head]",
    ])
    assert cfg.model.depth == 8
    assert cfg.model.betas == (0.9, 0.98) and isinstance(cfg.model.betas, tuple)
    assert cfg.model.milestones == (10, 20, 30)
    assert cfg.model.norm == "rmsnorm"
    assert cfg.model.name is None
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-3 as a string
    assert cfg.model.drop_path == 1.0 and isinstance(cfg.model.drop_path, float)  # int accepted for float
    assert cfg.amp is True and cfg.note == "run 1"
    assert cfg.optim.decay_layers == ["blocks", "head"]
    # a nested section given as a mapping in one --set
    cfg = load_config(RunCfg, None, ["model={depth: 3, norm: rmsnorm}"])
    assert (cfg.model.depth, cfg.model.norm, cfg.model.drop_path) == (3, "rmsnorm", 0.0)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.config
def test_unknown_key_in_yaml_names_key_file_and_suggestion(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "model:\n  dpeth: 4\n")
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, bad)
    msg = _one_line(e)
    assert "'model.dpeth'" in msg and str(bad.resolve()) in msg and "did you mean 'model.depth'" in msg

    # an error in a base file names the base file, not the child
    _write(tmp_path / "base.yaml", "sed: 1\n")
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, child)
    msg = _one_line(e)
    assert "base.yaml" in msg and "child.yaml" not in msg and "'sed'" in msg and "did you mean 'seed'" in msg


@pytest.mark.config
def test_unknown_key_in_set_names_key():
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, None, ["optim.lrr=0.1"])
    msg = _one_line(e)
    assert "'optim.lrr'" in msg and "did you mean 'optim.lr'" in msg and "--set" in msg
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, None, ["seed.value=1"])  # a scalar has no sub-keys
    assert "'seed.value'" in _one_line(e)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(RunCfg, None, ["seed"])


@pytest.mark.config
@pytest.mark.parametrize("override, key", [
    ("model.depth=abc", "model.depth"),
    ("model.depth=1.5", "model.depth"),
    ("model.depth=true", "model.depth"),  # bool is not an int here
    ("amp=1", "amp"),
    ("model.norm=batchnorm", "model.norm"),
    ("model.betas=[0.9]", "model.betas"),
    ("model.betas=[0.9, x]", "model.betas[1]"),
    ("optim.lr=fast", "optim.lr"),
    ("note=12", "note"),
    ("model=3", "model"),
])
def test_wrong_type_in_set_names_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, None, [override])
    assert f"'{key}'" in _one_line(e)


@pytest.mark.config
def test_wrong_type_in_yaml_names_key_and_file(tmp_path):
    bad = _write(tmp_path / "t.yaml", "model:\n  norm: layer_norm\n")
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, bad)
    msg = _one_line(e)
    assert "'model.norm'" in msg and "t.yaml" in msg and "'layernorm'" in msg
    bad = _write(tmp_path / "u.yaml", "optim:\n  warmup: [1, 2]\n")
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, bad)
    assert "'optim.warmup'" in _one_line(e)


@pytest.mark.config
def test_missing_file_cycle_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, tmp_path / "nope.yaml")
    assert "nope.yaml" in _one_line(e)
    _write(tmp_path / "x.yaml", "_base_: y.yaml\n")
    _write(tmp_path / "y.yaml", "_base_: x.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(RunCfg, tmp_path / "x.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, _write(tmp_path / "broken.yaml", "model: [1, 2\n"))
    assert "broken.yaml" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        load_config(RunCfg, _write(tmp_path / "missing_base.yaml", "_base_: gone.yaml\n"))
    assert "gone.yaml" in _one_line(e)


@pytest.mark.config
def test_save_config_round_trip(tmp_path):
    cfg = load_config(RunCfg, None,
                      ["model.betas=[0.8, 0.95]", "model.milestones=[3]", "note=x", "optim.decay_layers=[a]"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(RunCfg, path) == cfg
    assert config_to_dict(cfg)["model"]["betas"] == [0.8, 0.95]


@pytest.mark.config
def test_argparse_helper(tmp_path):
    import argparse

    preset = _write(tmp_path / "p.yaml", "seed: 5\n")
    p = add_config_args(argparse.ArgumentParser())
    args = p.parse_args(["--config", str(preset), "--set", "model.depth=3", "--set", "seed=6"])
    cfg = config_from_args(RunCfg, args)
    assert (cfg.seed, cfg.model.depth) == (6, 3)


@pytest.mark.config
def test_cli_typo_exits_nonzero_with_one_line():
    r = subprocess.run([sys.executable, str(SCRIPTS / "config_cli.py"), "--set", "model.dpth=3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "model.dpth" in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""


@pytest.mark.config
def test_cli_main_in_process(capsys, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_cli", SCRIPTS / "config_cli.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "config_cli", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    assert mod.main(["--set", "model.depth=5", "--set", "model.betas=[0.5, 0.6]"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["depth"] == 5 and out["model"]["betas"] == [0.5, 0.6]
    from vlcore.cli import run_cli

    with pytest.raises(SystemExit) as e:
        run_cli(mod.main, ["--set", "model.drop_path=lots"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.drop_path" in err[0]
