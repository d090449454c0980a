"""Fault injection over the papers' training entry points.

Each case trains a CI-sized run twice: once uninterrupted, once SIGKILLed at seeded random
optimizer steps (``VLCORE_FAULT=train_step@n``, see ``vlcore.faults``) and once in the middle
of writing a checkpoint, resuming with ``train.resume=auto`` after every kill. After each kill
the newest committed checkpoint must load; at the end the weights of the interrupted run must
equal the uninterrupted run's bit for bit (CPU, one thread, same environment).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from vlcore.checkpoint import MODEL_FILE, STATE_FILE, latest_checkpoint, load_training_state, load_weights

pytestmark = [pytest.mark.smoke, pytest.mark.slow]


@dataclass(frozen=True)
class Case:
    paper: str
    config: str
    steps: int
    kills: int
    sets: tuple[str, ...] = ()
    prefix: str = "train."  # where out_dir / resume / device live in the paper's config
    interval: int = 2  # optimizer steps between checkpoints
    device: bool = True  # whether the config has a device key

    @property
    def id(self) -> str:
        return f"{self.paper}-{self.config}"


CASES = [
    # dropout and attention dropout on, so resuming must restore the RNG streams too
    Case("magneto", "gpt_tiny", 24, 6, ("model.depth=2", "model.dim=32", "model.num_heads=2", "data.block_size=32",
                                        "train.global_batch_size=8", "train.per_device_batch_size=4",
                                        "model.drop=0.1", "model.attn_drop=0.1")),
    Case("beit2", "smoke_vqkd", 20, 5, ("data.limit=96",)),
    Case("g2sd", "tiny_mae_pretrain_cifar10", 20, 5,
         ("data.train_subset=96", "train.global_batch_size=16", "train.per_device_batch_size=8", "train.warmup_steps=2",
          "model.embed_dim=32", "model.num_heads=2", "model.depth=2", "model.decoder_embed_dim=16",
          "model.decoder_depth=1")),
    # Mixup / CutMix, drop path and EMA draw random numbers every step; 4 epochs of 2 steps
    Case("conformer", "smoke", 12, 2, ("data.train_limit=32", "data.eval_limit=16")),
    # image-only, text-only and pair batches interleaved: the task schedule must resume too
    Case("beit3", "smoke_pretrain", 12, 2),
    # the frozen teacher's targets and the blockwise masks must come out the same after a resume
    Case("maskdistill", "smoke_pretrain", 10, 2),
    # its own SGD loop with a checkpoint per epoch (9 steps of the smoke preset's batches)
    # frozen vision tower, location tokens in the vocabulary, grounded captions drawn per step
    Case("kosmos2", "smoke_pretrain", 10, 2),
    # three loops in a row (decoder stand-in, MLLM, AlignerNet) under one step count
    Case("kosmos_g", "smoke_align", 18, 4, ("s0_steps=6", "mllm_steps=6", "steps=6", "ckpt_interval=2"), prefix="",
         device=False),
    Case("lda", "cifar10_lt_smoke", 54, 4, ("optim.epochs=6", "eval_every=2"), prefix="", interval=9),
]


def _run(case: Case, out: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("VLCORE_FAULT", None)
    if fault:
        env["VLCORE_FAULT"] = fault
    t = case.prefix
    sets = [*case.sets, f"{t}out_dir={out}", f"{t}resume=auto"] + ([f"{t}device=cpu"] if case.device else [])
    if t:  # vlcore Trainer runs: a step budget and a checkpoint every `interval` steps
        sets += [f"{t}total_steps={case.steps}", f"{t}ckpt_interval={case.interval}", f"{t}keep_last=2"]
    cmd = [sys.executable, "-m", f"{case.paper}.train", "--config", case.config]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=out.parent)


def _final_weights(out: Path, steps: int) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(out / "ckpt")
    assert ckpt is not None and ckpt.name == f"step_{steps:06d}", ckpt
    return load_weights(ckpt / MODEL_FILE)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_killed_and_resumed_run_ends_bit_identical(case: Case, tmp_path: Path):
    ref = _run(case, tmp_path / "ref", None)
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = _final_weights(tmp_path / "ref", case.steps)

    rng = random.Random(f"{case.id}-kills")
    out = tmp_path / "killed"
    ckpt_kill_at = rng.randrange(case.kills)  # which kill lands half-way through writing a checkpoint
    kills, done_steps = 0, 0
    while kills < case.kills:
        # the n-th update after (re)start: at least one checkpoint interval, so every restart progresses
        n = rng.randint(case.interval, 2 * case.interval + 1)
        fault = "checkpoint_write@2" if kills == ckpt_kill_at else f"train_step@{n}"
        if done_steps + (2 * case.interval if kills == ckpt_kill_at else n) >= case.steps:
            break
        proc = _run(case, out, fault)
        assert proc.returncode == -signal.SIGKILL, f"{fault}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
        kills += 1
        # whatever the kill interrupted, the newest committed checkpoint is whole
        latest = latest_checkpoint(out / "ckpt")
        if latest is not None:
            load_weights(latest / MODEL_FILE)
            done_steps = load_training_state(latest / STATE_FILE)["step"]
            assert done_steps == int(latest.name.split("_")[1])
    assert kills == case.kills, f"only {kills} kills fitted in {case.steps} steps"
    done = _run(case, out, None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stderr + done.stdout
    got = _final_weights(out, case.steps)
    assert got.keys() == want.keys()
    diff = [k for k in want if not torch.equal(want[k], got[k])]
    assert not diff, f"{len(diff)} tensors differ after {kills} kills, e.g. {diff[:3]}"


# --------------------------------------------------------------------------- mmengine plug-ins
IMTED_SMOKE = "imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py"
# Iteration-based, a checkpoint every 2 iterations, no random flip (the data pipeline runs again for the
# batches mmengine skips on resume, so only the model's own sampling may draw random numbers).
MM_SETS = ("train_cfg.max_iters=4", "default_hooks.checkpoint.interval=2", "+default_hooks.checkpoint.by_epoch=False",
           "log_processor.by_epoch=False", "train_dataloader.dataset.pipeline.3.prob=0.0", "resume=True",
           "+randomness.seed=0")


def _mm_run(work_dir: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("VLCORE_FAULT", None)
    if fault:
        env["VLCORE_FAULT"] = fault
    cmd = [sys.executable, "-m", "imted.train", "--config", IMTED_SMOKE, "--work-dir", str(work_dir)]
    for s in MM_SETS:
        cmd += ["--set", s]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=work_dir.parent)


def _mm_weights(path: Path) -> dict[str, torch.Tensor]:
    from vlcore.mmrun import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_mmengine_plugin_killed_and_resumed_ends_bit_identical(tmp_path: Path):
    """imTED through mmengine's Runner: killed after an update, then half-way through writing a checkpoint."""
    from vlcore.data.paths import shared_data_root

    if not (shared_data_root() / "coco_mini" / "annotations").is_dir():
        pytest.skip("coco_mini not available")
    ref = _mm_run(tmp_path / "ref", None)
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = _mm_weights(tmp_path / "ref" / "iter_4.pth")

    out = tmp_path / "killed"
    first = _mm_run(out, "train_step@3")  # after the 3rd update; iter_2.pth is the newest checkpoint
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pth")) == ["iter_2.pth"]
    second = _mm_run(out, "checkpoint_write@1")  # resumes at 2, dies half-way through writing iter_4.pth
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pth")) == ["iter_2.pth"]
    _mm_weights(out / "iter_2.pth")  # the newest committed checkpoint is whole
    done = _mm_run(out, None)
    assert done.returncode == 0, done.stderr[-3000:]
    got = _mm_weights(out / "iter_4.pth")
    assert got.keys() == want.keys()
    diff = [k for k in want if not torch.equal(want[k], got[k])]
    assert not diff, f"{len(diff)} tensors differ after 2 kills, e.g. {diff[:3]}"
