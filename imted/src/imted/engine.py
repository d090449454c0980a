"""mmengine Runner set-up shared by ``imted.train`` and ``imted.eval`` (overrides and data are checked
by ``vlcore.mmrun`` before the Runner starts)."""

from __future__ import annotations

import argparse
from typing import Sequence

from vlcore import mmrun


def build_runner(config: str, sets: Sequence[str] = (), work_dir: str | None = None):
    """An mmengine Runner for an imTED mmdet config, with ``--set`` overrides merged in."""
    import imted.mmdet  # noqa: F401  (registers the plug-in modules)
    from imted.models import CONFIG_DIR

    return mmrun.build_runner(config, sets, work_dir, config_dir=CONFIG_DIR)


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    from imted.models import CONFIG_DIR

    return mmrun.base_parser(prog, description, CONFIG_DIR)
