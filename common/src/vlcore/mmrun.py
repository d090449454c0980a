"""mmengine Runner set-up shared by the MMDetection / MMSegmentation plug-ins.

The plug-ins' ``train`` / ``eval`` entry points build their Runner here so that they refuse bad
input the same way the vlcore entry points do, before any training starts:

- ``--set key=value`` overrides must name a key that exists in the config (a typo would otherwise
  be merged silently and ignored); ``+key=value`` adds a new one on purpose. A value whose type
  differs from a numeric or boolean default is refused too.
- Every dataset in the train / val / test dataloaders that names an annotation file has it checked:
  the file exists, COCO instances files parse and pass ``vlcore.data.coco.validate_coco`` (boxes,
  category and image ids), and the image folder exists.

and so that an interrupted run resumes exactly, as the vlcore Trainer does:

- checkpoints are written through the ``vlcore_atomic`` file backend (a temporary file renamed into
  place), so a kill while writing leaves the previous checkpoint as the newest readable one;
- ``ResumableRNGHook`` stores the torch / numpy / Python RNG states in each checkpoint and restores
  them before the first resumed iteration, so sampling in the model (RPN / RoI samplers, drop path)
  continues the uninterrupted run's streams; it also carries ``vlcore.faults``' ``train_step`` point;
- ``resume=True`` picks the newest checkpoint that loads, even if ``last_checkpoint`` is stale or cut.

Checkpoints load with ``torch.load(weights_only=True)``; ``allow_mmengine_checkpoints`` lists the
few plain classes mmengine's ``meta`` holds.
"""

from __future__ import annotations

import argparse
import os
import random
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from vlcore.errors import UserError
from vlcore.faults import fault_point

DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "+c=[1,2]"]`` -> ``{"a.b": 1, "+c": [1, 2]}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise UserError(f"--set {item}: value is not valid YAML ({type(e).__name__})") from None
    return out


def _lookup(cfg: Any, dotted: str) -> tuple[bool, Any]:
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, "keys") and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def _type_clash(old: Any, new: Any) -> str | None:
    if old is None or new is None:
        return None
    if isinstance(old, bool):
        return None if isinstance(new, bool) else "bool"
    if isinstance(new, bool):
        return type(old).__name__ if isinstance(old, (int, float)) else None
    if isinstance(old, int):
        return None if isinstance(new, int) else "int"
    if isinstance(old, float):
        return None if isinstance(new, (int, float)) else "float"
    return None


def checked_overrides(cfg: Any, overrides: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The overrides to merge, with unknown keys and type clashes refused (``+key`` adds a key)."""
    out = {}
    for key, value in overrides.items():
        if key.startswith("+"):
            out[key[1:]] = value
            continue
        found, old = _lookup(cfg, key)
        if not found:
            raise UserError(f"--set {key}: unknown key '{key}' in {source} (use +{key}=... to add a new key)")
        want = _type_clash(old, value)
        if want:
            raise UserError(f"--set {key}: key '{key}' expects {want}, got {type(value).__name__} {value!r}")
        out[key] = value
    return out


def _datasets(node: Any) -> Iterable[Any]:
    """A dataloader's dataset and the ones wrapped inside it (Repeat/ClassBalanced/Concat datasets)."""
    if node is None:
        return
    yield node
    inner = node.get("dataset") if hasattr(node, "get") else None
    if inner is not None:
        yield from _datasets(inner)
    for d in (node.get("datasets") or []) if hasattr(node, "get") else []:
        yield from _datasets(d)


def _join(root: Any, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or not root else Path(root) / p


def check_datasets(cfg: Any) -> None:
    """Refuse a run whose data is missing or malformed, naming the file, before the Runner starts."""
    from vlcore.data.coco import read_json, validate_coco

    for loader in DATALOADERS:
        dl = cfg.get(loader)
        if not dl:
            continue
        for ds in _datasets(dl.get("dataset")):
            root = ds.get("data_root")
            if root and not Path(root).is_dir():
                raise UserError(f"{loader}: data_root not found: {root}")
            ann = ds.get("ann_file")
            if ann:
                path = _join(root, ann)
                if not path.is_file():
                    raise UserError(f"{loader}: annotation file not found: {path}")
                if "coco" in str(ds.get("type", "")).lower() and path.suffix == ".json":
                    validate_coco(read_json(path, what="COCO instances annotations"), source=str(path))
            prefix = ds.get("data_prefix") or {}
            for key in ("img", "img_path"):
                if prefix.get(key):
                    folder = _join(root, prefix[key])
                    if not folder.is_dir():
                        raise UserError(f"{loader}: image folder not found: {folder} (data_prefix.{key})")


def resolve_config(config: str | os.PathLike[str], config_dir: Path) -> Path:
    """A config path as given, or a name under the plug-in's config folder (any working directory)."""
    path = Path(config)
    if path.is_file():
        pass
    elif (config_dir / config).is_file():
        path = config_dir / config
    else:
        raise UserError(f"config not found: {config} (known configs are in {config_dir})")
    if path.suffix != ".py":
        raise UserError(f"{path}: plug-in configs are mmengine Python configs (.py)")
    return path


def load_config(config: str | os.PathLike[str], sets: Sequence[str], *, config_dir: Path):
    """The mmengine Config with checked ``--set`` overrides merged in."""
    from mmengine.config import Config

    path = resolve_config(config, config_dir)
    try:
        cfg = Config.fromfile(str(path))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    overrides = checked_overrides(cfg, parse_sets(sets), source=str(path))
    if overrides:
        cfg.merge_from_dict(overrides)
    cfg.setdefault("work_dir", str(Path("work_dirs") / path.stem))
    return cfg, path


def allow_mmengine_checkpoints() -> None:
    """Register the classes an mmengine checkpoint's ``meta`` holds as safe for weights-only loading."""
    import collections

    import numpy as np
    import torch
    from mmengine.config.config import ConfigDict
    from mmengine.logging.history_buffer import HistoryBuffer

    torch.serialization.add_safe_globals([
        HistoryBuffer, ConfigDict, collections.OrderedDict, np.dtype, np.ndarray,
        np.core.multiarray._reconstruct, np.core.multiarray.scalar, type(np.dtype("float64")),
        type(np.dtype("int64")), type(np.dtype("float32")), type(np.dtype("int32")),
    ])


def _rng_state() -> dict:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                      int(has_gauss), float(gauss)],
            "python": list(random.getstate())}


def _set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


_registered = False


def register_plugins() -> None:
    """Register the atomic checkpoint backend and ``ResumableRNGHook`` with mmengine (idempotent)."""
    global _registered
    if _registered:
        return
    import torch
    from mmengine.fileio.backends import LocalBackend, register_backend
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    class AtomicLocalBackend(LocalBackend):
        """``put`` writes a temporary file and renames it into place."""

        def put(self, obj: bytes, filepath) -> None:
            path = Path(filepath)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(obj[: len(obj) // 2])
                f.flush()
                fault_point("checkpoint_write")
                f.write(obj[len(obj) // 2:])
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    register_backend("vlcore_atomic", AtomicLocalBackend, force=True)

    @HOOKS.register_module(force=True)
    class ResumableRNGHook(Hook):
        """RNG states into each checkpoint and back before the first resumed iteration."""

        # Before CheckpointHook (VERY_LOW): a kill at ``train_step`` lands after the update and
        # before that iteration's checkpoint, the worst moment.
        priority = "LOW"

        def __init__(self) -> None:
            self._pending = None

        def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
            checkpoint["rng_state"] = _rng_state()
            # A HistoryBuffer pickles its statistics methods through ``getattr``, which a
            # weights-only load must never allow: keep its numbers as plain tensors instead.
            scalars = (checkpoint.get("message_hub") or {}).get("log_scalars") or {}
            for k, buf in list(scalars.items()):
                if hasattr(buf, "data"):
                    logs, counts = buf.data
                    scalars[k] = {"history_buffer": [torch.as_tensor(logs), torch.as_tensor(counts), buf.max_length]}

        def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
            from mmengine.logging import HistoryBuffer

            self._pending = checkpoint.get("rng_state")
            scalars = (checkpoint.get("message_hub") or {}).get("log_scalars") or {}
            for k, v in list(scalars.items()):
                if isinstance(v, dict) and "history_buffer" in v:
                    logs, counts, max_length = v["history_buffer"]
                    scalars[k] = HistoryBuffer(logs.tolist(), counts.tolist(), max_length)

        def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
            # After mmengine has advanced the dataloader past the trained batches (which would
            # otherwise consume the restored streams).
            if self._pending is not None:
                _set_rng_state(self._pending)
                self._pending = None

        def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
            fault_point("train_step")

    _registered = True


def newest_loadable_checkpoint(work_dir: str | os.PathLike[str]) -> Path | None:
    """The newest ``iter_*.pth`` / ``epoch_*.pth`` in ``work_dir`` that loads (cut files are skipped)."""
    import torch

    allow_mmengine_checkpoints()
    found = []
    for p in Path(work_dir).glob("*.pth"):
        m = re.fullmatch(r"(iter|epoch)_(\d+)\.pth", p.name)
        if m:
            found.append((int(m.group(2)), p))
    for _, p in sorted(found, reverse=True):
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # a file cut by a kill: fall back to the one before
            continue
        return p
    return None


def build_runner(config: str | os.PathLike[str], sets: Sequence[str] = (), work_dir: str | None = None, *,
                 config_dir: Path):
    """An mmengine Runner for a plug-in config whose overrides and data have been checked."""
    from mmengine.runner import Runner

    cfg, path = load_config(config, sets, config_dir=config_dir)
    if work_dir:
        cfg.work_dir = work_dir
    check_datasets(cfg)
    register_plugins()
    allow_mmengine_checkpoints()
    hooks = cfg.get("default_hooks") or {}
    if hooks.get("checkpoint") is not None:
        hooks["checkpoint"]["backend_args"] = dict(backend="vlcore_atomic")
    custom = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == "ResumableRNGHook" for h in custom):
        cfg.custom_hooks = custom + [dict(type="ResumableRNGHook")]
    if cfg.get("resume") and not cfg.get("load_from"):
        latest = newest_loadable_checkpoint(cfg.work_dir)
        if latest is not None:
            cfg.load_from = str(latest)
    return Runner.from_cfg(cfg)


def base_parser(prog: str, description: str, config_dir: Path) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help=f"mmengine config (.py): a path or a name in {config_dir}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an existing config key (+KEY=VALUE adds a new one)")
    p.add_argument("--work-dir", default=None, help="run folder (default work_dirs/<config name>)")
    return p
