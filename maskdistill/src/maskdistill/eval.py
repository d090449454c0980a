"""`python -m maskdistill.eval --config <preset> --checkpoint CKPT [--task finetune|linprobe] [--set k=v ...]`.

Top-1 / top-5 of a fine-tuned classifier or a linear probe (``maskdistill.train`` output)
on the validation split (ImageNet ``root/val`` or the CIFAR-10 test split), fixed order,
``data.limit`` images. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from vlcore.checkpoint import MODEL_FILE, load_state_dict_strict, resolve_checkpoint
from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config
from vlcore.errors import UserError

from beit2.convert import read_checkpoint
from beit2.data import classification_transform
from beit2.eval import evaluate_classifier
from beit2.train import LinearProbe, _base_dataset, _resize_to

from maskdistill.config import Config, resolve_config_path
from maskdistill.train import _classifier, init_classifier

__all__ = ["main"]


def _weights_path(ckpt: str) -> Path:
    p = Path(ckpt)
    if p.is_dir():
        if (p / "ckpt").is_dir():
            p = p / "ckpt"
        return resolve_checkpoint(p) / MODEL_FILE
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = add_config_args(argparse.ArgumentParser(prog="python -m maskdistill.eval",
                                                description=__doc__.split("\n\n")[0]))
    p.add_argument("--checkpoint", required=True, help="run / step folder or .safetensors of maskdistill.train")
    p.add_argument("--task", choices=("finetune", "linprobe"), default=None, help="override the preset's task")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    cfg = load_config(Config, resolve_config_path(args.config), args.set)
    if args.task:
        cfg = replace(cfg, task=args.task)
    device = "cuda" if torch.cuda.is_available() and cfg.train.device == "auto" else "cpu"
    weights = _weights_path(args.checkpoint)
    if cfg.task == "finetune":
        model = _classifier(cfg)
        fresh = init_classifier(model, str(weights))
        if fresh:
            raise UserError(f"{weights}: not a fine-tuned classifier for this config ({', '.join(fresh[:4])} "
                            "would stay untrained)")
    elif cfg.task == "linprobe":
        backbone = _classifier(cfg, global_pool="", num_classes=0)
        model = LinearProbe(backbone, num_classes=cfg.model.num_classes, feature=cfg.model.linprobe_feature)
        load_state_dict_strict(model, read_checkpoint(weights), source=str(weights))
    else:
        raise UserError(f"nothing to evaluate for task '{cfg.task}' (use a finetune or linprobe preset, or --task)")
    d = cfg.data
    tf = _resize_to(cfg, classification_transform(train=False, input_size=d.input_size, crop_pct=d.crop_pct))
    result = {"task": cfg.task, **evaluate_classifier(model, _base_dataset(cfg, split="val", transform=tf),
                                                      batch_size=args.batch_size, device=device)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
