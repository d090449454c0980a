"""`python -m magneto.eval --config PRESET_OR_YAML --checkpoint CKPT [--set key=value ...]`: validation metrics.

CKPT is a checkpoint folder of a run (``runs/x/ckpt/step_000200``), its ``model.safetensors``,
or a run folder (its newest checkpoint). A SentencePiece model trained by that run
(``<run>/spm.model``) is found automatically unless ``data.spm_model`` names one.
Prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import load_config

from magneto.config import MagnetoConfig, resolve_config_path


def weights_file(path: str | Path) -> tuple[Path, Path]:
    """(weights file, run folder) from a run folder, a checkpoint folder or a weights file."""
    from vlcore.checkpoint import MODEL_FILE, latest_checkpoint, resolve_checkpoint

    p = Path(path)
    if p.is_file():
        run = p.parent.parent.parent if p.parent.parent.name == "ckpt" else p.parent
        return p, run
    if (p / "ckpt").is_dir():
        last = latest_checkpoint(p / "ckpt")
        if last is None:
            from vlcore.checkpoint import CheckpointError

            raise CheckpointError(f"{p / 'ckpt'} holds no checkpoint")
        return last / MODEL_FILE, p
    ck = resolve_checkpoint(p)
    return ck / MODEL_FILE, ck.parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m magneto.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="preset name in magneto/configs or a YAML file")
    ap.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or weights file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    ap.add_argument("--batches", type=int, default=None, help="validation batches (default: data.eval_batches)")
    args = ap.parse_args(argv)
    overrides = list(args.set)
    weights, run = weights_file(args.checkpoint)
    cfg = load_config(MagnetoConfig, resolve_config_path(args.config), overrides)
    if cfg.data.tokenizer == "sentencepiece" and not cfg.data.spm_model:
        spm = run / "spm.model"
        if not spm.is_file():
            from vlcore.data.paths import DataNotFoundError

            raise DataNotFoundError(f"{spm} not found: pass --set data.spm_model=PATH (the run's tokenizer)", spm)
        cfg = load_config(MagnetoConfig, resolve_config_path(args.config), overrides + [f"data.spm_model={spm}"])

    from vlcore.checkpoint import load_state_dict_strict, load_weights
    from magneto.tasks import build_data, build_model, evaluate

    data = build_data(cfg, run)
    model = build_model(cfg, data)
    load_state_dict_strict(model, load_weights(weights), source=str(weights))
    metrics = evaluate(cfg, model, data, batches=args.batches)
    print(json.dumps({"checkpoint": str(weights), "task": cfg.task, "data": data.description, "val": metrics}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
