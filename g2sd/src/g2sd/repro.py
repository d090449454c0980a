"""Mini reproduction of G2SD on the real CIFAR-10 subset: ``python -m g2sd.repro``.

Claim in miniature: a small ViT trained by generic distillation (GD) and then specific
distillation (SD) beats the same student trained (A) from scratch with labels, (B) from
scratch with SD only, and (C) with GD followed by plain fine-tuning.

Protocol (``configs/repro_cifar10.yaml``; every student arm takes the same optimiser steps):

1. Teacher, trained once per run with its own seed: MAE pre-training on the training images
   (norm-pixel loss, mask 0.75), then supervised fine-tuning -> teacher accuracy T.
2. Per seed: GD of the student MAE from the pre-trained teacher (decoder block ``layer_index``
   of the teacher's decoder as target, LayerNorm without affine, Smooth-L1 beta 2, every
   token, one shared mask), then the four arms A-D.
3. Metrics: CIFAR-10 test top-1 of every arm and its retention acc / T.

Criterion, fixed before any run: the claim holds when mean(D) - mean(best other arm)
exceeds twice the pooled seed standard deviation sqrt((s_D^2 + s_best^2) / 2).
``--config smoke`` runs a seconds-long version for tests (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli
from vlcore.config import load_config
from vlcore.errors import UserError
from vlcore.repro import ReproContext, ReproSpec, SeedResult, repro_main
from vlcore.train import TrainConfig, seed_everything

from g2sd.config import ArchConfig, ClsConfig, DataConfig, G2SDConfig, GDConfig, MAEConfig, resolve_config_path

ARMS = {
    "A": "scratch + CE",
    "B": "scratch + SD",
    "C": "GD + fine-tune",
    "D": "GD + SD (G2SD)",
}

SPEC = ReproSpec(
    paper="g2sd",
    claim="a ViT student trained by generic then specific distillation beats scratch, SD-only and GD + fine-tuning",
    metric="CIFAR-10 test top-1 (%)",
    higher_is_better=True,
    method="GD + SD (G2SD)",
    baseline="best other arm",
    min_margin=0.0,  # replaced by the data-dependent criterion in `finalize`
    default_seeds=3,
)


@dataclass(frozen=True)
class MiniConfig:
    teacher: ArchConfig = field(default_factory=lambda: ArchConfig(
        img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, decoder_embed_dim=64, decoder_depth=4,
        decoder_num_heads=2, global_pool="avg"))
    student: ArchConfig = field(default_factory=lambda: ArchConfig(
        img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2, decoder_embed_dim=32, decoder_depth=2,
        decoder_num_heads=2))
    layer_index: int = 2  # half of the teacher decoder, as the official 4 of 8
    mask_ratio: float = 0.75
    train_subset: int = 0  # 0: all 5,000 training images
    eval_subset: int = 0  # 0: all 1,000 test images
    batch_size: int = 128
    teacher_seed: int = 1000
    teacher_mae_epochs: int = 10
    teacher_ft_epochs: int = 8
    gd_epochs: int = 4
    student_epochs: int = 3  # every arm A-D
    # Absolute peak lrs: the paper's blr x batch / 256 rule is meant for hundreds of epochs, not a few.
    mae_lr: float = 1.5e-3
    gd_lr: float = 1.5e-3
    ft_lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 0.75  # fine-tuning a pre-trained encoder (teacher, arms C and D)
    scratch_layer_decay: float = 1.0  # arms A and B have no pre-trained layers to protect
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    pad_crop: int = 4


CONFIGS = {"default": "repro_cifar10.yaml", "smoke": "repro_cifar10_smoke.yaml"}


def _train(mc: MiniConfig, out: Path, epochs: int, lr: float, *, seed: int, layer_decay: float = 1.0,
           betas: tuple[float, float] = (0.9, 0.999), n_train: int) -> TrainConfig:
    steps_per_epoch = max(1, n_train // mc.batch_size)
    return TrainConfig(
        out_dir=str(out), seed=seed, epochs=epochs, global_batch_size=mc.batch_size,
        per_device_batch_size=mc.batch_size, lr=lr, weight_decay=mc.weight_decay, layer_decay=layer_decay,
        betas=betas, warmup_steps=int(mc.warmup_epochs * steps_per_epoch), min_lr=1e-6, log_interval=10**6,
        ckpt_interval=10**9, keep_last=1, device="cpu",
    )


def _base(mc: MiniConfig, data_root: Path) -> G2SDConfig:
    data = DataConfig(dataset="cifar10", root=str(data_root), num_classes=10, train_subset=mc.train_subset,
                      eval_subset=mc.eval_subset, pad_crop=mc.pad_crop)
    return G2SDConfig(
        data=data, teacher=mc.teacher, model=mc.student, mae=MAEConfig(mask_ratio=mc.mask_ratio, norm_pix_loss=True),
        gd=GDConfig(layer_index=mc.layer_index), cls=ClsConfig(label_smoothing=mc.label_smoothing, mixup=0.0, cutmix=0.0),
        eval_batch_size=500,
    )


# --- the runs: a small task graph, each task in a single-threaded process ---------------------------
#
# teacher_mae -> teacher_ft;  teacher_mae -> gd(s) -> C(s);  gd(s) + teacher_ft -> D(s);  teacher_ft -> B(s);  A(s).
# Tiny models run best on one thread per core, so `workers` single-threaded processes share the tasks;
# every task seeds itself and reads its inputs from files, so the numbers do not depend on the schedule
# or on the number of workers.

PRIORITY = {"teacher_mae": 0, "teacher_ft": 1, "gd": 2, "D": 3, "B": 4, "C": 5, "A": 6}


def _needs(kind: str, seed: int) -> list[tuple[str, int]]:
    return {
        "teacher_mae": [], "teacher_ft": [("teacher_mae", -1)], "gd": [("teacher_mae", -1)], "A": [],
        "B": [("teacher_ft", -1)], "C": [("gd", seed)], "D": [("gd", seed), ("teacher_ft", -1)],
    }[kind]


def run_task(mc: MiniConfig, kind: str, seed: int, work: str, data_root: str) -> dict:
    """One training run; inputs and outputs are safetensors files in ``work``."""
    torch.set_num_threads(1)
    from vlcore.checkpoint import load_weights, save_weights

    from g2sd.engine.stages import build_mae_model, build_vit, run_finetune, run_gd, run_mae_pretrain, run_sd, top1

    t0 = time.time()
    work_dir = Path(work)
    base = _base(mc, Path(data_root))
    n_train = mc.train_subset or 5000
    out = work_dir / (f"{kind}.safetensors" if seed < 0 else f"{kind}_{seed}.safetensors")
    result: dict = {}
    if kind == "teacher_mae":
        seed_everything(mc.teacher_seed)
        cfg = replace(base, stage="mae_pretrain", model=mc.teacher,
                      train=_train(mc, work_dir / "run_teacher_mae", mc.teacher_mae_epochs, mc.mae_lr,
                                   seed=mc.teacher_seed, betas=(0.9, 0.95), n_train=n_train))
        save_weights(run_mae_pretrain(cfg).model.state_dict(), out)
    elif kind == "teacher_ft":
        seed_everything(mc.teacher_seed + 1)
        cfg = replace(base, stage="finetune", model=mc.teacher,
                      train=_train(mc, work_dir / "run_teacher_ft", mc.teacher_ft_epochs, mc.ft_lr,
                                   seed=mc.teacher_seed + 1, layer_decay=mc.layer_decay, n_train=n_train))
        r = run_finetune(cfg, init=load_weights(work_dir / "teacher_mae.safetensors"))
        save_weights(r.model.state_dict(), out)
        result["top1"] = top1(r.model, cfg)
    elif kind == "gd":
        seed_everything(10 * seed)
        teacher = build_mae_model(mc.teacher, mask_ratio=mc.mask_ratio)
        teacher.load_state_dict(load_weights(work_dir / "teacher_mae.safetensors"))
        cfg = replace(base, stage="gd", train=_train(mc, work_dir / f"run_gd_{seed}", mc.gd_epochs, mc.gd_lr,
                                                     seed=10 * seed, betas=(0.9, 0.95), n_train=n_train))
        save_weights(run_gd(cfg, teacher=teacher).model.state_dict(), out)
    else:  # arms A-D: the same steps, data order and initial draws for every arm of a seed
        pretrained = kind in ("C", "D")
        distill = kind in ("B", "D")
        seed_everything(10 * seed + 1)
        cfg = replace(base, stage="sd" if distill else "finetune",
                      train=_train(mc, work_dir / f"run_{kind}_{seed}", mc.student_epochs, mc.ft_lr, seed=10 * seed + 1,
                                   layer_decay=mc.layer_decay if pretrained else mc.scratch_layer_decay,
                                   n_train=n_train))
        init = load_weights(work_dir / f"gd_{seed}.safetensors") if pretrained else None
        if distill:
            teacher = build_vit(mc.teacher, 10)
            teacher.load_state_dict(load_weights(work_dir / "teacher_ft.safetensors"))
            r = run_sd(cfg, teacher=teacher, init=init)
        else:
            r = run_finetune(cfg, init=init)
        result["top1"] = top1(r.model, cfg)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def run_all(mc: MiniConfig, seeds: Sequence[int], data_root: Path, workers: int) -> dict:
    """Every task of every seed; returns {(kind, seed): result}."""
    tasks = [("teacher_mae", -1), ("teacher_ft", -1)]
    for s in seeds:
        tasks += [("gd", s), ("A", s), ("B", s), ("C", s), ("D", s)]
    tasks.sort(key=lambda t: (PRIORITY[t[0]], t[1]))
    done: dict = {}
    with tempfile.TemporaryDirectory(prefix="g2sd-repro-") as work:
        if workers <= 1:
            for kind, seed in tasks:  # this order respects every dependency
                done[(kind, seed)] = run_task(mc, kind, seed, work, str(data_root))
                _log_task(kind, seed, done[(kind, seed)])
            return done
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        pending, running = list(tasks), {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            while pending or running:
                ready = [t for t in pending if all(d in done for d in _needs(*t))]
                for t in ready[: max(0, workers - len(running))]:
                    pending.remove(t)
                    running[pool.submit(run_task, mc, t[0], t[1], work, str(data_root))] = t
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    t = running.pop(f)
                    done[t] = f.result()
                    _log_task(*t, done[t])
    return done


def _log_task(kind: str, seed: int, r: dict) -> None:
    what = kind if seed < 0 else f"{kind}{' ' + ARMS[kind] if kind in ARMS else ''} (seed {seed})"
    acc = f" top-1 {r['top1']:.2f}" if "top1" in r else ""
    print(f"[g2sd] {what}:{acc} ({r['seconds']:.0f}s)", flush=True)


def run_seed_with(mc: MiniConfig, workers: int):
    cache: dict = {}

    def run_seed(seed: int, ctx: ReproContext) -> SeedResult:
        from vlcore.data.cifar import cifar10_path

        ctx.note_data(f"real: CIFAR-10 subset {cifar10_path(root=ctx.data_root)} "
                      f"({mc.train_subset or 5000} train / {mc.eval_subset or 1000} test images, 32x32)")
        if "runs" not in cache:  # all seeds at once, so the workers stay busy
            cache["runs"] = run_all(mc, ctx.seeds, ctx.data_root, workers)
        runs = cache["runs"]
        t_acc = runs[("teacher_ft", -1)]["top1"]
        accs = {a: runs[(a, seed)]["top1"] for a in ARMS}
        others = {k: accs[k] for k in ("A", "B", "C")}
        return SeedResult(
            method=accs["D"],
            baseline=max(others.values()),
            extra={"arms": accs, "teacher_top1": t_acc, "retention": {k: v / t_acc for k, v in accs.items()},
                   "task_seconds": {k: runs[(k, seed)]["seconds"] for k in ("gd", *ARMS)},
                   "teacher_seconds": {k: runs[(k, -1)]["seconds"] for k in ("teacher_mae", "teacher_ft")},
                   "workers": workers},
        )

    return run_seed


def finalize(out_dir: Path, mc: MiniConfig) -> bool:
    """Apply the criterion to every arm: D against the best other arm by mean, 2 x pooled std."""
    path = out_dir / "g2sd.json"
    r = json.loads(path.read_text())
    seeds = [str(s) for s in r["seeds"]]
    per_arm = {a: [r["extra"][s]["arms"][a] for s in seeds] for a in ARMS}
    t_acc = r["extra"][seeds[0]]["teacher_top1"]

    def stats(v: list[float]) -> dict:
        return {"per_seed": v, "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}

    arms = {a: {"name": ARMS[a], **stats(v), "retention": statistics.fmean(v) / t_acc} for a, v in per_arm.items()}
    best = max(("A", "B", "C"), key=lambda a: arms[a]["mean"])
    d, b = arms["D"], arms[best]
    pooled = math.sqrt((d["std"] ** 2 + b["std"] ** 2) / 2)
    margin = d["mean"] - b["mean"]
    holds = bool(len(seeds) >= 2 and margin > 2 * pooled)
    seed_margins = [x - y for x, y in zip(d["per_seed"], b["per_seed"])]
    r.update({
        "baseline": {"name": f"{best}: {ARMS[best]} (best other arm)", **stats(per_arm[best])},
        "margin": margin,
        "seed_margins": seed_margins,
        "wins": sum(m > 0 for m in seed_margins),
        "min_margin": 2 * pooled,
        "pooled_std": pooled,
        "criterion": ("mean(D) - mean(best of A, B, C) > 2 x pooled seed std sqrt((s_D^2 + s_best^2) / 2); "
                      "needs >= 2 seeds"),
        "holds": holds,
        "arms": arms,
        "teacher_top1": t_acc,
        "config": {k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in mc.__dict__.items()},
    })
    r["plot"] = "g2sd.png" if plot(out_dir / "g2sd.png", arms, t_acc) else None
    tmp = out_dir / ".g2sd.json.tmp"
    tmp.write_text(json.dumps(r, indent=2, default=float))
    os.replace(tmp, path)
    print(f"[g2sd] D {d['mean']:.2f} ± {d['std']:.2f} vs {best} {b['mean']:.2f} ± {b['std']:.2f}: margin {margin:+.2f}, "
          f"needs > {2 * pooled:.2f} -> {'HOLDS' if holds else 'DOES NOT HOLD'}", flush=True)
    return holds


def plot(path: Path, arms: dict, teacher: float) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    names = list(arms)
    for i, a in enumerate(names):
        v = arms[a]["per_seed"]
        ax.bar(i, arms[a]["mean"], color="C3" if a == "D" else "C0", alpha=0.6, yerr=arms[a]["std"], capsize=4)
        ax.scatter([i] * len(v), v, color="k", s=12, zorder=3)
    ax.axhline(teacher, color="C2", ls="--", lw=1.2, label=f"teacher {teacher:.1f}")
    ax.set_xticks(range(len(names)), [f"{a}\n{arms[a]['name']}" for a in names], fontsize=8)
    lo = min(min(arms[a]["per_seed"]) for a in names)
    ax.set_ylim(max(0.0, lo - 8), max(teacher, max(max(arms[a]["per_seed"]) for a in names)) + 3)
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title("g2sd mini reproduction: student arms (bars: mean ± std, dots: seeds)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def load_mini_config(name_or_path: str, overrides: Sequence[str] = ()) -> MiniConfig:
    path = resolve_config_path(CONFIGS.get(name_or_path, name_or_path))
    return load_config(MiniConfig, path, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default="default", help="preset: default | smoke | a YAML path")
    pre.add_argument("--set", action="append", default=[], help="override a MiniConfig key, e.g. student_epochs=2")
    pre.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="single-threaded worker processes (default: min(2, CPUs)); results do not depend on it")
    args, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(__doc__.split("\n\n")[0] + "\n\nextra options: --config default|smoke|PATH, --set KEY=VALUE, --workers N\n")
    mc = load_mini_config(args.config, args.set)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    rc = repro_main(SPEC, run_seed_with(mc, args.workers), rest)
    out = Path(next((rest[i + 1] for i, a in enumerate(rest) if a == "--out"), "results")).resolve()
    for a in rest:
        if a.startswith("--out="):
            out = Path(a.split("=", 1)[1]).resolve()
    if not (out / "g2sd.json").is_file():
        return rc
    return 0 if finalize(out, mc) else 1


if __name__ == "__main__":
    run_cli(main)
