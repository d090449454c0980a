"""`python -m conformer.eval --config PRESET_OR_YAML --checkpoint PATH [--ema] [--set key=value ...]`.

Top-1 / top-5 of the summed heads and each head's top-1 on the config's validation set.
PATH is a run's checkpoint folder (ckpt/step_*), a .safetensors file, an official `main.py`
checkpoint or an mmpretrain file (see conformer.convert).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import load_config
from vlcore.errors import UserError

from conformer.config import ConformerConfig, resolve_config_path


def resolve_weights(path: str, ema: bool) -> Path:
    p = Path(path)
    if p.is_dir():
        from vlcore.checkpoint import EMA_FILE, MODEL_FILE, latest_checkpoint

        step = p if (p / MODEL_FILE).is_file() else latest_checkpoint(p / "ckpt" if (p / "ckpt").is_dir() else p)
        if step is None:
            raise UserError(f"{p}: no checkpoint folder with {MODEL_FILE} found")
        p = step / (EMA_FILE if ema else MODEL_FILE)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformer.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="preset name in conformer/configs or a YAML file")
    ap.add_argument("--checkpoint", required=True, help="run / checkpoint folder or weights file")
    ap.add_argument("--ema", action="store_true", help="the EMA weights (run folders and official main.py files)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    cfg = load_config(ConformerConfig, resolve_config_path(args.config), args.set)

    import torch
    from torch.utils.data import DataLoader

    from vlcore.checkpoint import load_state_dict_strict
    from vlcore.train import evaluate

    from conformer.convert import load_state_dict_any
    from conformer.data import build_sets
    from conformer.engine import build_model, eval_fn

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    path = resolve_weights(args.checkpoint, args.ema)
    _, val_set, what = build_sets(cfg.data, cfg.aug)
    model = build_model(cfg)
    if path.suffix == ".safetensors":  # our own runs: any registered model, names as saved
        from vlcore.checkpoint import load_weights

        sd = load_weights(path)
    else:
        sd = load_state_dict_any(path, ema=args.ema)
    load_state_dict_strict(model, sd, source=str(path))
    device = "cuda" if torch.cuda.is_available() and cfg.train.device == "auto" else "cpu"
    model.to(device)
    loader = DataLoader(val_set, batch_size=cfg.data.eval_batch_size, shuffle=False, num_workers=cfg.train.num_workers)
    m = evaluate(model, loader, eval_fn, precision=cfg.train.precision)
    print(json.dumps({"checkpoint": str(path), "data": what, **{k: round(v, 4) for k, v in m.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
