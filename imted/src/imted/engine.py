"""mmengine Runner set-up shared by ``imted.train`` and ``imted.eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import yaml

from vlcore.errors import UserError


def parse_sets(items: Sequence[str]) -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def build_runner(config: str, sets: Sequence[str] = (), work_dir: str | None = None):
    """An mmengine Runner for an imTED mmdet config, with ``--set`` overrides merged in."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import imted.mmdet  # noqa: F401

    path = Path(config)
    if not path.is_file():
        from imted.models import CONFIG_DIR

        if not (CONFIG_DIR / config).is_file():
            raise UserError(f"config not found: {config} (known configs are in {CONFIG_DIR})")
        path = CONFIG_DIR / config
    if path.suffix != ".py":
        raise UserError(f"{path}: imTED detector configs are mmdet Python configs (.py)")
    cfg = Config.fromfile(str(path))
    overrides = parse_sets(sets)
    if overrides:
        cfg.merge_from_dict(overrides)
    cfg.work_dir = work_dir or cfg.get("work_dir") or str(Path("work_dirs") / path.stem)
    return Runner.from_cfg(cfg)


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help="mmdet config (.py), a path or a name in imted/configs/mmdet")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--work-dir", default=None, help="run folder (default work_dirs/<config name>)")
    return p
