"""A small training engine on accelerate that every paper's train.py plugs into.

    def step_fn(model, batch):                    # -> (loss, metrics)
        x, y = batch
        loss = F.cross_entropy(model(x), y)
        return loss, {"acc": (model(x).argmax(-1) == y).float().mean()}

    summary = Trainer(model, step_fn, train_set, cfg.train, run_config=cfg).fit()

What it does, in the order `fit` does it:
- batch arithmetic: global batch = processes x per-device batch x accumulation steps; the
  accumulation is derived, and the lr is `blr * global_batch / 256` unless `lr` is given
  (the log states the rule and the numbers);
- data order: a permutation seeded by (seed, epoch), cut into global batches, each split
  into disjoint per-rank micro-batches; the position is a pure function of the step, so a
  resumed run skips exactly the batches already consumed;
- AdamW over layer-wise lr decay groups (`param_groups_lrd`), per-step warmup + cosine /
  linear / constant schedule, gradient clipping, weight EMA, bf16 autocast;
- a non-finite loss stops the run with `NonFiniteLossError` before that step's update, so
  the last checkpoint stays the last good one;
- checkpoints every `ckpt_interval` steps and at the end (see vlcore.checkpoint for the
  layout); `resume="auto"` continues from the newest one, bit-identically.

`step` always counts optimizer updates done: the metrics row `step=k`, the folder
`step_{k:06d}` and `NonFiniteLossError.step == k` all mean the k-th update.

Ranks come from the environment (torchrun / accelerate launch); processes are
data-parallel (DDP through `Accelerator.prepare_model`). Mixed precision is done with
`torch.autocast` here rather than through accelerate, because accelerate's precision
is fixed per process while ours is per run.

Exact resume covers the model, optimizer, EMA, schedule, data order and the RNG of
every rank (dropout, masking drawn in the training process, and in `__getitem__` with
`num_workers=0`). Loader workers are seeded from (seed, epoch, start position, rank),
so random augmentations done in workers repeat exactly only if the dataset derives them
from the sample index (and epoch).
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from vlcore.checkpoint import (
    EMA_FILE, MODEL_FILE, STATE_FILE, CheckpointError, capture_rng_state, commit_checkpoint, latest_checkpoint,
    list_checkpoints, load_state_dict_strict, load_training_state, load_weights, resolve_checkpoint, restore_rng_state,
    save_training_state, save_weights, staging_dir, step_dir_name,
)
from vlcore.config import ConfigError, config_to_dict
from vlcore.faults import fault_point
from vlcore.dist import all_reduce_mean, all_reduce_sum, get_world_size
from vlcore.runinfo import MetricsLogger, write_run_info
from vlcore.train.ema import ModelEma
from vlcore.train.optim import lr_at, param_groups_lrd

StepFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, Any]]"]


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    total_steps: int = 0  # optimizer updates; 0 means epochs x steps per epoch
    epochs: int = 1
    global_batch_size: int = 256  # effective batch: processes x per_device_batch_size x accumulation
    per_device_batch_size: int = 32
    blr: float = 1e-3  # base lr for a global batch of 256
    lr: Optional[float] = None  # absolute peak lr; when set, blr is not used
    min_lr: float = 0.0  # absolute
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    layer_decay: float = 1.0  # 1.0: no layer-wise lr decay
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    clip_grad: Optional[float] = None  # max global grad norm
    ema_decay: Optional[float] = None
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu"] = "auto"
    log_interval: int = 10
    ckpt_interval: int = 1000
    keep_last: int = 3  # committed checkpoints kept on disk; 0 keeps all
    num_workers: int = 0
    shuffle: bool = True
    find_unused_parameters: bool = False  # DDP option for models that skip parameters in some steps
    strategy: Literal["ddp", "fsdp"] = "ddp"  # data parallel: replicated (DDP) or sharded (FSDP2) weights
    fsdp_units: str = "blocks"  # comma-separated ModuleList attributes whose members are sharded one by one
    resume: Optional[str] = None  # "auto", a checkpoint folder, or None
    stop_at_step: Optional[int] = None  # end this run early (the schedule still spans total_steps)
    wandb: Literal["disabled", "offline", "online"] = "disabled"
    wandb_project: str = "vlrepro"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN / Inf; raised before that step's update is applied or saved."""

    def __init__(self, step: int, loss: float, checkpoint: str | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        last = checkpoint or "none (no checkpoint was written yet)"
        super().__init__(f"non-finite loss ({loss}) at step {step}; its update was not applied; "
                         f"last good checkpoint: {last}")


@dataclass(frozen=True)
class TrainSummary:
    final_step: int
    total_steps: int
    last_loss: float
    weights_path: Optional[str]
    ema_weights_path: Optional[str]
    checkpoint: Optional[str]
    wall_time_s: float
    out_dir: str
    lr: float
    grad_accum: int
    resumed_from: Optional[str]


# --- data order -------------------------------------------------------------


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's micro-batches of every global batch of one epoch, from `start_step` on.

    The epoch's order is a permutation seeded by (seed, epoch); global batch `s` is
    `order[s * G:(s + 1) * G]`, split into `accum` micro-steps, each into `world_size`
    disjoint slices of `micro_batch_size`. The incomplete last global batch is dropped.
    """

    def __init__(self, num_samples: int, *, global_batch_size: int, micro_batch_size: int, world_size: int = 1,
                 rank: int = 0, seed: int = 0, epoch: int = 0, start_step: int = 0, shuffle: bool = True):
        if global_batch_size % (micro_batch_size * world_size):
            raise ValueError(f"global batch {global_batch_size} is not a multiple of {world_size} x {micro_batch_size}")
        self.n, self.global_batch, self.micro = num_samples, global_batch_size, micro_batch_size
        self.world, self.rank, self.seed, self.epoch = world_size, rank, seed, epoch
        self.start_step, self.shuffle = start_step, shuffle
        self.accum = global_batch_size // (micro_batch_size * world_size)
        self.steps_per_epoch = num_samples // global_batch_size

    def __iter__(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        for s in range(self.start_step, self.steps_per_epoch):
            batch = order[s * self.global_batch:(s + 1) * self.global_batch]  # G
            for a in range(self.accum):
                lo = (a * self.world + self.rank) * self.micro
                yield batch[lo:lo + self.micro].tolist()

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.accum


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        items = [_to_device(v, device) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _make_accelerator(cpu: bool, find_unused_parameters: bool):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    kwargs = [DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)]
    try:
        return Accelerator(cpu=cpu, kwargs_handlers=kwargs)
    except ValueError as e:
        # accelerate keeps one device choice per process; a single-process caller (tests, notebooks)
        # that switches between cpu and cuda gets a fresh state instead of an error.
        if "already been initialized" not in str(e) or get_world_size() > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(cpu=cpu, kwargs_handlers=kwargs)


def _check_config(cfg: TrainConfig) -> None:
    positive = ("global_batch_size", "per_device_batch_size", "log_interval", "ckpt_interval")
    non_negative = ("seed", "total_steps", "epochs", "warmup_steps", "keep_last", "num_workers")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"key '{key}' must be >= 1, got {getattr(cfg, key)}")
    for key in non_negative:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"key '{key}' must be >= 0, got {getattr(cfg, key)}")
    if cfg.total_steps == 0 and cfg.epochs == 0:
        raise ConfigError("keys 'total_steps' and 'epochs' are both 0: nothing to train")
    if cfg.ema_decay is not None and not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"key 'ema_decay' must be in [0, 1), got {cfg.ema_decay}")
    if cfg.strategy == "fsdp" and cfg.ema_decay:
        raise ConfigError("key 'ema_decay' is not supported with strategy=fsdp (the EMA copy would be unsharded)")


def _fsdp_shard(model: nn.Module, units: str) -> nn.Module:
    """FSDP2: each member of the named ModuleLists becomes its own unit (its weights are gathered only
    while it runs), the rest of the model is the root unit. Parameter names do not change."""
    from torch.distributed.fsdp import fully_shard

    for name in filter(None, (u.strip() for u in units.split(","))):
        try:
            seq = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"key 'fsdp_units': {type(model).__name__} has no submodule '{name}'") from None
        if not isinstance(seq, nn.ModuleList):
            raise ConfigError(f"key 'fsdp_units': {type(model).__name__}.{name} is not a ModuleList")
        for block in seq:
            fully_shard(block)
    fully_shard(model)
    return model


def _full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, sharded: bool):
    """Unsharded (model state dict, optimizer state dict); with FSDP a collective every rank must call."""
    if not sharded:
        return model.state_dict(), optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    return msd, get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None


# --- the trainer ------------------------------------------------------------


class Trainer:
    """`Trainer(model, step_fn, train_set, cfg).fit()`; see the module docstring for what happens."""

    def __init__(self, model: nn.Module, step_fn: StepFn, train_set: Dataset, cfg: TrainConfig, *,
                 collate_fn: Callable | None = None,
                 param_groups: Callable[[nn.Module], list[dict]] | None = None,
                 layer_id_fn: Callable[[str, int], int] | None = None,
                 run_config: Any = None):
        self.model, self.step_fn, self.train_set, self.cfg = model, step_fn, train_set, cfg
        self.collate_fn, self.param_groups, self.layer_id_fn = collate_fn, param_groups, layer_id_fn
        self.run_config = run_config if run_config is not None else cfg
        self.accelerator = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.ema: ModelEma | None = None
        self._log_file: Path | None = None
        self._sharded = False  # FSDP: weights and optimizer state are split over the ranks

    # -- helpers used by fit --

    def _log(self, msg: str) -> None:
        if self.accelerator is None or self.accelerator.is_main_process:
            tqdm.write(msg)
            if self._log_file is not None:
                with open(self._log_file, "a") as f:
                    f.write(msg + "\n")

    def _loader(self, epoch: int, start_step: int) -> DataLoader:
        cfg, acc = self.cfg, self.accelerator
        sampler = GlobalBatchSampler(
            len(self.train_set), global_batch_size=cfg.global_batch_size, micro_batch_size=cfg.per_device_batch_size,
            world_size=acc.num_processes, rank=acc.process_index, seed=cfg.seed, epoch=epoch,
            start_step=start_step, shuffle=cfg.shuffle,
        )
        # Own generator: worker seeds are reproducible and the global torch RNG is left alone.
        g = torch.Generator()
        seed = np.random.SeedSequence([cfg.seed, epoch, start_step, acc.process_index]).generate_state(1)[0]
        g.manual_seed(int(seed))
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=cfg.num_workers,
                          collate_fn=self.collate_fn, generator=g, pin_memory=acc.device.type == "cuda")

    def _save(self, ckpt_dir: Path, step: int, optimizer: torch.optim.Optimizer, raw: nn.Module, extra: dict) -> Path:
        acc = self.accelerator
        stage = staging_dir(ckpt_dir, step, create=acc.is_main_process)
        acc.wait_for_everyone()
        # Each rank keeps its own RNG stream (dropout, masking), so each saves it.
        rank = acc.process_index
        save_training_state({"rng": capture_rng_state(), "rank": rank}, stage / f"rng_rank{rank}.pt")
        acc.wait_for_everyone()
        final = ckpt_dir / step_dir_name(step)
        model_sd, optim_sd = _full_state(raw, optimizer, self._sharded)
        if acc.is_main_process:
            save_weights(model_sd, stage / MODEL_FILE)
            fault_point("checkpoint_write")
            if self.ema is not None:
                save_weights(self.ema.module.state_dict(), stage / EMA_FILE)
            save_training_state({"step": step, "optimizer": optim_sd, "scaler": None,
                                 "world_size": acc.num_processes, "config": config_to_dict(self.cfg), **extra},
                                stage / STATE_FILE)
            final = commit_checkpoint(ckpt_dir, step, keep_last=self.cfg.keep_last)
        acc.wait_for_everyone()
        return final

    # -- the loop --

    def fit(self) -> TrainSummary:
        cfg = self.cfg
        t_start = time.time()

        _check_config(cfg)

        # 1. processes, batch arithmetic, lr
        self.accelerator = acc = _make_accelerator(
            cpu=cfg.device == "cpu" or not torch.cuda.is_available(), find_unused_parameters=cfg.find_unused_parameters)
        world, rank, device = acc.num_processes, acc.process_index, acc.device
        per_step = world * cfg.per_device_batch_size
        if cfg.global_batch_size % per_step:
            raise ConfigError(f"key 'global_batch_size' ({cfg.global_batch_size}) must be a multiple of processes x "
                              f"per_device_batch_size = {world} x {cfg.per_device_batch_size}")
        accum = cfg.global_batch_size // per_step
        steps_per_epoch = len(self.train_set) // cfg.global_batch_size
        if steps_per_epoch == 0:
            raise ConfigError(f"key 'global_batch_size' ({cfg.global_batch_size}) exceeds the dataset "
                              f"({len(self.train_set)} samples)")
        total_steps = cfg.total_steps or cfg.epochs * steps_per_epoch
        end_step = min(total_steps, cfg.stop_at_step) if cfg.stop_at_step else total_steps
        if cfg.lr is not None:
            peak_lr, lr_rule = cfg.lr, f"lr {cfg.lr:.3e} (given)"
        else:
            peak_lr = cfg.blr * cfg.global_batch_size / 256
            lr_rule = f"lr {peak_lr:.3e} = blr {cfg.blr:.3e} x global batch {cfg.global_batch_size} / 256"

        # 2. run folder (main process writes, everyone waits)
        out_dir, ckpt_dir = Path(cfg.out_dir), Path(cfg.out_dir) / "ckpt"
        if acc.is_main_process:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._log_file = out_dir / "train.log"
        acc.wait_for_everyone()

        # 3. what to resume from
        resume_dir: Path | None = None
        if cfg.resume == "auto":
            resume_dir = latest_checkpoint(ckpt_dir)
        elif cfg.resume:
            resume_dir = resolve_checkpoint(cfg.resume)
        elif list_checkpoints(ckpt_dir):
            self._log(f"warning: {ckpt_dir} holds checkpoints of an earlier run; starting fresh "
                      "(set resume=auto to continue it)")

        # 4. model, optimizer, EMA, restored state
        raw = self.model
        state: dict = {}
        if resume_dir is not None:
            load_state_dict_strict(raw, load_weights(resume_dir / MODEL_FILE), source=str(resume_dir / MODEL_FILE))
            state = load_training_state(resume_dir / STATE_FILE)
        self._sharded = cfg.strategy == "fsdp" and world > 1
        if self._sharded:
            model = raw = _fsdp_shard(raw.to(device), cfg.fsdp_units)
        else:
            model = acc.prepare_model(raw)  # device placement, DDP when distributed
            if model is not raw:
                raw = acc.unwrap_model(model)
        groups = self.param_groups(raw) if self.param_groups else param_groups_lrd(
            raw, cfg.weight_decay, cfg.layer_decay, layer_id_fn=self.layer_id_fn)
        optimizer = torch.optim.AdamW(groups, lr=peak_lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.optimizer = optimizer
        if state:
            try:
                if self._sharded:
                    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

                    set_optimizer_state_dict(raw, optimizer, state["optimizer"],
                                             options=StateDictOptions(full_state_dict=True))
                else:
                    optimizer.load_state_dict(state["optimizer"])
            except (ValueError, KeyError) as e:  # other groups (layer_decay / param_groups changed?)
                raise CheckpointError(f"{resume_dir / STATE_FILE}: the optimizer state does not fit this model's "
                                      f"parameter groups ({str(e).splitlines()[0]})") from None
        if cfg.ema_decay:
            self.ema = ModelEma(raw, decay=cfg.ema_decay)
            if resume_dir is not None and (resume_dir / EMA_FILE).is_file():
                ema_file = resume_dir / EMA_FILE
                load_state_dict_strict(self.ema.module, load_weights(ema_file), source=str(ema_file))
        step = int(state.get("step", 0))
        if resume_dir is not None:
            data = state.get("data", {})
            if (data.get("global_batch_size"), data.get("seed")) != (cfg.global_batch_size, cfg.seed):
                self._log(f"warning: resuming with a different global batch or seed than {resume_dir}: "
                          "the data order changes")
            rng_file = resume_dir / f"rng_rank{rank}.pt"
            if rng_file.is_file():
                restore_rng_state(load_training_state(rng_file)["rng"])
            else:
                self._log(f"warning: {rng_file.name} missing (the process count changed?); "
                          "reseeding from (seed, step, rank)")
                seed_everything(cfg.seed + 1_000_003 * step + rank)
        else:
            seed_everything(cfg.seed + rank)  # ranks differ in dropout / masking streams

        # 5. logging
        if acc.is_main_process:
            write_run_info(out_dir, config=self.run_config, extra={
                "world_size": world, "grad_accum": accum, "lr": peak_lr, "total_steps": total_steps,
                "resumed_from": str(resume_dir) if resume_dir else None})
        metrics_log = MetricsLogger(out_dir, enabled=acc.is_main_process, wandb_mode=cfg.wandb,
                                    wandb_project=cfg.wandb_project, run_name=out_dir.name, config=self.run_config)
        if resume_dir is not None:
            metrics_log.truncate_after(step)  # rows logged after the checkpoint are about to be redone
        processes = f"{world} process{'es' if world > 1 else ''}"
        self._log(f"{lr_rule} (global batch {cfg.global_batch_size} = {processes} x {cfg.per_device_batch_size} "
                  f"per device x {accum} accumulation steps)")
        self._log(f"{total_steps} steps ({steps_per_epoch} per epoch), warmup {cfg.warmup_steps}, {cfg.schedule} "
                  f"schedule to min_lr {cfg.min_lr:g}, precision {cfg.precision}, device {device}"
                  + (f"; resuming from {resume_dir} at step {step}" if resume_dir else ""))

        # 6. train
        last_ckpt: Path | None = resume_dir
        last_loss = float(state.get("last_loss", math.nan))
        batches = None
        interval = {"loss": 0.0, "steps": 0, "metrics": {}, "t": time.time()}
        progress = tqdm(total=end_step, initial=step, disable=not (acc.is_main_process and sys.stderr.isatty()),
                        dynamic_ncols=True, desc="train")
        model.train()
        try:
            while step < end_step:
                epoch, pos = divmod(step, steps_per_epoch)
                if batches is None or pos == 0:
                    batches = iter(self._loader(epoch, pos))
                lr = lr_at(step, lr=peak_lr, total_steps=total_steps, warmup_steps=cfg.warmup_steps,
                           min_lr=cfg.min_lr, schedule=cfg.schedule)
                for g in optimizer.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)

                loss_sum = torch.zeros((), device=device)
                metric_sums: dict[str, float] = {}
                for micro in range(accum):
                    batch = _to_device(next(batches), device)
                    # Gradients are all-reduced only on the last micro-batch of the step.
                    sync = contextlib.nullcontext() if micro == accum - 1 else acc.no_sync(model)
                    with sync:
                        with _autocast(device, cfg.precision):
                            loss, metrics = self.step_fn(model, batch)
                        acc.backward(loss.float() / accum)
                    loss_sum += loss.detach().float()
                    for k, v in (metrics or {}).items():
                        metric_sums[k] = metric_sums.get(k, 0.0) + float(v) / accum

                # The guard runs before the update, so a bad step leaves no trace in weights or checkpoints.
                step_loss = all_reduce_mean(loss_sum / accum).item()
                if not math.isfinite(step_loss):
                    raise NonFiniteLossError(step + 1, step_loss, str(last_ckpt) if last_ckpt else None)
                grad_norm = None
                if cfg.clip_grad:
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                    grad_norm = (grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm).item()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                fault_point("train_step")
                if self.ema is not None:
                    self.ema.update(raw)
                last_loss = step_loss
                progress.update(1)

                interval["loss"] += step_loss
                interval["steps"] += 1
                for k, v in metric_sums.items():
                    interval["metrics"][k] = interval["metrics"].get(k, 0.0) + v
                if step % cfg.log_interval == 0 or step == end_step:
                    n, dt = interval["steps"], max(time.time() - interval["t"], 1e-9)
                    row = metrics_log.log(step, epoch=step / steps_per_epoch, lr=lr, loss=interval["loss"] / n,
                                          throughput=n * cfg.global_batch_size / dt,
                                          **({"grad_norm": grad_norm} if grad_norm is not None else {}),
                                          **{k: v / n for k, v in interval["metrics"].items()})
                    progress.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
                    if progress.disable:  # no bar (not a TTY): a log line instead
                        self._log(f"step {step}/{total_steps} loss {row['loss']:.4f} lr {lr:.3e} "
                                  f"{row['throughput']:.1f} samples/s")
                    interval = {"loss": 0.0, "steps": 0, "metrics": {}, "t": time.time()}

                if step % cfg.ckpt_interval == 0 or step == end_step:
                    e, p = divmod(step, steps_per_epoch)
                    last_ckpt = self._save(ckpt_dir, step, optimizer, raw, {
                        "epoch": e, "last_loss": last_loss,
                        "data": {"epoch": e, "batch_in_epoch": p, "steps_per_epoch": steps_per_epoch,
                                 "global_batch_size": cfg.global_batch_size, "seed": cfg.seed, "shuffle": cfg.shuffle},
                        "schedule": {"kind": cfg.schedule, "peak_lr": peak_lr, "min_lr": cfg.min_lr,
                                     "warmup_steps": cfg.warmup_steps, "total_steps": total_steps},
                    })
        finally:
            progress.close()
            metrics_log.close()

        wall = time.time() - t_start
        self._log(f"done: step {step}/{total_steps}, loss {last_loss:.4f}, {wall:.1f} s, checkpoint {last_ckpt}")
        weights = last_ckpt / MODEL_FILE if last_ckpt else None
        ema_weights = last_ckpt / EMA_FILE if last_ckpt and self.ema is not None else None
        return TrainSummary(
            final_step=step, total_steps=total_steps, last_loss=last_loss,
            weights_path=str(weights) if weights else None, ema_weights_path=str(ema_weights) if ema_weights else None,
            checkpoint=str(last_ckpt) if last_ckpt else None, wall_time_s=wall, out_dir=str(out_dir), lr=peak_lr,
            grad_accum=accum, resumed_from=str(resume_dir) if resume_dir else None,
        )


# --- evaluation -------------------------------------------------------------


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else []
    for v in items:
        n = _batch_size(v)
        if n:
            return n
    return 0


@torch.no_grad()
def evaluate(model: nn.Module, loader, eval_fn: Callable[[nn.Module, Any], Mapping[str, Any]], *,
             device: torch.device | str | None = None, precision: Literal["fp32", "bf16"] = "fp32") -> dict[str, float]:
    """Sample-weighted means of `eval_fn(model, batch)`'s metrics over `loader`, summed over processes."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    try:
        for batch in loader:
            batch = _to_device(batch, device)
            with _autocast(device, precision):
                metrics = eval_fn(model, batch)
            n = _batch_size(batch)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            count += n
    finally:
        model.train(was_training)
    keys = sorted(sums)
    totals = all_reduce_sum(torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64, device=device))
    n = max(totals[-1].item(), 1.0)
    return {k: totals[i].item() / n for i, k in enumerate(keys)}
