"""Checkpoints: atomic writes, safetensors weights, a weights-only training state, a resumable folder layout.

Layout of a checkpoint folder (what `Trainer` writes):

    ckpt/
      step_000100/model.safetensors   weights (exact bits)
      step_000100/ema.safetensors     EMA weights, when the run keeps an EMA
      step_000100/state.pt            optimizer, step, epoch, data position, config (torch.save)
      step_000100/rng_rank0.pt        RNG states of python / numpy / torch, one file per rank
      latest                          "step_000100", written last and atomically

A step folder is assembled under `.staging-step_000100` and renamed into place
only when complete; `latest` is replaced after that. A run killed at any moment
therefore leaves `latest` pointing to a complete folder.

Reading never executes code: state files are read with `torch.load(weights_only=True)`,
which refuses pickles that name functions or classes. Every read failure raises
`CheckpointError` with one line naming the file.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from vlcore.errors import UserError
from vlcore.faults import fault_point

LATEST = "latest"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_STAGING = ".staging-"
_REPLACED = ".replaced-"


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable, or not plain data."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit the model: missing / unexpected keys or shape mismatches."""

    def __init__(self, message: str, *, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)  # (key, checkpoint shape, model shape)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    # torch's weights-only refusal is a paragraph; its useful part names the global.
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"Unsupported operand \d+", text)
    if m:
        return m.group(0)
    first = text.splitlines()[0] if text else type(e).__name__
    return first if len(first) <= 200 else first[:197] + "..."


# --- atomic writes ----------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj_or_writer: Any, path: str | Path) -> Path:
    """Write `path` so that readers see either the old file or the complete new one.

    `obj_or_writer` is bytes (written as-is), a callable `writer(tmp_path)` that
    writes the file, or any other object (written with `torch.save`). The data go
    to a temporary file in the same folder, are fsynced, then `os.replace`d.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if isinstance(obj_or_writer, (bytes, bytearray, memoryview)):
            Path(tmp).write_bytes(obj_or_writer)
        elif callable(obj_or_writer):
            obj_or_writer(tmp)
        else:
            torch.save(obj_or_writer, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp (and some writers) make it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


# --- weights ----------------------------------------------------------------


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied weights); store a copy of each repeat.
    out, seen = {}, set()
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"save_weights: '{k}' is a {type(v).__name__}, not a tensor")
        t = v.detach().to("cpu")
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[k] = t.contiguous()
    return out


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str] | None = None) -> Path:
    """Save a state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = _plain_tensors(state_dict)
    return atomic_save(lambda tmp: save_file(tensors, tmp, metadata=metadata), path)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or from .pt / .pth / .bin without running code.

    Torch files holding `{"model": sd}`, `{"state_dict": sd}` or `{"module": sd}`
    (the layouts of most released checkpoints) are unwrapped.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # SafetensorError, OSError, ...
            raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "module"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return dict(obj)


def _torch_load(path: Path) -> Any:
    _check_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Unsupported global" in str(e):  # the pickle names a function or class: never run it
            raise CheckpointError(
                f"{path}: refused to load: the file holds Python objects, not only tensors and plain data "
                f"({_one_line(e)})"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({_one_line(e)})") from None


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str = "state dict") -> None:
    """Load `state_dict` into `model`, or raise `CheckpointMismatchError` listing every difference."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        (k, tuple(state_dict[k].shape), tuple(own[k].shape))
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:

        def few(items: list, n: int = 5) -> str:
            s = ", ".join(str(i) for i in items[:n])
            return s + (f", ... (+{len(items) - n})" if len(items) > n else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing [{few(missing)}]")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected [{few(unexpected)}]")
        if mismatched:
            shapes = [f"{k}: {list(a)} vs model {list(b)}" for k, a, b in mismatched]
            parts.append(f"{len(mismatched)} shape mismatches [{few(shapes, 3)}]")
        raise CheckpointMismatchError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(parts),
            missing=missing, unexpected=unexpected, mismatched=mismatched,
        )
    model.load_state_dict(state_dict, strict=True)


# --- training state ---------------------------------------------------------


def save_training_state(state: Mapping[str, Any], path: str | Path) -> Path:
    """Save optimizer / step / data position / RNG (tensors and plain containers only), atomically."""
    return atomic_save(dict(state), path)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by `save_training_state`; never executes code from the file."""
    obj = _torch_load(Path(path))
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a training state (expected a dict, got {type(obj).__name__})")
    return obj


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and CUDA) as tensors and plain containers."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # Only this process's device: asking for all of them would open a context on every GPU.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA state goes to the current device)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _as_tuple(x: Any) -> Any:
    # random.setstate wants tuples; keep them tuples even if a container turned them into lists.
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --- checkpoint folders -----------------------------------------------------


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def staging_dir(ckpt_dir: str | Path, step: int, create: bool = True) -> Path:
    """The folder in which the files of checkpoint `step` are assembled (emptied and created if `create`)."""
    path = Path(ckpt_dir) / f"{_STAGING}{step_dir_name(step)}"
    if create:
        if path.exists():
            shutil.rmtree(path)  # left over by a killed run
        path.mkdir(parents=True)
    return path


def commit_checkpoint(ckpt_dir: str | Path, step: int, keep_last: int | None = None) -> Path:
    """Move the staged folder of `step` into place, then point `latest` at it, then prune."""
    ckpt_dir = Path(ckpt_dir)
    staged = ckpt_dir / f"{_STAGING}{step_dir_name(step)}"
    final = ckpt_dir / step_dir_name(step)
    for f in staged.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(staged)
    replaced = ckpt_dir / f"{_REPLACED}{final.name}"
    if final.exists():
        # The same step written again (a run resumed from an older checkpoint). Move the old
        # copy aside first: if killed in between, `latest_checkpoint` moves it back.
        if replaced.exists():
            shutil.rmtree(replaced)
        os.replace(final, replaced)
    os.replace(staged, final)
    _fsync_dir(ckpt_dir)
    if replaced.exists():
        shutil.rmtree(replaced)
    atomic_save(f"{final.name}\n".encode(), ckpt_dir / LATEST)
    if keep_last:
        prune_checkpoints(ckpt_dir, keep_last)
    return final


def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    *,
    model_state: Mapping[str, torch.Tensor],
    training_state: Mapping[str, Any] | None = None,
    extra_weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Single-process convenience: stage model + state (+ extra `name.safetensors`), then commit."""
    stage = staging_dir(ckpt_dir, step)
    try:
        save_weights(model_state, stage / MODEL_FILE)
        fault_point("checkpoint_write")
        for name, sd in (extra_weights or {}).items():
            save_weights(sd, stage / f"{name}.safetensors")
        if training_state is not None:
            save_training_state(training_state, stage / STATE_FILE)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return commit_checkpoint(ckpt_dir, step, keep_last)


def read_latest_name(ckpt_dir: str | Path) -> str:
    path = Path(ckpt_dir) / LATEST
    try:
        name = path.read_text().strip()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if not _STEP_DIR.match(name):
        raise CheckpointError(f"{path}: does not name a step folder (contains {name[:40]!r})")
    return name


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The folder `latest` points to, or None when no checkpoint was committed yet."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / LATEST).exists():
        return None
    target = ckpt_dir / read_latest_name(ckpt_dir)
    replaced = ckpt_dir / f"{_REPLACED}{target.name}"
    if not target.exists() and (replaced / MODEL_FILE).is_file():
        try:
            os.replace(replaced, target)  # a replacement of this step was interrupted
        except OSError:
            pass  # another rank moved it back first
    if not (target / MODEL_FILE).is_file():
        raise CheckpointError(f"{ckpt_dir / LATEST}: points to {target.name}, which has no {MODEL_FILE}")
    return target


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Committed step folders, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(ckpt_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` step folders (never the one `latest` names)."""
    ckpt_dir = Path(ckpt_dir)
    keep = {p.name for p in list_checkpoints(ckpt_dir)[-keep_last:]} if keep_last > 0 else set()
    if (ckpt_dir / LATEST).exists():
        keep.add(read_latest_name(ckpt_dir))
    removed = []
    for p in list_checkpoints(ckpt_dir):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def resolve_checkpoint(path: str | Path) -> Path:
    """A step folder, or a checkpoint root (its `latest`), as a step folder; CheckpointError if neither."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return path
    if (path / LATEST).exists():
        found = latest_checkpoint(path)
        assert found is not None
        return found
    raise CheckpointError(f"{path}: not a checkpoint folder (no {MODEL_FILE} and no '{LATEST}' file)")
