"""`python -m vlcore.report`: run every paper's mini reproduction and tabulate them.

    python -m vlcore.report --run [--out results] [--papers magneto,beit2] [--seeds N]
    python -m vlcore.report [--out results]          # tabulate existing JSONs only

Writes `OUT/REPRO.md` (one row per paper, with the plot of each) and prints the
table. A paper whose `repro` entry point does not exist yet is listed as such,
with the issue that tracks it. Exit code 1 when any claim that ran does not hold.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.papers import PAPERS


def _has_repro(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.repro") is not None
    except ModuleNotFoundError:
        return False


def run_all(out: Path, papers: list[str], seeds: int | None, data_root: str | None) -> dict[str, dict]:
    status: dict[str, dict] = {}
    for p in PAPERS:
        if p.package not in papers:
            continue
        if not _has_repro(p.package):
            status[p.package] = {"state": "not implemented", "issue": p.issue}
            continue
        cmd = [sys.executable, "-m", f"{p.package}.repro", "--out", str(out)]
        if seeds:
            cmd += ["--seeds", str(seeds)]
        if data_root:
            cmd += ["--data-root", data_root]
        print(f"== {p.package}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd)
        status[p.package] = {"state": "ran", "rc": rc, "wall_s": round(time.time() - t0, 1)}
    return status


def _fmt(side: dict) -> str:
    return f"{side['mean']:.3f} ± {side['std']:.3f}"


def tabulate(out: Path, status: dict[str, dict] | None = None) -> tuple[str, bool]:
    rows = [
        "| paper | claim (in miniature) | data | metric | method | baseline | margin (need) | seeds | holds | time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    plots = []
    all_hold = True
    for p in PAPERS:
        path = out / f"{p.package}.json"
        st = (status or {}).get(p.package, {})
        if path.exists() and st.get("state") != "not implemented":
            r = json.loads(path.read_text())
            holds = bool(r["holds"])
            all_hold &= holds
            if st.get("state") == "ran" and st.get("rc") not in (0, 1):
                holds, all_hold = False, False
                r["claim"] += f" (run crashed, exit {st['rc']}; numbers are from an earlier run)"
            rows.append(
                f"| {p.package} | {r['claim']} | {r['data']} | {r['metric']} | {r['method']['name']}: {_fmt(r['method'])} "
                f"| {r['baseline']['name']}: {_fmt(r['baseline'])} | {r['margin']:+.3f} ({r['min_margin']:g}) "
                f"| {len(r['seeds'])} | {'yes' if holds else '**no**'} | {r['wall_time_s']:.0f}s |"
            )
            if r.get("plot"):
                plots.append(f"### {p.package}\n\n![{p.package}]({r['plot']})\n")
        elif st.get("state") == "ran":
            all_hold = False
            rows.append(f"| {p.package} | run failed (exit {st['rc']}) without writing a result | | | | | | | **no** | {st['wall_s']:.0f}s |")
        else:
            rows.append(f"| {p.package} | not implemented yet (issue #{p.issue}) | | | | | | | - | |")
    md = "# Mini reproductions\n\nWritten by `make repro` (`python -m vlcore.report --run`).\n\n" + "\n".join(rows) + "\n"
    if plots:
        md += "\n## Training curves\n\n" + "\n".join(plots)
    return md, all_hold


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vlcore.report", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results")
    ap.add_argument("--run", action="store_true", help="run each paper's mini reproduction first")
    ap.add_argument("--papers", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    known = [p.package for p in PAPERS]
    papers = [s for s in args.papers.split(",") if s] or known
    bad = [s for s in papers if s not in known]
    if bad:
        raise UserError(f"--papers: unknown paper(s) {', '.join(bad)}; known: {', '.join(known)}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    status = run_all(out, papers, args.seeds, args.data_root) if args.run else None
    md, all_hold = tabulate(out, status)
    tmp = out / ".REPRO.md.tmp"
    tmp.write_text(md)
    os.replace(tmp, out / "REPRO.md")
    print(md.split("\n## Training curves")[0])
    print(f"written: {out / 'REPRO.md'}")
    return 0 if all_hold else 1


if __name__ == "__main__":
    run_cli(main)
