"""`python -m lda.train --config PRESET_OR_YAML [--set key=value ...]`: train LDA or a baseline, then test.

Presets live in lda/configs (`cifar10_lt_mini`, `imagenet_lt_resnext50`, ...); a YAML path works too.
The run folder (`out_dir`) receives config.yaml, run_info.json, metrics.jsonl, results.json and a checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from lda.config import LDATrainConfig, resolve_config_path
from vlcore.cli import run_cli
from vlcore.config import load_config


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lda.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="preset name in lda/configs or a YAML file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    cfg = load_config(LDATrainConfig, resolve_config_path(args.config), args.set)

    from lda.data.build import build_batches
    from lda.engine.trainer import train_and_evaluate

    train, test, counts, what = build_batches(cfg)
    print(f"data: {what}; method {cfg.method}; model {cfg.model.name}; {cfg.optim.epochs} epochs", flush=True)
    r = train_and_evaluate(cfg, train, test, counts)
    out = {"method": cfg.method, "data": what, "metrics": r.metrics, "metrics_head_u": r.metrics_u,
           "per_class": r.per_class, "alpha_mean": r.alpha_mean, "steps": r.steps, "wall_time_s": r.wall_time_s,
           "checkpoint": r.checkpoint}
    Path(cfg.out_dir, "results.json").write_text(json.dumps(out, indent=2))
    m = r.metrics
    print(f"test top-1 {m['overall']:.2f} | many {m['many']:.2f} medium {m['medium']:.2f} few {m['few']:.2f} "
          f"({r.steps} steps, {r.wall_time_s:.0f}s) -> {cfg.out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
