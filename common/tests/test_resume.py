"""A run stopped (or SIGKILLed) halfway and resumed ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlcore.checkpoint import latest_checkpoint, list_checkpoints, load_weights
from vlcore.config import load_config
from vlcore.runinfo import read_metrics
from vlcore.train import TrainConfig, Trainer

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"
# 12 steps over a 40-sample set with global batch 8: 5 steps per epoch, so the halfway point
# (step 6) sits inside the second epoch. Accumulation 2, dropout, AdamW, warmup + cosine, EMA.
SETTINGS = ["total_steps=12", "global_batch_size=8", "per_device_batch_size=4", "lr=1e-2", "min_lr=1e-3",
            "warmup_steps=3", "schedule=cosine", "weight_decay=0.05", "layer_decay=0.8", "clip_grad=1.0",
            "ema_decay=0.9", "ckpt_interval=2", "log_interval=1", "keep_last=3", "device=cpu", "seed=3"]


def _tiny():
    spec = importlib.util.spec_from_file_location("train_tiny", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_tiny", mod)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def _one_thread():
    # The subprocesses run single-threaded; the in-process runs match them.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cfg(out_dir: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*SETTINGS, f"out_dir={out_dir}", *extra])


def _run(cfg: TrainConfig):
    model, data, step_fn = _tiny().build(dropout=0.1)
    with _one_thread():
        return Trainer(model, step_fn, data, cfg).fit()


def _assert_same_weights(a: str, b: str) -> None:
    wa, wb = load_weights(a), load_weights(b)
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs (max abs {(wa[k] - wb[k]).abs().max().item():.3e})"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    torch.manual_seed(0)
    summary = _run(_cfg(tmp_path_factory.mktemp("full")))
    assert summary.final_step == 12 and summary.grad_accum == 2
    return summary


@pytest.mark.unit
def test_dropout_is_active_so_rng_state_matters():
    model, data, _ = _tiny().build(dropout=0.1)
    model.train()
    x = data.tensors[0][:4]
    assert not torch.equal(model(x), model(x))


@pytest.mark.unit
def test_stop_at_half_and_resume_in_process_is_bit_identical(uninterrupted, tmp_path):
    first = _run(_cfg(tmp_path, "stop_at_step=6"))
    assert first.final_step == 6 and first.checkpoint.endswith("step_000006")
    second = _run(_cfg(tmp_path, "resume=auto"))
    assert second.resumed_from.endswith("step_000006") and second.final_step == 12
    _assert_same_weights(second.weights_path, uninterrupted.weights_path)
    _assert_same_weights(second.ema_weights_path, uninterrupted.ema_weights_path)
    assert second.last_loss == uninterrupted.last_loss
    # every logged step after the resume matches the uninterrupted run exactly
    full = {r["step"]: (r["loss"], r["lr"]) for r in read_metrics(uninterrupted.out_dir)}
    resumed = {r["step"]: (r["loss"], r["lr"]) for r in read_metrics(tmp_path)}
    assert sorted(resumed) == list(range(1, 13))
    assert resumed == full
    assert [p.name for p in list_checkpoints(Path(tmp_path) / "ckpt")] == ["step_000008", "step_000010", "step_000012"]


@pytest.mark.unit
def test_resume_from_an_explicit_folder_and_without_rng_restore_differs(uninterrupted, tmp_path):
    _run(_cfg(tmp_path / "a", "stop_at_step=6"))
    step6 = tmp_path / "a" / "ckpt" / "step_000006"
    resumed = _run(_cfg(tmp_path / "b", f"resume={step6}"))
    _assert_same_weights(resumed.weights_path, uninterrupted.weights_path)

    # control: the same resume with a different RNG stream (dropout masks) ends elsewhere
    for f in step6.glob("rng_rank*.pt"):
        f.unlink()
    other = _run(_cfg(tmp_path / "c", f"resume={step6}"))
    wa, wb = load_weights(other.weights_path), load_weights(uninterrupted.weights_path)
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.smoke
def test_sigkill_partway_then_resume_is_bit_identical(uninterrupted, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--dropout", "0.1", "--kill-at-call", "19"]
    for s in [*SETTINGS, f"out_dir={tmp_path}"]:
        cmd += ["--set", s]
    # step_fn call 19 is the first micro-batch of step 10: steps 1..9 are done and logged, step 8 is saved
    killed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert latest_checkpoint(tmp_path / "ckpt") == tmp_path / "ckpt" / "step_000008"
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 10))

    resumed = _run(_cfg(tmp_path, "resume=auto"))
    assert resumed.resumed_from.endswith("step_000008") and resumed.final_step == 12
    _assert_same_weights(resumed.weights_path, uninterrupted.weights_path)
    _assert_same_weights(resumed.ema_weights_path, uninterrupted.ema_weights_path)
    # step 9, logged by the killed run and redone after the resume, appears once, with the same loss
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["loss"] for r in rows] == [r["loss"] for r in read_metrics(uninterrupted.out_dir)]
