"""The run folder: what was run (config, code revision, versions, command) and what it logged.

    run_dir/config.yaml     the resolved config
    run_dir/run_info.json   git revision + dirty flag, Python and package versions, argv, start time
    run_dir/metrics.jsonl   one JSON object per logged step (appended, so resumed runs continue it)

wandb is optional and off by default; it is imported only when asked for
(`wandb_mode="offline"` writes locally, `"online"` syncs).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Sequence

from vlcore.errors import UserError

PACKAGES = ("vlcore", "torch", "torchvision", "timm", "transformers", "accelerate", "safetensors", "numpy",
            "mmcv", "mmengine", "mmdet", "mmsegmentation", "torchscale", "wandb")


def git_revision(path: str | Path | None = None) -> dict[str, Any]:
    """`{"commit": sha or None, "dirty": bool or None}` of the git repository holding `path`."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            # --no-optional-locks: read the repository without refreshing (writing) its index.
            r = subprocess.run(["git", "--no-optional-locks", *args], cwd=where, capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": bool(status.strip()) if status is not None else None}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions (read from package metadata, nothing is imported); absent packages are left out."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_run_info(run_dir: str | Path, *, config: Any = None, argv: Sequence[str] | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write config.yaml (if `config`) and run_info.json into `run_dir`; return the info."""
    from vlcore.config import config_to_dict, save_config

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        if dataclasses.is_dataclass(config):
            save_config(config, run_dir / "config.yaml")
        else:
            import yaml

            (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    info = {
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv if argv is None else argv),
        "git": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        **(extra or {}),
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):  # 0-d tensors and numpy scalars
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLogger:
    """Append one JSON line per `log` call to run_dir/metrics.jsonl; mirror to wandb when asked.

    Pass `enabled=False` on non-main processes: they then write nothing.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True,
                 wandb_mode: Literal["disabled", "offline", "online"] = "disabled",
                 wandb_project: str = "vlrepro", run_name: str | None = None, config: Any = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if wandb_mode != "disabled":
            try:
                import wandb
            except ImportError:
                raise UserError(f"wandb_mode={wandb_mode!r} needs the wandb package (pip install wandb)") from None
            from vlcore.config import config_to_dict

            self._wandb = wandb.init(mode=wandb_mode, project=wandb_project, name=run_name, dir=str(self.path.parent),
                                     config=config_to_dict(config) if config is not None else None)

    def log(self, step: int, **values: Any) -> dict[str, Any]:
        row = {"step": int(step), "time": round(time.time(), 3), **{k: _jsonable(v) for k, v in values.items()}}
        if not self.enabled:
            return row
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k not in ("step", "time")}, step=int(step))
        return row

    def truncate_after(self, step: int) -> int:
        """Drop rows logged after `step` (a resumed run repeats them); returns how many went."""
        if not self.enabled or not self.path.exists():
            return 0
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        keep = []
        for line in lines:
            try:
                row_step = json.loads(line).get("step", 0)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if row_step <= step:
                keep.append(line)
        if len(keep) != len(lines):
            from vlcore.checkpoint import atomic_save

            atomic_save("".join(line + "\n" for line in keep).encode(), self.path)
        return len(lines) - len(keep)

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
