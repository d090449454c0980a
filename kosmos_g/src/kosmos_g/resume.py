"""Exact resumption of the mini training loops.

A stage of ``kosmos_g.train`` runs several loops one after another (stage 2 without ``init``: the
decoder stand-in, the MLLM, then AlignerNet). They share one step count and one checkpoint folder
in vlcore's layout (``ckpt/step_N/{model.safetensors, state.pt}``, committed atomically), so a run
killed anywhere continues from the newest whole checkpoint with the same weights, optimizer moments,
data generator and global random streams, and ends bit-identical to an uninterrupted run.

``model.safetensors`` holds every module registered so far, named ``<loop>.<module>.<parameter>``:
loops that had finished are restored from it and skipped; the loop that was running continues at
the step after the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vlcore.checkpoint import (MODEL_FILE, STATE_FILE, capture_rng_state, latest_checkpoint, list_checkpoints,
                               load_state_dict_strict, load_training_state, load_weights, restore_rng_state,
                               save_checkpoint)
from vlcore.faults import fault_point


class LoopCheckpoints:
    """Checkpoints every ``interval`` steps of the stage (0: only where a loop ends)."""

    def __init__(self, ckpt_dir: str | Path, interval: int = 0, keep_last: int = 2, resume: bool = False,
                 log: Callable[[str], None] = print) -> None:
        if interval < 0 or keep_last < 1:
            raise ValueError(f"ckpt_interval must be >= 0 and keep_last >= 1 (got {interval}, {keep_last})")
        self.dir = Path(ckpt_dir)
        self.interval, self.keep_last = interval, keep_last
        self.modules: dict[str, nn.Module] = {}
        self.curves: dict[str, list] = {}
        self.offset = 0  # steps of the loops registered before the current one
        self.weights: dict[str, torch.Tensor] | None = None
        self.state: dict | None = None
        latest = latest_checkpoint(self.dir) if resume else None
        if latest is not None:
            self.weights = load_weights(latest / MODEL_FILE)
            self.state = load_training_state(latest / STATE_FILE)
            log(f" resuming from {latest} (step {self.state['step']})")
        elif list_checkpoints(self.dir):
            log(f" warning: {self.dir} holds checkpoints of an earlier run; starting fresh (set resume=auto to "
                "continue it)")
        self._current: tuple | None = None

    def begin(self, loop: str, total: int, modules: dict[str, nn.Module], opt: torch.optim.Optimizer,
              generator: torch.Generator, curve: list) -> int:
        """Register a loop of ``total`` steps; restore what the checkpoint holds of it; return the first step."""
        named = {f"{loop}.{k}": m for k, m in modules.items()}
        self.modules.update(named)
        self.curves[loop] = curve
        first = self.offset
        self.offset += total
        self._current = (loop, first, total, opt, generator)
        done = (self.state["step"] - first) if self.state is not None else 0
        if done <= 0:
            return 0
        assert self.weights is not None
        for name, m in named.items():
            sd = {k[len(name) + 1:]: v for k, v in self.weights.items() if k.startswith(name + ".")}
            load_state_dict_strict(m, sd, source=f"{self.dir} ({name})")
        curve[:] = [list(p) for p in self.state["curves"][loop]]
        if done >= total:
            return total
        if self.state["loop"] != loop:
            raise RuntimeError(f"{self.dir}: checkpoint of loop '{self.state['loop']}' at step "
                               f"{self.state['step']}, where this run has loop '{loop}': the stage's settings changed")
        opt.load_state_dict(self.state["optimizer"])
        generator.set_state(self.state["generator"])
        restore_rng_state(self.state["rng"])
        return done

    def end_step(self, loop_step: int) -> None:
        """After the update of ``loop_step``: the fault point, then a checkpoint where one is due."""
        fault_point("train_step")
        assert self._current is not None
        loop, first, total, opt, generator = self._current
        step = first + loop_step + 1
        if loop_step + 1 < total and (not self.interval or step % self.interval):
            return
        weights = {f"{n}.{k}": v for n, m in self.modules.items() for k, v in m.state_dict().items()}
        state = {"step": step, "loop": loop, "optimizer": opt.state_dict(), "generator": generator.get_state(),
                 "rng": capture_rng_state(), "curves": {k: [list(p) for p in c] for k, c in self.curves.items()}}
        save_checkpoint(self.dir, step, model_state=weights, training_state=state, keep_last=self.keep_last)
