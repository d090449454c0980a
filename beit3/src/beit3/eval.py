"""Evaluate a checkpoint: ``python -m beit3.eval --config PRESET --checkpoint CKPT [--set k=v ...]``.

The task's metric on the preset's evaluation split: VQA score (vqa), accuracy (nlvr2),
recall@K both directions (retrieval), COCO BLEU-4 and CIDEr-D (captioning), top-1
(imagenet), masked-prediction losses (pretrain). CKPT is a run folder, a ``model.safetensors`` or an official unilm ``.pth`` (converted on the fly).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.config import add_config_args
from vlcore.errors import UserError

from beit3.train import load_beit3_config


def evaluate_checkpoint(cfg, checkpoint: str) -> dict:
    from beit3.engine import Task

    task = Task(cfg)
    model = task.build_model()
    fresh = task.load_init(model, checkpoint)
    heads = [k for k in fresh if not k.startswith("beit3.")]
    if heads:
        raise UserError(f"{checkpoint} has no {cfg.task} head ({heads[:3]}...); fine-tune it first")
    return task.evaluate(model)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beit3.eval", description=__doc__.split("\n\n")[0])
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="a run folder, model.safetensors or an official .pth")
    p.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    args = p.parse_args(argv)
    cfg = load_beit3_config(args.config, args.set)
    metrics = evaluate_checkpoint(cfg, args.checkpoint)
    print(json.dumps(metrics))
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
