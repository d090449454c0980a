"""A minimal entry point over `vlcore.config`, run by test_config.py as a subprocess.

    python common/tests/scripts/config_cli.py --config preset.yaml --set model.depth=4

Prints the resolved config as JSON; bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Literal, Optional

from vlcore.cli import run_cli
from vlcore.config import add_config_args, config_from_args, config_to_dict


@dataclass(frozen=True)
class ModelCfg:
    depth: int = 2
    drop_path: float = 0.0
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    betas: tuple[float, float] = (0.9, 0.999)
    name: Optional[str] = None


@dataclass(frozen=True)
class DemoConfig:
    model: ModelCfg = field(default_factory=ModelCfg)
    seed: int = 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="config_cli")
    add_config_args(p)
    cfg = config_from_args(DemoConfig, p.parse_args(argv))
    print(json.dumps(config_to_dict(cfg)))
    return 0


if __name__ == "__main__":
    run_cli(main)
