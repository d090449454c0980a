"""The mini-reproduction contract shared by every paper.

A paper describes its claim with a `ReproSpec` and supplies `run_seed(seed, ctx)`,
which trains the method and the baseline the paper beats for one seed and
returns their final metrics (and, optionally, curves to plot). `repro_main`
runs the seeds, writes `DIR/<paper>.json` and `DIR/<paper>.png`, prints a
summary and exits 0 only when the claim holds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from vlcore.errors import UserError


@dataclass(frozen=True)
class ReproSpec:
    paper: str
    claim: str  # one sentence, the paper's central claim in miniature
    metric: str  # e.g. "top-1 accuracy (%)"
    higher_is_better: bool
    method: str
    baseline: str
    min_margin: float  # the mean advantage of method over baseline the claim needs
    default_seeds: int = 3
    # How many seeds the method must win; None means a strict majority.
    min_seed_wins: int | None = None


@dataclass
class SeedResult:
    method: float
    baseline: float
    # name -> [[step, value], ...]; plotted as training curves.
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class ReproContext:
    out_dir: Path
    data_root: Path
    seeds: list[int]
    data: str = ""  # set by the paper: which data the run used ("real: ..." / "generated: ...")

    def note_data(self, description: str) -> None:
        self.data = description


def _stats(values: list[float]) -> dict:
    return {
        "per_seed": values,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def evaluate_claim(spec: ReproSpec, method: list[float], baseline: list[float]) -> dict:
    sign = 1.0 if spec.higher_is_better else -1.0
    diffs = [sign * (m - b) for m, b in zip(method, baseline)]
    finite = all(math.isfinite(x) for x in method)
    wins = sum(d > 0 for d in diffs)
    need = spec.min_seed_wins if spec.min_seed_wins is not None else len(diffs) // 2 + 1
    margin = statistics.fmean(diffs) if finite else float("nan")
    holds = bool(finite and margin >= spec.min_margin and wins >= need)
    better = "higher" if spec.higher_is_better else "lower"
    criterion = (
        f"mean({spec.method}) is {better} than mean({spec.baseline}) by >= {spec.min_margin:g} "
        f"and {spec.method} wins >= {need} of {len(diffs)} seeds"
    )
    return {"margin": margin, "seed_margins": diffs, "wins": wins, "criterion": criterion, "holds": holds}


def plot_curves(path: Path, spec: ReproSpec, runs: dict[int, SeedResult]) -> bool:
    curves = [(s, r.curves) for s, r in runs.items() if r.curves]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k for _, c in curves for k in c})
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        for j, (seed, c) in enumerate(curves):
            if name not in c or not c[name]:
                continue
            xs, ys = zip(*c[name])
            ax.plot(xs, ys, color=colours[i % len(colours)], alpha=0.85, lw=1.2, label=name if j == 0 else None)
    ax.set_xlabel("step")
    ax.set_title(f"{spec.paper}: {spec.method} vs {spec.baseline}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def default_data_root() -> Path:
    from vlcore.data.paths import shared_data_root

    return Path(shared_data_root())


def repro_main(
    spec: ReproSpec,
    run_seed: Callable[[int, ReproContext], SeedResult],
    argv: Sequence[str] | None = None,
) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {spec.paper}.repro", description=f"Mini reproduction: {spec.claim}")
    p.add_argument("--out", default="results", help="folder for <paper>.json and <paper>.png (default: results)")
    p.add_argument("--seeds", type=int, default=spec.default_seeds, help=f"number of seeds (default {spec.default_seeds})")
    p.add_argument("--data-root", default=None, help="real data folder (default: ../shared/data next to the repo)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root).resolve() if args.data_root else default_data_root()
    ctx = ReproContext(out_dir=out, data_root=data_root, seeds=list(range(args.seeds)))

    t0 = time.time()
    runs: dict[int, SeedResult] = {}
    for seed in ctx.seeds:
        ts = time.time()
        r = run_seed(seed, ctx)
        runs[seed] = r
        print(
            f"[{spec.paper}] seed {seed}: {spec.method} {r.method:.4f}  {spec.baseline} {r.baseline:.4f}  "
            f"({time.time() - ts:.0f}s)",
            flush=True,
        )
    m = [runs[s].method for s in ctx.seeds]
    b = [runs[s].baseline for s in ctx.seeds]
    verdict = evaluate_claim(spec, m, b)
    result = {
        "paper": spec.paper,
        "claim": spec.claim,
        "data": ctx.data or "unspecified",
        "metric": spec.metric,
        "higher_is_better": spec.higher_is_better,
        "seeds": ctx.seeds,
        "method": {"name": spec.method, **_stats(m)},
        "baseline": {"name": spec.baseline, **_stats(b)},
        **verdict,
        "min_margin": spec.min_margin,
        "extra": {str(s): runs[s].extra for s in ctx.seeds if runs[s].extra},
        "wall_time_s": round(time.time() - t0, 1),
    }
    plotted = plot_curves(out / f"{spec.paper}.png", spec, runs)
    result["plot"] = f"{spec.paper}.png" if plotted else None
    tmp = out / f".{spec.paper}.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, out / f"{spec.paper}.json")
    print(
        f"[{spec.paper}] {spec.metric}: {spec.method} {result['method']['mean']:.4f} ± {result['method']['std']:.4f} | "
        f"{spec.baseline} {result['baseline']['mean']:.4f} ± {result['baseline']['std']:.4f} | margin "
        f"{verdict['margin']:+.4f} (need >= {spec.min_margin:g}) -> {'HOLDS' if verdict['holds'] else 'DOES NOT HOLD'}",
        flush=True,
    )
    return 0 if verdict["holds"] else 1


def load_result(path: Path) -> dict:
    return json.loads(Path(path).read_text())


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m <paper>.repro")
