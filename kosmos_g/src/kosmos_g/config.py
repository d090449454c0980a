"""Training configuration of kosmos_g (stage 2 alignment, stage 3 instruction tuning).

Presets in kosmos_g/configs: ``stage2_align`` / ``stage3_instruct`` (the paper's recipes, card §5),
``mini_align`` / ``mini_instruct`` (the mini world, card §10) and ``smoke_*`` (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlcore.config import find_preset

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    warmup_steps: int = 375
    schedule: Literal["linear", "cosine"] = "linear"
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    eps: float = 1e-6
    clip_norm: float = 2.0


@dataclass(frozen=True)
class TrainConfig:
    stage: Literal["align", "instruct"] = "align"
    # mini: the generated world of the mini reproduction (runs here); the others need the paper's
    # corpora and the SD v1.5 / stage-1 weights
    data: Literal["mini", "laion_captions", "compositional_mix"] = "mini"
    steps: int = 200
    batch_size: int = 64
    optim: OptimConfig = field(default_factory=OptimConfig)
    cfg_drop: float = 0.1  # stage 3: fraction of samples conditioned on M(MLLM("<s>"))
    rec_weight: float = 1.0  # stage 2: L = L_mse + rec_weight * L_rec
    s0_steps: int = 600  # mini, stage 2 without init: steps of the frozen decoder stand-in
    mllm_steps: int = 300  # mini, stage 2 without init: steps of the MLLM's next-token pretraining
    init: str | None = None  # checkpoint of the previous stage
    seed: int = 0
    log_every: int = 50
    out_dir: str = "runs/kosmos_g"
    # out_dir/ckpt/step_N: every ckpt_interval steps of the stage (0: only where each of its loops ends)
    ckpt_interval: int = 0
    keep_last: int = 2
    resume: Literal["auto", "never"] = "never"  # auto: continue from the newest checkpoint in out_dir/ckpt


def resolve_config_path(path: str) -> Path:
    """A preset name (``mini_align``), a path relative to the cwd, or one relative to kosmos_g/configs."""
    return find_preset(path, CONFIG_DIR)
