"""Ranks from the environment, and a 2-process torchrun run equal to one process on the same global batch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlcore import dist
from vlcore.checkpoint import load_weights
from vlcore.config import load_config
from vlcore.runinfo import read_metrics
from vlcore.train import TrainConfig, Trainer

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
# Global batch 8 on 2 processes x 2 per device x 2 accumulation steps, against 1 process x 2 x 4.
SETTINGS = ["total_steps=10", "global_batch_size=8", "lr=1e-2", "warmup_steps=2", "min_lr=1e-3", "clip_grad=0.5",
            "ema_decay=0.8", "layer_decay=0.8", "weight_decay=0.05", "ckpt_interval=5", "log_interval=1",
            "device=cpu", "seed=1"]


@pytest.mark.unit
def test_ranks_come_from_the_environment(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank(), dist.is_main_process()) == (0, 1, 0, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank(), dist.is_main_process()) == (3, 4, 1, False)
    x = torch.tensor([1.0, 2.0])
    y = dist.all_reduce_mean(x)  # no process group: the identity, on a copy
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    dist.barrier()  # a no-op without a process group


def _tiny():
    spec = importlib.util.spec_from_file_location("train_tiny", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_tiny", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """The reference: one process, the same global batch of 8 as 1 x 2 per device x 4 accumulation steps."""
    out = tmp_path_factory.mktemp("one")
    cfg = load_config(TrainConfig, None, [*SETTINGS, "per_device_batch_size=2", f"out_dir={out}"])
    model, data, step_fn = _tiny().build(dropout=0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Trainer(model, step_fn, data, cfg).fit()
    finally:
        torch.set_num_threads(before)


def _torchrun(*settings: str) -> dict:
    """A 2-process CPU (gloo) run of the tiny script; its summary."""
    assert TORCHRUN.exists(), TORCHRUN
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(SCRIPT), "--dropout", "0"]
    for s in settings:
        cmd += ["--set", s]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.smoke
@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path, one):
    two = _torchrun(*SETTINGS, "per_device_batch_size=2", f"out_dir={tmp_path / 'two'}")
    assert two["grad_accum"] == 2 and two["final_step"] == 10
    assert "2 processes x 2 per device x 2 accumulation" in (tmp_path / "two" / "train.log").read_text()
    assert sorted(p.name for p in (tmp_path / "two" / "ckpt" / "step_000010").glob("rng_rank*.pt")) == \
        ["rng_rank0.pt", "rng_rank1.pt"]

    assert one.grad_accum == 4

    for key in ("weights_path", "ema_weights_path"):
        wa, wb = load_weights(two[key]), load_weights(getattr(one, key))
        assert sorted(wa) == sorted(wb)
        err = max((wa[k] - wb[k]).abs().max().item() for k in wa)
        assert err < 1e-6, f"{key}: max abs diff {err:.3e}"
    la = [r["loss"] for r in read_metrics(tmp_path / "two")]
    lb = [r["loss"] for r in read_metrics(one.out_dir)]
    assert len(la) == len(lb) == 10
    assert max(abs(a - b) for a, b in zip(la, lb)) < 1e-6
    # the run moved: a comparison of two untrained models would pass trivially
    w0 = _tiny().build(dropout=0.0)[0].state_dict()
    wb = load_weights(one.weights_path)
    assert max((wb[k] - w0[k]).abs().max().item() for k in wb) > 1e-3


@pytest.mark.smoke
@pytest.mark.slow
def test_fsdp_two_processes_match_one_process_and_resume_exactly(tmp_path, one):
    """FSDP2 over 2 CPU processes (gloo): sharded weights and optimizer state, gradient accumulation 2;
    stopped at step 5 and resumed from its (unsharded) checkpoint."""
    common = [*SETTINGS, "ema_decay=null", "per_device_batch_size=2", "strategy=fsdp", "resume=auto"]
    part = _torchrun(*common, f"out_dir={tmp_path / 'fsdp'}", "stop_at_step=5")
    assert part["final_step"] == 5 and part["grad_accum"] == 2
    fsdp = _torchrun(*common, f"out_dir={tmp_path / 'fsdp'}")
    assert fsdp["final_step"] == 10 and fsdp["resumed_from"].endswith("step_000005")
    uninterrupted = _torchrun(*common, f"out_dir={tmp_path / 'fsdp_once'}")

    wa, wb, wc = (load_weights(p) for p in (fsdp["weights_path"], one.weights_path, uninterrupted["weights_path"]))
    assert sorted(wa) == sorted(wb)  # the checkpoint holds full tensors under the model's own names
    err = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert err < 1e-6, f"FSDP vs one process: max abs diff {err:.3e}"
    assert all(torch.equal(wa[k], wc[k]) for k in wa), "resumed FSDP run differs from the uninterrupted one"
    w0 = _tiny().build(dropout=0.0)[0].state_dict()
    assert max((wb[k] - w0[k]).abs().max().item() for k in wb) > 1e-3


@pytest.mark.unit
def test_fsdp_config_errors_name_the_key(tmp_path):
    from vlcore.config import ConfigError

    model, data, step_fn = _tiny().build(dropout=0.0)
    cfg = load_config(TrainConfig, None, ["strategy=fsdp", "ema_decay=0.9", f"out_dir={tmp_path}", "device=cpu",
                                          "global_batch_size=8", "per_device_batch_size=8", "total_steps=1"])
    with pytest.raises(ConfigError, match="ema_decay"):
        Trainer(model, step_fn, data, cfg).fit()
