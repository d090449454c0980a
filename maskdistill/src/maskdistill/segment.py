"""``python -m maskdistill.segment --config NAME.py [--set key=value ...] [--work-dir DIR] [--eval-only]``

ADE20K UperNet fine-tuning of a MaskDistill student through beit2's MMSegmentation plug-in
(``beit2.mmseg``: the ``BEiTv2ViT`` backbone and its layer-decay optimiser constructor); the
configs in ``maskdistill/configs/mmseg`` inherit beit2's. Trains (unless ``--eval-only``), then
validates and prints the metrics as one JSON line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.mmrun import base_parser, build_runner

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "mmseg"


def main(argv: Sequence[str] | None = None) -> int:
    p = base_parser("python -m maskdistill.segment", __doc__.split("\n\n")[1].split("\n")[0], CONFIG_DIR)
    p.add_argument("--eval-only", action="store_true", help="validate model.backbone.pretrained / load_from only")
    args = p.parse_args(argv)
    runner = build_runner(args.config, args.set, args.work_dir, config_dir=CONFIG_DIR)
    if not args.eval_only:
        runner.train()
    metrics = runner.val()
    print(json.dumps({k: float(v) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    run_cli(main)
