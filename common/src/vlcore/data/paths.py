"""Where the real data lives, and one-line errors when it is not there.

The shared data folder sits next to the repository (`<repo>/../shared/data`).
Precedence: an explicit argument, then the `VLREPRO_DATA` environment variable,
then that default. The default is found from this file's location, so it does not
depend on the working directory.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from vlcore.errors import UserError

ENV_VAR = "VLREPRO_DATA"

# common/src/vlcore/data/paths.py -> parents[4] is the repository root
_REPO_ROOT = Path(__file__).resolve().parents[4]


class DataNotFoundError(UserError, FileNotFoundError):
    """A data folder or file is missing; the message names it and what belongs there."""

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(errno.ENOENT, message, os.fspath(path))
        self.message = message
        self.path = Path(path)

    def __str__(self) -> str:
        # OSError would render "[Errno 2] ...: 'path'"; the message already names the path.
        return self.message


class DataFormatError(UserError, ValueError):
    """A data file has the wrong keys, shapes or values; the message names the file."""


def repo_root() -> Path:
    """The monorepo root (the folder holding `common/`)."""
    return _REPO_ROOT


def shared_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The real-data root: `root` if given, else `$VLREPRO_DATA`, else `<repo>/../shared/data`.

    The folder is not checked here; `require_dir` does that where the data is used.
    """
    if root is not None and os.fspath(root) != "":
        return Path(root).expanduser().resolve()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return (_REPO_ROOT.parent / "shared" / "data").resolve()


def dataset_dir(name: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """`<data root>/<name>` (not checked)."""
    return shared_data_root(root) / name


def _hint() -> str:
    return f"(data root: {shared_data_root()}; set {ENV_VAR} or pass the data root explicitly)"


def require_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Return `path` if it is a folder; otherwise raise DataNotFoundError naming it and `what` it should hold."""
    p = Path(path)
    if p.is_dir():
        return p
    kind = "is not a folder" if p.exists() else "not found"
    raise DataNotFoundError(f"data folder {kind}: {p} (expected {what}) {_hint()}", p)


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """Return `path` if it is a file; otherwise raise DataNotFoundError naming it and what it should be."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.parent.is_dir():
        raise DataNotFoundError(f"data folder not found: {p.parent} (expected {what}: {p.name}) {_hint()}", p.parent)
    kind = "is not a file" if p.exists() else "not found"
    raise DataNotFoundError(f"data file {kind}: {p} (expected {what})", p)
