"""`python -m beit2.repro [--out DIR] [--seeds N] [--data-root DIR]`: BEiT v2's claim in miniature.

Claim: masked image modelling whose targets are VQ-KD codes (a tokenizer distilled from a
semantic teacher) gives better linear-probe accuracy than the same MIM on pixel-level
codes (a tokenizer of identical architecture that reconstructs pixels), at the same
budget, and the VQ-KD codebook stays well used.

Criterion, fixed before the first run: over 3 seeds, the mean linear-probe top-1 of the
VQ-KD student ([CLS] and mean-pooled patch tokens of the last layer, concatenated) beats
the pixel-code student's by >= 2.0 points, the VQ-KD student wins every seed, and the
VQ-KD tokenizer uses >= 50% of its codes on the test images (mean over seeds). Also
reported: the teacher's own probe (the ceiling it can pass on) and a randomly
initialised student (no pretraining). Pipeline: :mod:`beit2.mini`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli
from vlcore.repro import ReproContext, ReproSpec, SeedResult, repro_main

from beit2.mini import MiniConfig, load_mini_data, run_seed

MIN_USAGE = 0.5
FEATURE = "cls+mean"

SPEC = ReproSpec(
    paper="beit2",
    claim=("MIM on VQ-KD codes distilled from a semantic teacher beats MIM on pixel-level codes in linear probing "
           "at equal budget, with a well-used codebook"),
    metric="linear-probe top-1 (%), frozen [CLS]+mean features",
    higher_is_better=True,
    method="VQ-KD MIM",
    baseline="pixel-code MIM",
    min_margin=2.0,
    default_seeds=3,
    min_seed_wins=3,
)

_cache: dict = {}


def _run(seed: int, ctx: ReproContext) -> SeedResult:
    cfg = _cache.setdefault("cfg", MiniConfig())
    data = _cache.get("data")
    if data is None:
        data = _cache["data"] = load_mini_data(cfg, data_root=ctx.data_root)
        ctx.note_data(data.source)
    r = run_seed(cfg, data, seed, log=lambda s: print(f"[beit2] seed {seed}{s}", flush=True))
    curves = r.pop("curves")
    extra = {
        "teacher_probe": r["teacher"],
        "no_pretraining_probe": r["random"]["probe"][FEATURE],
        "vqkd_probe": r["vqkd"]["probe"],
        "pixel_probe": r["pixel"]["probe"],
        "random_probe": r["random"]["probe"],
        "vqkd_codebook_usage": r["vqkd"]["codebook_usage"],
        "pixel_codebook_usage": r["pixel"]["codebook_usage"],
        "vqkd_codebook_perplexity": r["vqkd"]["codebook_perplexity"],
        "pixel_codebook_perplexity": r["pixel"]["codebook_perplexity"],
        "vqkd_tokenizer_rec_loss": [r["vqkd"]["rec_loss_first"], r["vqkd"]["rec_loss_last"]],
        "pixel_tokenizer_rec_loss": [r["pixel"]["rec_loss_first"], r["pixel"]["rec_loss_last"]],
        "vqkd_mim_code_acc": r["vqkd"]["mim_code_acc_last"],
        "pixel_mim_code_acc": r["pixel"]["mim_code_acc_last"],
        "times_s": r["times_s"],
    }
    return SeedResult(method=r["vqkd"]["probe"][FEATURE], baseline=r["pixel"]["probe"][FEATURE], curves=curves,
                      extra=extra)


def main(argv: Sequence[str] | None = None) -> int:
    # One intra-op thread: the numbers then do not depend on the machine's core count (with two
    # threads the float reduction order changes and per-seed probes moved by up to 2 points), and
    # these small matrices gain little from a second thread on a busy machine.
    torch.set_num_threads(1)
    repro_main(SPEC, _run, argv)
    # the codebook-usage half of the claim, folded into the same verdict
    out = Path(next((a.split("=", 1)[1] for a in (argv or sys.argv[1:]) if a.startswith("--out=")), "")
               or _arg_after(argv, "--out") or "results").resolve()
    path = out / "beit2.json"
    result = json.loads(path.read_text())
    usages = [e["vqkd_codebook_usage"] for e in result["extra"].values()]
    usage = statistics.fmean(usages)
    summary = {
        k: statistics.fmean(e[k] for e in result["extra"].values())
        for k in ("teacher_probe", "no_pretraining_probe", "vqkd_codebook_usage", "pixel_codebook_usage")
    }
    usage_ok = usage >= MIN_USAGE
    result["summary"] = summary
    result["codebook_criterion"] = f"mean VQ-KD codebook usage on the test images >= {MIN_USAGE:g} (got {usage:.3f})"
    result["criterion"] += f"; {result['codebook_criterion']}"
    result["holds"] = bool(result["holds"] and usage_ok)
    tmp = out / ".beit2.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, path)
    print(f"[beit2] teacher {summary['teacher_probe']:.1f}%, no pretraining {summary['no_pretraining_probe']:.1f}%, "
          f"VQ-KD codebook usage {usage:.2f} (need >= {MIN_USAGE}) -> {'HOLDS' if result['holds'] else 'DOES NOT HOLD'}",
          flush=True)
    return 0 if result["holds"] else 1


def _arg_after(argv: Sequence[str] | None, flag: str) -> str | None:
    args = list(argv if argv is not None else sys.argv[1:])
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


if __name__ == "__main__":
    run_cli(main)
