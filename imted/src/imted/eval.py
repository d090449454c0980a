"""Evaluate an imTED detector (COCO box / mask AP by pycocotools):
``python -m imted.eval --config CFG.py --checkpoint CKPT``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.errors import UserError

from imted.engine import base_parser, build_runner


def main(argv: Sequence[str] | None = None) -> int:
    p = base_parser("python -m imted.eval", "Evaluate an imTED detector on its config's test set.")
    p.add_argument("--checkpoint", required=True, help="mmengine .pth or converted .safetensors")
    args = p.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise UserError(f"checkpoint not found: {ckpt}")
    sets = list(args.set)
    if ckpt.suffix == ".safetensors":
        from vlcore.checkpoint import load_weights

        runner = build_runner(args.config, sets, args.work_dir)
        runner.model.load_state_dict(load_weights(ckpt), strict=True)
    else:
        from imted.checkpoints import allow_mmengine_checkpoints

        allow_mmengine_checkpoints()
        runner = build_runner(args.config, sets + [f"load_from={ckpt}"], args.work_dir)
    metrics = runner.test()
    print(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
