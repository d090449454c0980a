"""Training and evaluation of LDA and its baselines with one loop.

The loop follows the official one (`lib/core/function.py`): SGD with Nesterov
momentum over every parameter, the learning rate set once per epoch by the
official schedule, the last incomplete batch dropped, the test-time prediction
taken from the balanced head g_b. The method (`cfg.method`) picks the loss:
`lda` trains the two-head network with `LDALoss`; every other name trains a
single-head network with `BaselineLoss`.

vlcore's `Trainer` is not used because it builds AdamW with a per-step
schedule; LDA's recipes are SGD-Nesterov with per-epoch warm-up from lr/3. The
run folder uses vlcore's pieces: run info, metrics.jsonl and checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from lda.config import LDATrainConfig
from lda.data.longtail import shot_groups
from lda.engine.losses import BaselineLoss, LDALoss
from lda.engine.schedule import epoch_lr
from lda.metrics import per_class_accuracy, shot_accuracy
from lda.models import REGISTRY, LDANet
from vlcore.checkpoint import (
    MODEL_FILE, STATE_FILE, capture_rng_state, latest_checkpoint, load_state_dict_strict, load_training_state, load_weights,
    restore_rng_state, save_checkpoint,
)
from vlcore.config import ConfigError
from vlcore.faults import fault_point
from vlcore.runinfo import MetricsLogger, write_run_info


class Batches(Protocol):
    def steps_per_epoch(self) -> int: ...
    def epoch(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...


class LoaderBatches:
    """Adapter giving a torch DataLoader the `Batches` interface."""

    def __init__(self, loader):
        self.loader = loader

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def epoch(self):
        yield from self.loader


@dataclass
class RunResult:
    metrics: dict[str, float]  # overall / many / medium / few of the prediction head, percent
    metrics_u: dict[str, float] | None  # the same for LDA's unbalanced head g_u
    per_class: list[float]
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    alpha_mean: float | None = None
    wall_time_s: float = 0.0
    steps: int = 0
    checkpoint: str | None = None


def build_model(cfg: LDATrainConfig) -> LDANet:
    lda = cfg.method == "lda"
    wants_neck = lda and cfg.lda.dist_weight > 0 and (cfg.lda.intra or cfg.lda.inter)
    kwargs: dict[str, Any] = {"dual_head": lda}
    if cfg.model.neck_dim is not None:
        kwargs["neck_dim"] = cfg.model.neck_dim if wants_neck else 0
    elif not wants_neck:
        kwargs["neck_dim"] = 0
    try:
        entry = REGISTRY.get(cfg.model.name)
    except KeyError as e:
        raise ConfigError(f"key 'model.name': {e.args[0]}") from None
    model = entry.build(**kwargs)
    if wants_neck and model.neck is None:
        raise ConfigError(f"key 'model.neck_dim': {cfg.model.name} has no neck by default; set model.neck_dim "
                          "(e.g. 128) or turn the distance terms off (lda.dist_weight=0)")
    if cfg.model.init_checkpoint:
        from lda.convert import load_into

        load_into(model, cfg.model.init_checkpoint, strict=False)
    return model


def build_loss(cfg: LDATrainConfig, class_counts: list[int]) -> nn.Module:
    if cfg.method == "lda":
        return LDALoss(class_counts, cfg.lda)
    return BaselineLoss(cfg.method, class_counts, cfg.baseline)


def loss_step(model: LDANet, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    out = model.forward_train(x)
    if isinstance(criterion, LDALoss):
        return criterion(out["logits_u"], out["logits"], y, out.get("embed"))
    return criterion(out["logits"], y)


@torch.no_grad()
def predict(model: LDANet, batches: Batches, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Predictions of g_b (and of g_u when the model has it) and the targets."""
    was = model.training
    model.eval()
    preds, preds_u, targets = [], [], []
    for x, y in batches.epoch():
        x = x.to(device)
        z = model.forward_head(model.forward_features(x), pre_logits=True)
        preds.append(model.head(z).argmax(1).cpu())
        if model.head_u is not None:
            preds_u.append(model.head_u(z).argmax(1).cpu())
        targets.append(y)
    model.train(was)
    pu = torch.cat(preds_u).numpy() if preds_u else None
    return torch.cat(preds).numpy(), torch.cat(targets).numpy(), pu


def _device(cfg: LDATrainConfig) -> torch.device:
    return torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu")


def train_and_evaluate(cfg: LDATrainConfig, train: Batches, test: Batches, class_counts: list[int], *,
                       write: bool = True, quiet: bool = False) -> RunResult:
    """Train `cfg.method` on `train`, evaluate g_b on `test` with shot groups from `class_counts`."""
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    device = _device(cfg)
    model = build_model(cfg).to(device)
    criterion = build_loss(cfg, class_counts).to(device)
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    groups = shot_groups(class_counts)
    out_dir = Path(cfg.out_dir)
    start_epoch, step = 0, 0
    curves: dict[str, list[list[float]]] = {"train_loss": [], "alpha": [], "test_overall": []}
    alphas: list[float] = []
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_run_info(out_dir, config=cfg, extra={"class_counts": class_counts,
                                                   "params": sum(p.numel() for p in model.parameters())})
        if cfg.resume:
            ck = latest_checkpoint(out_dir / "ckpt") if cfg.resume == "auto" else Path(cfg.resume)
            if ck is not None:
                load_state_dict_strict(model, load_weights(ck / MODEL_FILE), source=str(ck / MODEL_FILE))
                state = load_training_state(ck / STATE_FILE)
                optimizer.load_state_dict(state["optimizer"])
                criterion.load_state_dict(state["criterion"])
                start_epoch, step = int(state["epoch"]), int(state["step"])
                torch.set_rng_state(state["torch_rng"])
                if "data_rng" in state and hasattr(train, "generator"):
                    train.generator.set_state(state["data_rng"])
                if "rng" in state:
                    restore_rng_state(state["rng"])
                curves, alphas = state.get("curves", curves), state.get("alphas", alphas)
                if not quiet:
                    print(f"resuming from {ck} at epoch {start_epoch}, step {step}", flush=True)
    log = MetricsLogger(out_dir, enabled=write)
    steps_per_epoch = train.steps_per_epoch()

    def training_state(epochs_done: int) -> dict:
        """Everything an exact resume needs beyond the weights (the data order lives in the batches' generator)."""
        return {"epoch": epochs_done, "step": step, "optimizer": optimizer.state_dict(),
                "criterion": criterion.state_dict(), "torch_rng": torch.get_rng_state(),
                "rng": capture_rng_state(), "curves": curves, "alphas": alphas,
                "class_counts": torch.tensor(class_counts),
                **({"data_rng": train.generator.get_state()} if hasattr(train, "generator") else {})}
    if steps_per_epoch == 0:
        raise ConfigError(f"key 'optim.batch_size' ({o.batch_size}) exceeds the training set")
    model.train()
    for epoch in range(start_epoch, o.epochs):
        lr = epoch_lr(epoch, lr=o.lr, epochs=o.epochs, schedule=o.schedule, warmup_epochs=o.warmup_epochs,
                      warmup_factor=o.warmup_factor, min_lr=o.min_lr, milestones=o.milestones, lr_factor=o.lr_factor)
        for g in optimizer.param_groups:
            g["lr"] = lr
        if isinstance(criterion, BaselineLoss):
            criterion.set_epoch(epoch)
        run_loss, run_n = 0.0, 0
        for x, y in train.epoch():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss, parts = loss_step(model, criterion, x, y)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite loss at epoch {epoch} step {step}: {parts}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            fault_point("train_step")
            run_loss += loss.item()
            run_n += 1
            if "alpha" in parts:
                alphas.append(parts["alpha"])
            if step % cfg.log_interval == 0:
                curves["train_loss"].append([step, run_loss / run_n])
                if "alpha" in parts:
                    curves["alpha"].append([step, parts["alpha"]])
                log.log(step, epoch=epoch, lr=lr, loss=run_loss / run_n, **parts)
                run_loss, run_n = 0.0, 0
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < o.epochs:
            pred, target, _ = predict(model, test, device)
            m = shot_accuracy(pred, target, groups)
            curves["test_overall"].append([step, m["overall"]])
            log.log(step, epoch=epoch + 1, **{f"test_{k}": v for k, v in m.items()})
            if not quiet:
                print(f"epoch {epoch + 1}/{o.epochs}: test top-1 {m['overall']:.2f} (many {m['many']:.1f} "
                      f"medium {m['medium']:.1f} few {m['few']:.1f})", flush=True)
        if write and cfg.save_checkpoint and cfg.ckpt_every and (epoch + 1) % cfg.ckpt_every == 0 \
                and epoch + 1 < o.epochs:
            save_checkpoint(out_dir / "ckpt", step, model_state=model.state_dict(),
                            training_state=training_state(epoch + 1), keep_last=2)
    pred, target, pred_u = predict(model, test, device)
    metrics = shot_accuracy(pred, target, groups)
    metrics_u = shot_accuracy(pred_u, target, groups) if pred_u is not None else None
    curves["test_overall"].append([step, metrics["overall"]])
    log.log(step, epoch=o.epochs, **{f"test_{k}": v for k, v in metrics.items()},
            **({f"test_u_{k}": v for k, v in metrics_u.items()} if metrics_u else {}))
    log.close()
    ckpt = None
    if write and cfg.save_checkpoint:
        ckpt = str(save_checkpoint(out_dir / "ckpt", step, model_state=model.state_dict(),
                                   training_state=training_state(o.epochs), keep_last=1))
    return RunResult(
        metrics=metrics, metrics_u=metrics_u,
        per_class=per_class_accuracy(pred, target, len(class_counts)).tolist(), curves=curves,
        alpha_mean=float(np.mean(alphas)) if alphas else None, wall_time_s=time.time() - t0, steps=step,
        checkpoint=ckpt,
    )


