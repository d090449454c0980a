"""`python -m conformer.repro [--out DIR] [--seeds N] [--data-root DIR]`: Conformer's claim in miniature.

At equal parameter budget (about 0.47 M), a Conformer (CNN and transformer branches coupled
by FCUs) is trained against a bottleneck ResNet (its CNN branch alone, widened) and a DeiT
(timm VisionTransformer) with the same recipe on the real CIFAR-10 subset of
../shared/data/cifar10, and evaluated on its 1,000 test images. The claim also says that the
branches are complementary: the summed logits must beat each head on its own.

Criterion (fixed before any run): per seed, the baseline is the best of the four
alternatives (ResNet, DeiT, the Conformer's CNN head alone, its transformer head alone);
the claim holds if the Conformer's summed-head top-1 beats that baseline by >= 0.5 points
on average and on a majority of seeds.

Each model's recipe is a preset in conformer/configs (`cifar10_{conformer,resnet,deit}_micro`),
so `python -m conformer.train --config cifar10_conformer_micro` reproduces one run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.repro import ReproContext, ReproSpec, SeedResult, repro_main

SPEC = ReproSpec(
    paper="conformer",
    claim=(
        "at equal parameters, Conformer (CNN + transformer branches coupled by FCUs) beats a ResNet and a DeiT "
        "on image classification, and its summed heads beat each head alone"
    ),
    metric="CIFAR-10 test top-1 (%)",
    higher_is_better=True,
    method="Conformer-micro (conv + trans logits)",
    baseline="best of ResNet-micro, DeiT-micro, Conformer CNN head, Conformer transformer head",
    min_margin=0.5,
    default_seeds=3,
)

# name -> preset (conformer/configs/<preset>.yaml)
RUNS = {
    "conformer": "cifar10_conformer_micro",
    "resnet": "cifar10_resnet_micro",
    "deit": "cifar10_deit_micro",
}


def train_one(preset: str, *, seed: int, out_dir: Path, data_root: Path | None,
              overrides: Sequence[str] = ()) -> dict:
    """Train one preset for one seed and evaluate it; returns accuracies, parameters, curve and timing."""
    import torch
    from torch.utils.data import DataLoader

    from vlcore.config import load_config
    from vlcore.runinfo import read_metrics
    from vlcore.train import Trainer, evaluate

    from conformer.config import CONFIG_DIR, ConformerConfig
    from conformer.data import build_sets
    from conformer.engine import build_model, eval_fn, make_step_fn

    sets = [f"train.seed={seed}", f"train.out_dir={out_dir}"]
    if data_root is not None:
        sets.append(f"data.root={data_root}")
    cfg = load_config(ConformerConfig, CONFIG_DIR / f"{preset}.yaml", [*sets, *overrides])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    train_set, test_set, what = build_sets(cfg.data, cfg.aug)
    torch.manual_seed(seed)  # the initial weights
    model = build_model(cfg)
    summary = Trainer(model, make_step_fn(cfg), train_set, cfg.train, run_config=cfg).fit()
    loader = DataLoader(test_set, batch_size=cfg.data.eval_batch_size, shuffle=False)
    metrics = evaluate(model, loader, eval_fn, precision=cfg.train.precision)
    curve = [[r["step"], r["loss"]] for r in read_metrics(out_dir) if "loss" in r]
    return {
        "data": what,
        "model": cfg.model.name,
        "params": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "steps": summary.final_step,
        "curve": curve,
        "wall_time_s": round(time.time() - t0, 1),
    }


class SeedRunner:
    """`run_seed` for `repro_main`: every (seed, model) run is a job for a pool of worker processes.

    The models are small, so one intra-op thread per process and one process per core uses
    the CPU better than threads inside one process; the jobs of all seeds are queued on the
    first call, seed-major, and each later call collects its seed's results.
    """

    def __init__(self, overrides: Sequence[str] = (), workers: int | None = None) -> None:
        self.overrides = tuple(overrides)
        self.workers = workers
        self.jobs: dict[tuple[int, str], object] = {}
        self.pool = None
        self.tmp: tempfile.TemporaryDirectory | None = None

    def _start(self, ctx: ReproContext) -> None:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        self.tmp = tempfile.TemporaryDirectory(prefix="conformer-repro-")
        todo = [(seed, name) for seed in ctx.seeds for name in RUNS]
        workers = self.workers or min(len(todo), os.cpu_count() or 1)
        if workers > 1:
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        for seed, name in todo:
            kwargs = dict(seed=seed, out_dir=Path(self.tmp.name) / f"{name}_seed{seed}", data_root=ctx.data_root,
                          overrides=self.overrides)
            if self.pool is not None:
                self.jobs[seed, name] = self.pool.submit(train_one, RUNS[name], **kwargs)
            else:
                self.jobs[seed, name] = (RUNS[name], kwargs)  # run when collected

    def _result(self, seed: int, name: str) -> dict:
        job = self.jobs.pop((seed, name))
        if isinstance(job, tuple):
            preset, kwargs = job
            return train_one(preset, **kwargs)
        return job.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def __call__(self, seed: int, ctx: ReproContext) -> SeedResult:
        if not self.jobs:
            self._start(ctx)
        try:
            runs = {name: self._result(seed, name) for name in RUNS}
        except BaseException:
            self.close()
            raise
        if not self.jobs:
            self.close()
        return summarise(runs, ctx)


def summarise(runs: dict[str, dict], ctx: ReproContext) -> SeedResult:
    ctx.note_data(runs["conformer"]["data"])
    conf = runs["conformer"]["metrics"]
    alternatives = {
        "resnet": runs["resnet"]["metrics"]["acc1"],
        "deit": runs["deit"]["metrics"]["acc1"],
        "conformer_conv_head": conf["acc1_conv"],
        "conformer_trans_head": conf["acc1_trans"],
    }
    best = max(alternatives, key=alternatives.get)
    extra = {
        "top1": {"conformer": conf["acc1"], **alternatives},
        "best_alternative": best,
        "params": {name: r["params"] for name, r in runs.items()},
        "models": {name: r["model"] for name, r in runs.items()},
        "steps": {name: r["steps"] for name, r in runs.items()},
        "wall_time_s": {name: r["wall_time_s"] for name, r in runs.items()},
    }
    labels = {"conformer": "Conformer-micro", "resnet": "ResNet-micro", "deit": "DeiT-micro"}
    curves = {f"{labels[name]} train loss": r["curve"] for name, r in runs.items()}
    return SeedResult(method=conf["acc1"], baseline=alternatives[best], curves=curves, extra=extra)


def main(argv: Sequence[str] | None = None) -> int:
    runner = SeedRunner()
    try:
        return repro_main(SPEC, runner, argv)
    finally:
        runner.close()


if __name__ == "__main__":
    run_cli(main)
