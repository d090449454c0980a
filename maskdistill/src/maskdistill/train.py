"""`python -m maskdistill.train --config <preset> [--set key=value ...]`: MaskDistill pretraining,
fine-tuning and linear probing on the vlcore training engine.

    python -m maskdistill.train --config pretrain_base_300e --set teacher.path=/ckpt/clip-vit-base-patch16
    python -m maskdistill.train --config finetune_base --set model.init_checkpoint=runs/pretrain_base_300e/ckpt/step_xxx/model.safetensors
    python -m maskdistill.train --config linprobe_base --set model.init_checkpoint=...
    python -m maskdistill.train --config smoke_pretrain     # two steps, tiny random CLIP teacher, CIFAR-10 subset

``--task`` overrides the preset's task. The run folder (``train.out_dir``) receives the
resolved config, checkpoints (safetensors) and metrics (``vlcore.train.engine``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config
from vlcore.errors import UserError
from vlcore.mim import MIMObjective, build_objective
from vlcore.models.beit import Beit
from vlcore.train import Trainer, seed_everything

from beit2.convert import finetune_init_from_pretrain, load_finetune_init, read_checkpoint
from beit2.data import MIMTransform, PretrainDataset
from beit2.train import _base_dataset, classification_task
from beit2.train import init_classifier as _beit2_init_classifier

from maskdistill.config import Config, resolve_config_path
from maskdistill.models import REGISTRY, SIZES, TEACHER_FOR_SIZE, TEACHERS, MaskDistillForMIM
from maskdistill.models.teacher import ClipFeatureTeacher, tiny_clip_config

__all__ = ["Task", "build_objective_from_config", "build_task", "build_teacher", "init_classifier", "main"]


@dataclass
class Task:
    model: nn.Module
    step_fn: Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]
    train_set: Dataset
    eval_set: Dataset | None = None


def _size_of(name: str) -> str:
    for size in SIZES:
        if f"_{size}_" in name:
            return size
    raise UserError(f"cannot tell the student size of '{name}'")


def _size_overrides(m) -> dict:
    kw = {k: v for k, v in (("embed_dim", m.embed_dim), ("depth", m.depth), ("num_heads", m.num_heads),
                            ("patch_size", m.patch_size)) if v}
    if m.layer_scale_init is not None:
        kw["init_values"] = m.layer_scale_init
    return kw


def _patch_size(cfg: Config) -> int:
    return cfg.model.patch_size or SIZES[_size_of(cfg.model.name)]["patch_size"]


def teacher_name(cfg: Config) -> str:
    """The configured teacher, or the default one for the student size."""
    name = cfg.teacher.name
    if name == "auto":
        name = TEACHER_FOR_SIZE[_size_of(cfg.model.name)]
    if name != "random_tiny" and name not in TEACHERS:
        raise UserError(f"teacher.name must be auto, random_tiny or one of {', '.join(TEACHERS)}; got '{name}'")
    return name


def build_teacher(cfg: Config) -> ClipFeatureTeacher:
    """The frozen CLIP image tower; its input size makes its grid equal the student's."""
    t = cfg.teacher
    name = teacher_name(cfg)
    grid = cfg.model.img_size // _patch_size(cfg)
    if name == "random_tiny":
        from transformers import CLIPVisionModel

        torch.manual_seed(cfg.train.seed)
        patch = 4
        model = CLIPVisionModel(tiny_clip_config(image_size=grid * patch, patch_size=patch))
        return ClipFeatureTeacher(model, tensor=t.tensor, image_size=t.image_size or grid * patch,
                                  keep_cls=t.keep_cls)
    if not t.path:
        raise UserError(f"teacher.path must name a local transformers folder of {TEACHERS[name]['hub']} "
                        "(nothing is downloaded)")
    size = t.image_size or grid * TEACHERS[name]["patch"]
    teacher = ClipFeatureTeacher.from_pretrained(t.path, tensor=t.tensor, image_size=size, keep_cls=t.keep_cls)
    if t.precision == "bf16":
        teacher = teacher.to(torch.bfloat16)
    return teacher


def build_objective_from_config(cfg: Config, *, student: nn.Module | None = None) -> tuple[MIMObjective, str]:
    """The ``vlcore.mim`` objective and which view feeds its targets (``teacher`` / ``pixels`` / ``student``)."""
    o = cfg.objective
    extra = {"normalize": o.normalize} if o.normalize is not None else {}
    p = _patch_size(cfg)
    if o.preset == "maskdistill":
        return build_objective("maskdistill", teacher=build_teacher(cfg), beta=o.beta, positions=o.positions,
                               **extra), "teacher"
    if o.preset in ("mae", "simmim"):
        obj = build_objective(o.preset, patch_size=p, positions=o.positions, **extra)
        return obj, "pixels"
    if o.preset == "maskfeat":
        obj = build_objective("maskfeat", patch_size=p, positions=o.positions)
        return (obj.with_options(**extra) if extra else obj), "pixels"
    if o.preset == "data2vec":
        if student is None:
            raise UserError("the data2vec objective needs the student to copy")
        return build_objective("data2vec", student=student, top_k=o.top_k, momentum=o.ema_momentum, beta=o.beta,
                               positions=o.positions, **extra), "student"
    raise UserError(f"unknown objective.preset '{o.preset}'")


def _pretrain_model(cfg: Config, target_dim: int) -> MaskDistillForMIM:
    m = cfg.model
    model = REGISTRY.build(m.name, img_size=m.img_size, drop_path_rate=m.drop_path, target_dim=target_dim,
                           **_size_overrides(m))
    if not isinstance(model, MaskDistillForMIM):
        raise UserError(f"task 'pretrain' needs a pretraining model (a *_pt name), got '{m.name}'")
    return model


def _classifier(cfg: Config, *, global_pool: str = "avg", num_classes: int | None = None) -> Beit:
    m = cfg.model
    model = REGISTRY.build(m.name, img_size=m.img_size, drop_path_rate=m.drop_path,
                           num_classes=m.num_classes if num_classes is None else num_classes,
                           global_pool=global_pool, **_size_overrides(m))
    if not isinstance(model, Beit) or isinstance(model, MaskDistillForMIM):
        raise UserError(f"task '{cfg.task}' needs a fine-tuning model (no _pt suffix), got '{m.name}'")
    return model


def init_classifier(model: Beit, path: str) -> list[str]:
    """Start a classifier from a MaskDistill pretraining checkpoint (the FC head and the mask
    token are dropped, the shared rel-pos table is copied into every block) or from a
    fine-tuned one; returns the keys left at their fresh initialisation."""
    sd = read_checkpoint(path)
    if "mask_token" in sd or any(k.startswith("head_distill.") for k in sd):
        sd = {k: v for k, v in sd.items() if not k.startswith("head_distill.")}
        converted, _ = finetune_init_from_pretrain(sd, model)
        return load_finetune_init(model, converted, source=path)
    return _beit2_init_classifier(model, path)


def build_task(cfg: Config, *, log: Callable[[str], None] = print) -> Task:
    d, m = cfg.data, cfg.model
    if cfg.task == "pretrain":
        p = _patch_size(cfg)
        grid = m.img_size // p
        num_masked = int(round(m.mask_ratio * grid * grid))
        # the student is built first for data2vec (its EMA copy); its FC head width comes from the targets
        probe_student = _pretrain_model(cfg, 1) if cfg.objective.preset == "data2vec" else None
        if probe_student is not None:
            probe_student.head_distill = nn.Identity()  # the EMA copy is the encoder only
        objective, source = build_objective_from_config(cfg, student=probe_student)
        teacher_size = objective.target.teacher.image_size if source == "teacher" else m.img_size
        with torch.no_grad():
            dummy = torch.zeros(1, 3, teacher_size, teacher_size)
            target_dim = objective.targets(dummy).shape[-1]
        model = _pretrain_model(cfg, target_dim)
        if probe_student is not None:  # same backbone weights as the EMA copy's starting point
            model.load_state_dict({**model.state_dict(), **probe_student.state_dict()})
        log(f"pretrain: {objective.name} objective (normalize={objective.normalize}, loss={objective.loss_kind}, "
            f"beta={objective.beta}, positions={objective.positions}), target dim {target_dim}, "
            f"{num_masked}/{grid * grid} patches masked")
        tf = MIMTransform(input_size=d.input_size, second_input_size=teacher_size, patch_size=p,
                          crop_scale=d.crop_scale, color_jitter=d.color_jitter,
                          second_interpolation=d.second_interpolation, num_masking_patches=num_masked,
                          min_mask_patches_per_block=m.min_mask_patches_per_block)
        base = _base_dataset(cfg, split="train", transform=None)
        holder: dict = {}

        def step_fn(model, batch):
            view, second, mask = batch
            if "producer" not in holder and objective.target is not None:
                holder["producer"] = objective.target.to(view.device)
            if source == "student":
                objective.target.update(model)  # EMA after the previous update (no-op at the start)
                target = objective.targets(view)
            else:
                target = objective.targets(second)
            out = model.mim_loss(view, mask, target.float(), objective)
            return out.loss, {}

        return Task(model, step_fn, PretrainDataset(base, tf))

    if cfg.task in ("finetune", "linprobe"):
        # BEiT v2's fine-tuning / linear-probe recipe, with this paper's students.
        return classification_task(cfg, log=log, build=_classifier, init=init_classifier)
    raise UserError(f"unknown task '{cfg.task}'")


def main(argv: Sequence[str] | None = None) -> int:
    p = add_config_args(argparse.ArgumentParser(prog="python -m maskdistill.train",
                                                description=__doc__.split("\n\n")[0]))
    p.add_argument("--task", choices=("pretrain", "finetune", "linprobe"), default=None,
                   help="override the preset's task")
    args = p.parse_args(argv)
    cfg = load_config(Config, resolve_config_path(args.config), args.set)
    if args.task:
        cfg = replace(cfg, task=args.task)
    seed_everything(cfg.train.seed)
    task = build_task(cfg)
    summary = Trainer(task.model, task.step_fn, task.train_set, cfg.train, run_config=cfg).fit()
    print(f"{cfg.task}: {summary.final_step}/{summary.total_steps} steps, last loss {summary.last_loss:.4f}, "
          f"weights {summary.weights_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
