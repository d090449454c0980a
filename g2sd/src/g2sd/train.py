"""Train one G2SD stage: ``python -m g2sd.train --config PRESET [--set key=value ...]``.

PRESET is a YAML under ``g2sd/configs/`` (name with or without ``.yaml``) or a path:
``mae_pretrain_*`` (MAE teacher), ``gd_*`` (generic distillation), ``finetune_*`` (teacher or
student fine-tuning), ``sd_*`` (specific distillation for classification). The run folder
(``train.out_dir``) receives the resolved config, metrics, checkpoints (safetensors) and,
for classifiers, ``eval.json`` with the top-1 accuracy on the evaluation split.
Detection / segmentation distillation run through MMDetection / MMSegmentation with the
configs in ``g2sd/configs/mmdet`` and ``g2sd/configs/mmseg``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config

from g2sd.config import G2SDConfig, resolve_config_path


def load_g2sd_config(config: str | None, overrides: Sequence[str] = ()) -> G2SDConfig:
    return load_config(G2SDConfig, resolve_config_path(config) if config else None, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m g2sd.train", description=__doc__.split("\n\n")[0])
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = load_g2sd_config(args.config, args.set)

    from g2sd.engine.stages import run_stage, top1
    from vlcore.train import seed_everything

    seed_everything(cfg.train.seed)  # model initialisation is part of the run: the same seed, the same run
    result = run_stage(cfg)
    s = result.summary
    print(f"{cfg.stage}: {s.final_step} steps, last loss {s.last_loss:.4f}, weights {s.weights_path}")
    if cfg.stage in ("finetune", "sd"):
        acc = top1(result.model, cfg)
        Path(cfg.train.out_dir, "eval.json").write_text(json.dumps({"top1": acc, "weights": s.weights_path}, indent=2))
        print(f"top-1 on the evaluation split: {acc:.2f} %")
    return 0


if __name__ == "__main__":
    run_cli(main)
