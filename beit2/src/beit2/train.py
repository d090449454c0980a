"""`python -m beit2.train --config <preset> [--set key=value ...]`: VQ-KD, MIM pretraining,
fine-tuning and linear probing on the vlcore training engine.

    python -m beit2.train --config vqkd_base_clip --set teacher.path=/ckpt/clip-vit-base-patch16
    python -m beit2.train --config pretrain_base_1600e --set model.tokenizer_weights=vqkd.safetensors
    python -m beit2.train --config finetune_base --set model.init_checkpoint=runs/pretrain/ckpt/step_xxx/model.safetensors
    python -m beit2.train --config smoke_pretrain        # two steps on the CIFAR-10 subset, tiny model

The run folder (``train.out_dir``) receives the resolved config, checkpoints (safetensors)
and metrics; see ``vlcore.train.engine``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms as T

from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config
from vlcore.errors import UserError
from vlcore.models.beit import Beit, beit_state_dict_from_official
from vlcore.tokenizers.vqkd import VQKD, ClipTeacher, Teacher, TimmTeacher, build_vqkd, vqkd_state_dict_from_official
from vlcore.train import Trainer, seed_everything

from beit2.config import Config, resolve_config_path
from beit2.convert import detect_layout, finetune_init_from_pretrain, load_finetune_init, read_checkpoint
from beit2.data import (
    ImageFolderDataset,
    MIMTransform,
    PretrainDataset,
    TensorImageDataset,
    classification_transform,
)
from beit2.models import REGISTRY, BeitV2ForMIM

__all__ = ["Task", "build_task", "load_tokenizer", "main"]


@dataclass
class Task:
    model: nn.Module
    step_fn: Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]
    train_set: Dataset
    eval_set: Dataset | None = None


# --- data ---------------------------------------------------------------------


def _base_dataset(cfg: Config, *, split: str, transform: Callable | None) -> Dataset:
    d = cfg.data
    if d.kind == "cifar10":
        from vlcore.data.cifar import load_cifar10

        x, y = load_cifar10("train" if split == "train" else "test", root=d.root or None)
        if d.limit is not None:
            x, y = x[: d.limit], y[: d.limit]
        return TensorImageDataset(x, y, transform=transform)
    root = Path(d.root) / (split if d.kind == "imagenet" else "")
    return ImageFolderDataset(root, transform=transform, limit=d.limit)


def _resize_to(cfg: Config, t: Callable) -> Callable:
    """CIFAR images are 32 px: upsample them to the model's input before the recipe's transform."""
    if cfg.data.kind != "cifar10" or cfg.data.input_size <= 32:
        return t
    return T.Compose([T.Resize(cfg.data.input_size, interpolation=T.InterpolationMode.BICUBIC), t])


# --- models -------------------------------------------------------------------


def _size_overrides(m) -> dict:
    kw = {k: v for k, v in (("embed_dim", m.embed_dim), ("depth", m.depth), ("num_heads", m.num_heads)) if v}
    if m.layer_scale_init is not None:
        kw["init_values"] = m.layer_scale_init
    return kw


def load_tokenizer(cfg: Config) -> VQKD:
    m = cfg.model
    if not m.tokenizer_weights:
        raise UserError("pretraining needs a trained tokenizer: set model.tokenizer_weights (a VQ-KD checkpoint)")
    sd = vqkd_state_dict_from_official(read_checkpoint(m.tokenizer_weights))
    v = cfg.vqkd
    kw = {k: val for k, val in (("embed_dim", v.embed_dim), ("depth", v.depth), ("num_heads", v.num_heads)) if val}
    tok = build_vqkd(m.tokenizer, num_codes=v.num_codes, code_dim=v.code_dim, img_size=cfg.data.second_input_size,
                     patch_size=m.patch_size, decoder_depth=v.decoder_depth,
                     target_dim=sd["decode_task_layer.2.weight"].shape[0], **kw)
    from vlcore.checkpoint import load_state_dict_strict

    load_state_dict_strict(tok, sd, source=m.tokenizer_weights)
    if tok.config.num_codes != m.vocab_size:
        raise UserError(f"model.vocab_size ({m.vocab_size}) must equal the tokenizer's codebook size ({tok.config.num_codes})")
    for p in tok.parameters():
        p.requires_grad_(False)
    return tok.eval()


def build_teacher(cfg: Config) -> Teacher:
    t = cfg.teacher
    if t.kind == "clip":
        if not t.path:
            raise UserError("teacher.path must name a local CLIP ViT-B/16 folder (transformers format); "
                            "nothing is downloaded")
        return ClipTeacher.from_pretrained(t.path)
    import timm

    kw = dict(pretrained=False, num_classes=0, img_size=cfg.data.input_size)
    if not t.path:  # a random teacher (smoke runs) on the tokenizer's patch grid
        kw["patch_size"] = cfg.model.patch_size
    model = timm.create_model(t.timm_name, **kw)
    if t.path:
        from vlcore.checkpoint import load_state_dict_strict

        load_state_dict_strict(model, read_checkpoint(t.path), source=t.path)
    elif cfg.data.kind != "cifar10":
        raise UserError("teacher.path must name the DINO weights (nothing is downloaded)")
    return TimmTeacher(model)


def _pretrain_model(cfg: Config) -> BeitV2ForMIM:
    m = cfg.model
    kw = dict(img_size=m.img_size, patch_size=m.patch_size, drop_path_rate=m.drop_path, vocab_size=m.vocab_size,
              head_layers=m.head_layers, **_size_overrides(m))
    if m.early_layers is not None:
        kw["early_layers"] = m.early_layers
    model = REGISTRY.build(m.name, **kw)
    if not isinstance(model, BeitV2ForMIM):
        raise UserError(f"task 'pretrain' needs a pretraining model (a *_pt name), got '{m.name}'")
    return model


def _classifier(cfg: Config, *, global_pool: str = "avg", num_classes: int | None = None) -> Beit:
    m = cfg.model
    model = REGISTRY.build(m.name, img_size=m.img_size, patch_size=m.patch_size, drop_path_rate=m.drop_path,
                           num_classes=m.num_classes if num_classes is None else num_classes,
                           global_pool=global_pool, **_size_overrides(m))
    if not isinstance(model, Beit) or isinstance(model, BeitV2ForMIM):
        raise UserError(f"task '{cfg.task}' needs a fine-tuning model (no _pt suffix), got '{m.name}'")
    return model


def init_classifier(model: Beit, path: str) -> list[str]:
    """Start a classifier from a pretraining (shared table copied per layer) or fine-tuned
    checkpoint; returns the keys left at their fresh initialisation (``fc_norm`` / ``head``)."""
    sd = read_checkpoint(path)
    layout = detect_layout(sd)
    if layout == "pretrain":
        converted, _ = finetune_init_from_pretrain(sd, model)
    elif layout == "finetune":
        converted = beit_state_dict_from_official(sd, model)
        head = converted.get("head.weight")
        if head is None or head.shape != model.state_dict().get("head.weight", head).shape:
            converted = {k: v for k, v in converted.items() if not k.startswith("head.")}
        if model.global_pool != "avg":
            converted = {k: v for k, v in converted.items() if not k.startswith("fc_norm.")}
    else:
        raise UserError(f"{path}: a {layout} checkpoint cannot initialise a classifier")
    return load_finetune_init(model, converted, source=path)


class LinearProbe(nn.Module):
    """A frozen BEiT backbone and a trainable BatchNorm (no affine) + Linear on its [CLS] or
    mean patch token after the final LayerNorm."""

    def __init__(self, backbone: Beit, *, num_classes: int, feature: str = "cls") -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.feature = feature
        self.head = nn.Sequential(nn.BatchNorm1d(backbone.embed_dim, affine=False),
                                  nn.Linear(backbone.embed_dim, num_classes))

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.backbone.eval()  # frozen: dropout / drop path stay off
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = self.backbone.forward_features(x)  # B, 1+N, D
            f = tokens[:, 0] if self.feature == "cls" else tokens[:, 1:].mean(1)
        return self.head(f)


# --- tasks ----------------------------------------------------------------------


def classification_task(cfg: Config, *, log: Callable[[str], None] = print,
                        build: Callable[..., Beit] | None = None,
                        init: Callable[[Beit, str], list[str]] | None = None) -> Task:
    """Fine-tuning (mixup / cutmix, label smoothing) or a linear probe of a BEiT classifier.

    ``build`` / ``init`` make and initialise the backbone (default: this module's); papers whose
    students are BEiT-style ViTs (maskdistill) reuse the recipe with their own.
    """
    build = build or _classifier
    init = init or init_classifier
    m, d = cfg.model, cfg.data
    if cfg.task == "finetune":
        model = build(cfg)
    else:
        backbone = build(cfg, global_pool="", num_classes=0)
    target = model if cfg.task == "finetune" else backbone
    if m.init_checkpoint:
        fresh = init(target, m.init_checkpoint)
        log(f"init from {m.init_checkpoint}; fresh: {', '.join(sorted({k.split('.')[0] for k in fresh})) or 'none'}")
    elif cfg.task == "linprobe":
        raise UserError("a linear probe needs model.init_checkpoint (the pretrained backbone)")
    if cfg.task == "linprobe":
        model = LinearProbe(backbone, num_classes=m.num_classes, feature=m.linprobe_feature)
    train_tf = _resize_to(cfg, classification_transform(
        train=cfg.task == "finetune", input_size=d.input_size, auto_augment=d.auto_augment, reprob=d.reprob,
        crop_pct=d.crop_pct))
    if cfg.task == "linprobe":  # BEiT's linear evaluation: crop + flip only
        train_tf = _resize_to(cfg, T.Compose([
            T.RandomResizedCrop(d.input_size, interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip(),
            T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]))
    eval_tf = _resize_to(cfg, classification_transform(train=False, input_size=d.input_size, crop_pct=d.crop_pct))
    mixup = None
    if cfg.task == "finetune" and (d.mixup > 0 or d.cutmix > 0):
        from timm.data import Mixup

        mixup = Mixup(mixup_alpha=d.mixup, cutmix_alpha=d.cutmix, label_smoothing=d.smoothing,
                      num_classes=m.num_classes)

    def step_fn(model, batch):
        x, y = batch
        if mixup is not None and x.shape[0] % 2 == 0:
            x, soft = mixup(x, y)
            logits = model(x)
            loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        else:
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=d.smoothing if cfg.task == "finetune" else 0)
        return loss, {"acc": (logits.argmax(-1) == y).float().mean().detach()}

    return Task(model, step_fn, _base_dataset(cfg, split="train", transform=train_tf),
                _base_dataset(cfg, split="val", transform=eval_tf))


def build_task(cfg: Config, *, log: Callable[[str], None] = print) -> Task:
    d, m = cfg.data, cfg.model
    if cfg.task == "vqkd":
        v = cfg.vqkd
        kw = {k: val for k, val in (("embed_dim", v.embed_dim), ("depth", v.depth), ("num_heads", v.num_heads)) if val}
        teacher = build_teacher(cfg)
        tok = build_vqkd(m.tokenizer, img_size=d.input_size, patch_size=m.patch_size, num_codes=v.num_codes,
                         code_dim=v.code_dim, decoder_depth=v.decoder_depth, decay=v.decay,
                         target_dim=teacher.out_dim, **kw)
        tf = _resize_to(cfg, T.Compose([T.RandomResizedCrop(d.input_size, scale=(0.08, 1.0),
                                                            interpolation=T.InterpolationMode.BICUBIC),
                                        T.RandomHorizontalFlip(), T.ToTensor()]))
        holder = {}

        def step_fn(model, batch):
            x, _ = batch
            t = holder.setdefault("teacher", teacher.to(x.device))
            out = model(x, t(x))
            used = out.indices.unique().numel() / model.config.num_codes if hasattr(model, "config") else 0.0
            return out.loss, {"rec_loss": out.rec_loss.detach(), "commit_loss": out.commit_loss.detach(),
                              "batch_code_usage": used}

        return Task(tok, step_fn, _base_dataset(cfg, split="train", transform=tf))

    if cfg.task == "pretrain":
        model = _pretrain_model(cfg)
        tokenizer = load_tokenizer(cfg)
        grid = m.img_size // m.patch_size
        if m.num_masking_patches > grid * grid:
            raise UserError(f"model.num_masking_patches ({m.num_masking_patches}) exceeds the {grid}x{grid} grid")
        tf = MIMTransform(input_size=d.input_size, second_input_size=d.second_input_size, patch_size=m.patch_size,
                          crop_scale=d.crop_scale, color_jitter=d.color_jitter,
                          second_interpolation=d.second_interpolation, num_masking_patches=m.num_masking_patches,
                          min_mask_patches_per_block=m.min_mask_patches_per_block)
        base = _base_dataset(cfg, split="train", transform=None)
        holder = {}

        def step_fn(model, batch):
            view, tok_view, mask = batch
            tok = holder.setdefault("tokenizer", tokenizer.to(view.device))
            with torch.no_grad():
                codes = tok.get_codebook_indices(tok_view)  # B, N
            out = model.mim_loss(view, mask, codes)
            metrics = {"mlm_acc": out.acc_main.detach()}
            if out.loss_agg is not None:
                metrics.update(loss_main=out.loss_main.detach(), loss_agg=out.loss_agg.detach(),
                               mlm_acc_agg=out.acc_agg.detach())
            return out.loss, metrics

        return Task(model, step_fn, PretrainDataset(base, tf))

    if cfg.task in ("finetune", "linprobe"):
        return classification_task(cfg, log=log)
    raise UserError(f"unknown task '{cfg.task}'")


def main(argv: Sequence[str] | None = None) -> int:
    p = add_config_args(argparse.ArgumentParser(prog="python -m beit2.train", description=__doc__.split("\n\n")[0]))
    args = p.parse_args(argv)
    cfg = load_config(Config, resolve_config_path(args.config), args.set)
    seed_everything(cfg.train.seed)  # model initialisation is part of the run: the same seed, the same run
    task = build_task(cfg)
    summary = Trainer(task.model, task.step_fn, task.train_set, cfg.train, run_config=cfg).fit()
    print(f"{cfg.task}: {summary.final_step}/{summary.total_steps} steps, last loss {summary.last_loss:.4f}, "
          f"weights {summary.weights_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
