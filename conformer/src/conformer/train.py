"""`python -m conformer.train --config PRESET_OR_YAML [--set key=value ...]`: train, then evaluate both heads.

Presets live in conformer/configs (`imagenet_conformer_small_patch16`, `cifar10_conformer_micro`, `smoke`, ...);
a YAML path works too. The run folder (`train.out_dir`) receives config.yaml, run_info.json,
metrics.jsonl, checkpoints (ckpt/step_*/model.safetensors, ema.safetensors) and results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import load_config

from conformer.config import ConformerConfig, resolve_config_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformer.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="preset name in conformer/configs or a YAML file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    cfg = load_config(ConformerConfig, resolve_config_path(args.config), args.set)

    import torch
    from torch.utils.data import DataLoader

    from vlcore.checkpoint import load_state_dict_strict, load_weights
    from vlcore.train import Trainer, evaluate

    from conformer.data import build_sets
    from conformer.engine import build_model, eval_fn, make_step_fn

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.train.seed)
    train_set, val_set, what = build_sets(cfg.data, cfg.aug)
    model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    print(f"data: {what}; model {cfg.model.name} ({n / 1e6:.2f} M parameters)", flush=True)
    summary = Trainer(model, make_step_fn(cfg), train_set, cfg.train, run_config=cfg).fit()

    loader = DataLoader(val_set, batch_size=cfg.data.eval_batch_size, shuffle=False,
                        num_workers=cfg.train.num_workers)
    precision = cfg.train.precision
    results = {"data": what, "model": cfg.model.name, "params": n, "steps": summary.final_step,
               "wall_time_s": round(summary.wall_time_s, 1), "checkpoint": summary.checkpoint,
               "eval": evaluate(model, loader, eval_fn, precision=precision)}
    if summary.ema_weights_path:
        load_state_dict_strict(model, load_weights(summary.ema_weights_path), source=summary.ema_weights_path)
        results["eval_ema"] = evaluate(model, loader, eval_fn, precision=precision)
    Path(cfg.train.out_dir, "results.json").write_text(json.dumps(results, indent=2))
    m = results["eval"]
    heads = f" (conv head {m['acc1_conv']:.2f}, transformer head {m['acc1_trans']:.2f})" if "acc1_conv" in m else ""
    print(f"top-1 {m['acc1']:.2f}{heads}, top-5 {m['acc5']:.2f} after {summary.final_step} steps "
          f"({summary.wall_time_s:.0f}s) -> {cfg.train.out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
