"""Train an imTED detector: ``python -m imted.train --config CFG.py [--set key=value ...]``.

Wraps mmengine's Runner; distributed runs take ranks from the environment (torchrun), e.g.
``torchrun --nproc-per-node 8 -m imted.train --config ... --set launcher=pytorch``.
"""

from __future__ import annotations

from typing import Sequence

from vlcore.cli import run_cli

from imted.engine import base_parser, build_runner


def main(argv: Sequence[str] | None = None) -> int:
    args = base_parser("python -m imted.train", __doc__.split("\n")[0]).parse_args(argv)
    runner = build_runner(args.config, args.set, args.work_dir)
    runner.train()
    return 0


if __name__ == "__main__":
    run_cli(main)
