"""`python -m vlcore.bench` (`make bench`): speed against reference implementations.

Runs the shared-core cases below and every paper's `<paper>.bench` module that
exists (each exposes `cases(quick: bool) -> list[BenchCase]`), in one process,
side by side with their reference implementation, in fp32 (default) and, with
``--precision fp32,bf16``, bf16 autocast. bf16 is opt-in because on a CPU without native bf16
matrix units (AVX512-BF16 / AMX) torch emulates it and a full bf16 run takes hours; the
header of BENCH.md records which capability the machine reports.
Ours and the reference are timed step by step in alternation, so that other load on the
machine slows both alike. Writes `OUT/BENCH.md` with samples/s and the ratio ours / reference, the peak resident
memory of each training step, and its achieved FLOP rate (FLOPs counted by
`torch.utils.flop_counter` on one step) against this machine's measured matrix-multiply
peak in the same precision.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vlcore.papers import PAPERS


@dataclass
class BenchCase:
    """One model at one size; `make` builds a fresh module, `batch` one input batch."""

    name: str
    batch_size: int
    ours: Callable[[], nn.Module]
    reference: Callable[[], nn.Module] | None
    reference_name: str
    batch: Callable[[int], tuple]  # batch_size -> forward args
    loss: Callable[[object], torch.Tensor] = lambda out: out.float().pow(2).mean()


def _reset_peak_rss() -> bool:
    # Linux: writing 5 to clear_refs resets VmHWM, the high-water mark of resident memory.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def matmul_peak_gflops(precision: str, n: int = 1536, min_time: float = 1.0) -> float:
    """Measured GFLOP/s of an n x n x n matrix multiply: the machine's practical ceiling."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = _interleaved([lambda: torch.mm(a, b)], min_time)[0]
    return 2 * n**3 / t / 1e9


def step_flops(model: nn.Module, args: tuple, loss_fn, precision: str) -> float:
    """FLOPs of one forward + backward (counted, not timed)."""
    from torch.utils.flop_counter import FlopCounterMode

    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    counter = FlopCounterMode(display=False)
    with counter:
        with ctx():
            loss = loss_fn(model(*args))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


class _Steps:
    """The training step and the inference call of one model, ready to be timed."""

    def __init__(self, model: nn.Module, args: tuple, loss_fn, precision: str) -> None:
        self.model, self.args, self.loss_fn = model, args, loss_fn
        self.flops = step_flops(model, args, loss_fn, precision)
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else torch.enable_grad

    def train(self) -> None:
        self.model.train()
        with self.ctx():
            loss = self.loss_fn(self.model(*self.args))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def infer(self) -> None:
        self.model.eval()
        with torch.inference_mode(), self.ctx():
            self.model(*self.args)

    def peak_train_mib(self) -> float | None:
        """Resident-memory high-water mark of a training step (also the warm-up)."""
        have_rss = _reset_peak_rss()
        self.train()
        return _peak_rss_mib() if have_rss else None


def _interleaved(fns: list[Callable[[], None]], min_time: float, min_iters: int = 3) -> list[float]:
    """Median seconds per call of each function, timed in alternation (A B A B ...), so that a change
    of machine load during the measurement falls on every function alike."""
    for fn in fns:
        fn()  # warm-up: allocator, autotuning, lazy init
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < min_iters or time.perf_counter() - start < min_time * len(fns):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def measure_pair(models: list[nn.Module], args: tuple, loss_fn, precision: str,
                 min_time: float) -> list[dict[str, float]]:
    """Train-step and inference time, peak memory and FLOP rate of ours (and the reference), side by side."""
    steps = [_Steps(m, args, loss_fn, precision) for m in models]
    peaks = [s.peak_train_mib() for s in steps]
    t_train = _interleaved([s.train for s in steps], min_time)
    t_inf = _interleaved([s.infer for s in steps], min_time)
    return [{"train_s": tt, "infer_s": ti, "peak_mib": pk, "gflops": s.flops / tt / 1e9}
            for s, tt, ti, pk in zip(steps, t_train, t_inf, peaks)]


def _subln_stack_cases(quick: bool) -> list[BenchCase]:
    depth, dim, heads, seq = (2, 384, 6, 197) if quick else (4, 768, 12, 197)

    def ours():
        from vlcore.layers.blocks import TransformerStack

        return TransformerStack(depth=depth, dim=dim, num_heads=heads, norm_layout="subln")

    def reference():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchscale.architecture.config import EncoderConfig
            from torchscale.architecture.encoder import Encoder

        enc = Encoder(EncoderConfig(encoder_layers=depth, encoder_embed_dim=dim, encoder_attention_heads=heads,
                                    encoder_ffn_embed_dim=4 * dim, subln=True, dropout=0.0, drop_path_rate=0.0))

        class Wrap(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = enc

            def forward(self, x):
                return self.enc(src_tokens=None, token_embeddings=x)["encoder_out"]

        return Wrap()

    has_ts = importlib.util.find_spec("torchscale") is not None
    return [
        BenchCase(
            name=f"Sub-LN encoder {depth}x{dim} seq {seq}",
            batch_size=8,
            ours=ours,
            reference=reference if has_ts else None,
            reference_name="torchscale Encoder(subln=True)",
            batch=lambda b: (torch.randn(b, seq, dim),),
        )
    ]


def collect_cases(quick: bool, papers: list[str]) -> list[tuple[str, BenchCase]]:
    cases = [("common", c) for c in _subln_stack_cases(quick)]
    for p in PAPERS:
        if p.package not in papers:
            continue
        try:
            spec = importlib.util.find_spec(f"{p.package}.bench")
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            mod = importlib.import_module(f"{p.package}.bench")
            cases += [(p.package, c) for c in mod.cases(quick)]
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vlcore.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results")
    ap.add_argument("--quick", action="store_true", help="smaller models and shorter timing")
    ap.add_argument("--papers", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16 (bf16 autocast)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per measurement (default 3, quick 1)")
    args = ap.parse_args(argv)
    papers = [s for s in args.papers.split(",") if s] or [p.package for p in PAPERS]
    min_time = args.min_time if args.min_time is not None else (1.0 if args.quick else 3.0)
    precisions = [s for s in args.precision.split(",") if s]
    peaks = {prec: matmul_peak_gflops(prec, n=1024 if args.quick else 1536, min_time=min_time) for prec in precisions}
    for prec, g in peaks.items():
        print(f"matmul peak {prec}: {g:.1f} GFLOP/s", flush=True)
    rows = []
    for owner, case in collect_cases(args.quick, papers):
        for prec in precisions:
            x = case.batch(case.batch_size)
            torch.manual_seed(0)
            models = [case.ours()]
            if case.reference is not None:
                torch.manual_seed(0)
                models.append(case.reference())
            ours, ref = (measure_pair(models, x, case.loss, prec, min_time) + [None])[:2]
            row = {"owner": owner, "case": case.name, "precision": prec, "bs": case.batch_size,
                   "train": case.batch_size / ours["train_s"], "infer": case.batch_size / ours["infer_s"],
                   "ref": case.reference_name if ref else "-", "peak_mib": ours["peak_mib"],
                   "gflops": ours["gflops"], "util": ours["gflops"] / peaks[prec]}
            if ref:
                row["ref_train"] = case.batch_size / ref["train_s"]
                row["ref_infer"] = case.batch_size / ref["infer_s"]
                row["ref_peak_mib"] = ref["peak_mib"]
            rows.append(row)
            r = f" | ref train {row['ref_train']:.1f}/s infer {row['ref_infer']:.1f}/s" if ref else ""
            print(f"[{owner}] {case.name} {prec}: train {row['train']:.1f}/s infer {row['infer']:.1f}/s{r}", flush=True)
    lines = [
        "# Benchmarks",
        "",
        f"`python -m vlcore.bench {' '.join(argv if argv is not None else sys.argv[1:])}` on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}. Samples/s (median step); ratio = ours / reference (>1 is faster); "
        "peak = resident-memory high-water mark during the training steps (MiB, whole process); "
        "GFLOP/s = counted FLOPs of a training step / its time, and its share of the measured matmul peak "
        "(" + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items()) + ").",
        "",
        "| owner | case | precision | batch | train /s | ref train /s | train ratio | infer /s | ref infer /s | infer ratio "
        "| peak MiB (ref) | train GFLOP/s (of peak) | reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    def mib(v):
        return "-" if v is None else f"{v:.0f}"

    for r in rows:
        mem = mib(r["peak_mib"]) + (f" ({mib(r.get('ref_peak_mib'))})" if "ref_train" in r else "")
        fl = f"{r['gflops']:.1f} ({100 * r['util']:.0f}%)"
        if "ref_train" in r:
            tr, ir = r["train"] / r["ref_train"], r["infer"] / r["ref_infer"]
            lines.append(f"| {r['owner']} | {r['case']} | {r['precision']} | {r['bs']} | {r['train']:.1f} | {r['ref_train']:.1f} | "
                         f"{tr:.2f} | {r['infer']:.1f} | {r['ref_infer']:.1f} | {ir:.2f} | {mem} | {fl} | {r['ref']} |")
        else:
            lines.append(f"| {r['owner']} | {r['case']} | {r['precision']} | {r['bs']} | {r['train']:.1f} | - | - | "
                         f"{r['infer']:.1f} | - | - | {mem} | {fl} | - |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".BENCH.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "BENCH.md")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
