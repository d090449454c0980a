"""Official-checkpoint verification: `python -m <paper>.verify`.

Each paper keeps `<paper>/RESULTS.yaml`: every headline number of the paper,
the official checkpoint behind it (name, release URL, sha256 where known), a
fixed, documented evaluation subset and the value expected on it, and whether
our number comes from converted official weights or from our own training.
`verify_main` resolves a checkpoint (local path, user cache, or download when
a network exists), checks its sha256, runs the paper's evaluation on the subset
and compares with the expected value.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import yaml

from vlcore.errors import UserError


class CheckpointUnavailableError(UserError):
    pass


@dataclass(frozen=True)
class Headline:
    id: str
    metric: str
    benchmark: str
    paper_value: float | None
    checkpoint: dict  # name, url, sha256, filename
    eval_subset: str
    limit: int | None
    expected: float | None
    tolerance: float | None
    ours: str  # converted | trained | pending
    raw: dict


def load_results(path: str | os.PathLike) -> list[Headline]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"results file not found: {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    items = doc.get("results") or []
    out = []
    for i, r in enumerate(items):
        missing = [k for k in ("id", "metric", "benchmark", "paper_value") if k not in r]
        if missing:
            raise UserError(f"{path}: entry {i} lacks {', '.join(missing)}")
        exp = r.get("expected") or {}
        out.append(
            Headline(
                id=r["id"],
                metric=r["metric"],
                benchmark=r["benchmark"],
                paper_value=r["paper_value"],
                checkpoint=r.get("checkpoint") or {},
                eval_subset=r.get("eval_subset", ""),
                limit=r.get("limit"),
                expected=exp.get("value"),
                tolerance=exp.get("tolerance"),
                ours=r.get("ours", "pending"),
                raw=r,
            )
        )
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("VLREPRO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vlrepro")
    return Path(base) / "checkpoints"


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("hf://"):
        # hf://<repo id>/<file path inside the repo>
        from huggingface_hub import hf_hub_download

        parts = url[len("hf://") :].split("/")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        got = hf_hub_download(repo, filename)
        shutil.copyfile(got, dest)
        return
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".dl-")
    os.close(fd)
    try:
        urllib.request.urlretrieve(url, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_checkpoint(name_or_path: str, headlines: Sequence[Headline], paper: str) -> tuple[Path, Headline | None]:
    """A local file wins; otherwise the named official checkpoint from cache or its URL."""
    p = Path(name_or_path)
    entry = next((h for h in headlines if h.checkpoint.get("name") == name_or_path or h.id == name_or_path), None)
    if p.exists():
        if entry is None:
            entry = next((h for h in headlines if h.checkpoint.get("filename") == p.name), None)
        return p, entry
    if entry is None:
        known = sorted({h.checkpoint.get("name") for h in headlines if h.checkpoint.get("name")})
        raise CheckpointUnavailableError(
            f"'{name_or_path}' is neither a file nor a checkpoint named in {paper}/RESULTS.yaml (known: {', '.join(known) or 'none'})"
        )
    ck = entry.checkpoint
    url = ck.get("url")
    filename = ck.get("filename") or (Path(url).name if url else f"{ck['name']}.pth")
    dest = cache_dir() / paper / filename
    if not dest.exists():
        if not url:
            raise CheckpointUnavailableError(f"{ck['name']}: no release URL recorded; put the file at {dest}")
        try:
            _download(url, dest)
        except Exception as e:  # any network or hub failure reads the same to the user
            raise CheckpointUnavailableError(
                f"cannot download {ck['name']} from {url} ({type(e).__name__}); offline? put the file at {dest} or pass a path"
            ) from e
    want = ck.get("sha256")
    if want:
        got = sha256_file(dest)
        if got != want:
            raise CheckpointUnavailableError(f"{dest}: sha256 {got[:12]}… does not match the recorded {want[:12]}…")
    return dest, entry


def verify_main(
    paper: str,
    results_path: str | os.PathLike,
    evaluate: Callable[[Headline | None, Path, Path, int | None], float],
    argv: Sequence[str] | None = None,
) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {paper}.verify", description="evaluate an official checkpoint on a fixed subset")
    ap.add_argument("--checkpoint", required=True, help="a checkpoint name from RESULTS.yaml, or a local path")
    ap.add_argument("--data", required=True, help="root of the benchmark's data in its usual layout")
    ap.add_argument("--limit", type=int, default=None, help="evaluate the first N items of the subset")
    args = ap.parse_args(argv)
    headlines = load_results(results_path)
    path, entry = resolve_checkpoint(args.checkpoint, headlines, paper)
    data = Path(args.data)
    if not data.exists():
        raise UserError(f"data folder not found: {data}")
    limit = args.limit if args.limit is not None else (entry.limit if entry else None)
    value = evaluate(entry, path, data, limit)
    print(f"{paper} {entry.id if entry else path.name}: {entry.metric if entry else 'metric'} = {value:.4f}")
    if entry is None or entry.expected is None:
        print("no expected value recorded for this checkpoint and subset; nothing to compare")
        return 0
    tol = entry.tolerance or 0.0
    ok = abs(value - entry.expected) <= tol
    print(f"expected {entry.expected} ± {tol} on '{entry.eval_subset}' -> {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1
