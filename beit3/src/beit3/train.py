"""Pretrain or fine-tune BEiT-3: ``python -m beit3.train --config PRESET [--set key=value ...]``.

PRESET is a YAML under ``beit3/configs/`` (name with or without ``.yaml``) or a path:
``pretrain_*`` (masked data modelling on images, texts and pairs), ``finetune_*`` (VQAv2,
NLVR2, retrieval, captioning, ImageNet), ``smoke_*`` (tiny, CPU, seconds). The run folder
(``train.out_dir``) receives the resolved config, metrics, checkpoints (safetensors) and
``eval.json`` with the task's metric on the evaluation split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config

from beit3.config import BEiT3Config, resolve_config_path


def load_beit3_config(config: str | None, overrides: Sequence[str] = ()) -> BEiT3Config:
    return load_config(BEiT3Config, resolve_config_path(config) if config else None, overrides)


def run(cfg: BEiT3Config) -> dict:
    """Build the task, train it with vlcore's Trainer, evaluate; returns the eval metrics."""
    from vlcore.train import Trainer, seed_everything

    from beit3.engine import Task, param_groups

    seed_everything(cfg.train.seed)
    task = Task(cfg)
    model = task.build_model()  # Magneto gain applied last inside BEiT3.__init__ (no re-init afterwards)
    fresh = []
    if cfg.finetune.init_checkpoint and cfg.task != "pretrain":
        fresh = task.load_init(model, cfg.finetune.init_checkpoint)
    summary = Trainer(model, task.step_fn, task.train_set, cfg.train, run_config=cfg,
                      param_groups=lambda m: param_groups(m, cfg)).fit()
    metrics = task.evaluate(model)
    out = {"task": cfg.task, **metrics, "steps": summary.final_step, "last_loss": summary.last_loss,
           "weights": summary.weights_path, "initialised_from": cfg.finetune.init_checkpoint,
           "left_at_init": fresh}
    Path(cfg.train.out_dir).mkdir(parents=True, exist_ok=True)
    Path(cfg.train.out_dir, "eval.json").write_text(json.dumps(out, indent=2))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beit3.train", description=__doc__.split("\n\n")[0])
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = load_beit3_config(args.config, args.set)
    out = run(cfg)
    shown = {k: v for k, v in out.items() if isinstance(v, float)}
    print(f"{cfg.task}: {out['steps']} steps, last loss {out['last_loss']:.4f}, eval {json.dumps(shown)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
