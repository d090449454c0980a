"""`python -m magneto.train --config PRESET_OR_YAML [--set key=value ...]`: train one model.

Presets live in magneto/configs (``gpt_tiny``, ``bert_base_wikipedia``, ...); a YAML path
works too. The run folder (``train.out_dir``) receives config.yaml, run_info.json,
metrics.jsonl, train.log, checkpoints, the SentencePiece model when one is trained, and
results.json with the validation metrics after training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import load_config

from magneto.config import MagnetoConfig, resolve_config_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m magneto.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="preset name in magneto/configs or a YAML file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    cfg = load_config(MagnetoConfig, resolve_config_path(args.config), args.set)

    import torch

    from vlcore.train import Trainer
    from magneto.tasks import build_data, build_model, evaluate, step_fn

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.train.out_dir)
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        data = build_data(cfg, out)  # may train a SentencePiece model into the run folder
    except Exception:
        if fresh and not any(out.iterdir()):
            out.rmdir()  # bad data leaves no empty run folder behind
        raise
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, data)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"data: {data.description}", flush=True)
    print(f"model: {cfg.model.name} norm={cfg.model.resolved_norm()} init={model.init_rule} "
          f"({n_params / 1e6:.2f} M parameters)", flush=True)
    summary = Trainer(model, step_fn(cfg, data), data.train, cfg.train, run_config=cfg).fit()
    metrics = evaluate(cfg, model, data)
    result = {"task": cfg.task, "model": cfg.model.name, "norm": cfg.model.resolved_norm(), "data": data.description,
              "val": metrics, "final_step": summary.final_step, "last_train_loss": summary.last_loss,
              "checkpoint": summary.checkpoint, "wall_time_s": round(summary.wall_time_s, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "items")
    print(f"validation: {shown} ({summary.final_step} steps, {summary.wall_time_s:.0f}s) -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
