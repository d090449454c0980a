"""`python -m lda.eval --config PRESET_OR_YAML --checkpoint CKPT [--set key=value ...]`.

Evaluates the balanced head g_b of a checkpoint on the config's test split:
overall and many / medium / few-shot top-1, shot groups from the training split's
counts. CKPT is a run folder / checkpoint folder / model.safetensors written by
`lda.train`, or an official LDA checkpoint (`best_model.pth`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch

from lda.config import LDATrainConfig, resolve_config_path
from vlcore.checkpoint import latest_checkpoint
from vlcore.cli import run_cli
from vlcore.config import load_config
from vlcore.errors import UserError


def resolve(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return p / "model.safetensors"
        ck = latest_checkpoint(p / "ckpt") if (p / "ckpt").is_dir() else latest_checkpoint(p)
        if ck is None:
            raise UserError(f"{p}: no checkpoint inside (expected model.safetensors or ckpt/latest)")
        return ck / "model.safetensors"
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lda.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = ap.parse_args(argv)
    cfg = load_config(LDATrainConfig, resolve_config_path(args.config), args.set)

    from lda.convert import load_into
    from lda.data.build import build_batches
    from lda.data.longtail import shot_groups
    from lda.engine.trainer import build_model, predict
    from lda.metrics import shot_accuracy

    path = resolve(args.checkpoint)
    model = build_model(cfg)
    load_into(model, path, strict=path.suffix == ".safetensors")
    _, test, counts, what = build_batches(cfg)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu")
    pred, target, _ = predict(model.to(device), test, device)
    m = shot_accuracy(pred, target, shot_groups(counts))
    if args.json:
        print(json.dumps({"checkpoint": str(path), "data": what, **m}))
    else:
        print(f"{path}: test top-1 {m['overall']:.2f} | many {m['many']:.2f} medium {m['medium']:.2f} "
              f"few {m['few']:.2f} ({what})")
    return 0


if __name__ == "__main__":
    run_cli(main)
