"""MaskDistill in miniature, on 32x32 CIFAR-10 images, for the CPU reproduction.

One seed runs, in order:

1. the teacher, produced inside the run (a CLIP cannot be downloaded): a small CNN
   trained *with labels* on a labelled split (150 images per class) that neither the probe
   nor the fine-tuning uses; its 4x4 pre-activation feature map (one 128-d vector per 8x8
   patch, centred like CLIP's tokens) stands in for CLIP's patch tokens. The CNN is
   :class:`beit2.mini.TeacherCNN`, the same stand-in as the BEiT v2 miniature;
2. three students of identical architecture (:class:`maskdistill.models.MaskDistillForMIM`:
   dense BEiT ViT, mask token, shared rel-pos bias, layer scale 0.1, FC head), the same
   steps, masks and batches, differing only in the ``vlcore.mim`` objective:

   * ``maskdistill``: teacher features, LayerNorm without affine, Smooth-L1 (beta 1), masked patches;
   * ``nonorm``: the raw teacher features, otherwise identical;
   * ``pixel``: per-patch normalised pixels (192 values per 8x8 patch), Smooth-L1, masked patches;

   and a randomly initialised student (no pretraining);
3. linear probe (multinomial logistic regression on frozen mean-pooled final features,
   :func:`beit2.mini.linear_probe`) and a short end-to-end fine-tune (mean pooling + LN
   + linear head, AdamW, layer decay; one epoch on the first 1,000 images of the probe split);
   both evaluated on the 1,000 test images.

Plain tensors in memory, no data loader: exactly repeatable per seed on one machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlcore.masking import BlockwiseMaskGenerator
from vlcore.mim import build_objective
from vlcore.models.beit import Beit
from vlcore.tokenizers.vqkd import ModuleTeacher
from vlcore.train.optim import lr_at, param_groups_lrd

from beit2.mini import MiniConfig as _BeitMini
from beit2.mini import MiniData, _batches, _set_lr, linear_probe, load_mini_data, train_teacher

from maskdistill.models.pretrain import MaskDistillForMIM

__all__ = ["MiniConfig", "VARIANTS", "load_data", "run_seed", "build_objective_for"]

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
VARIANTS = ("maskdistill", "nonorm", "pixel")


@dataclass(frozen=True)
class MiniConfig:
    image_size: int = 32
    patch_size: int = 8
    batch_size: int = 128
    teacher_per_class: int = 150
    teacher_epochs: int = 6
    teacher_lr: float = 2e-3
    teacher_width: int = 64
    # students
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    num_masked: int = 6  # of 16 patches (40%, as 75 / 196)
    min_block: int = 2
    beta: float = 1.0  # Smooth-L1 threshold
    mim_epochs: int = 2
    mim_lr: float = 3e-3
    mim_betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    clip_grad: float = 3.0
    # fine-tuning on the probe split
    ft_epochs: int = 1
    ft_images: int = 1000  # the first images of the probe split (CPU budget)
    ft_lr: float = 3e-3
    ft_layer_decay: float = 0.75
    ft_weight_decay: float = 0.05
    # probes
    probe_steps: int = 100
    probe_wds: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    max_pretrain_images: int | None = 3000  # the first 3,000 training images, unlabelled (CPU budget)
    max_probe_images: int | None = None


def load_data(cfg: MiniConfig, *, data_root=None) -> MiniData:
    b = _BeitMini(image_size=cfg.image_size, teacher_per_class=cfg.teacher_per_class,
                  max_pretrain_images=cfg.max_pretrain_images, max_probe_images=cfg.max_probe_images)
    return load_mini_data(b, data_root=data_root)


def _teacher_cfg(cfg: MiniConfig) -> _BeitMini:
    return _BeitMini(image_size=cfg.image_size, batch_size=cfg.batch_size, teacher_epochs=cfg.teacher_epochs,
                     teacher_lr=cfg.teacher_lr, teacher_width=cfg.teacher_width)


def build_student(cfg: MiniConfig, target_dim: int) -> MaskDistillForMIM:
    return MaskDistillForMIM(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.dim, depth=cfg.depth,
                             num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, target_dim=target_dim, init_values=0.1)


def build_objective_for(variant: str, cfg: MiniConfig, teacher: nn.Module):
    if variant == "maskdistill":
        return build_objective("maskdistill", teacher=teacher, beta=cfg.beta)
    if variant == "nonorm":
        return build_objective("maskdistill", teacher=teacher, beta=cfg.beta, normalize="none")
    if variant == "pixel":
        return build_objective("mae", patch_size=cfg.patch_size).with_options(loss_kind="smooth_l1", beta=cfg.beta)
    raise ValueError(f"unknown variant {variant!r}")


def _flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _norm(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN)[None, :, None, None]
    std = torch.tensor(CIFAR_STD)[None, :, None, None]
    return (x - mean) / std


def pretrain(cfg: MiniConfig, images: torch.Tensor, objective, target_dim: int, seed: int
             ) -> tuple[MaskDistillForMIM, list[list[float]], dict]:
    """Dense MIM with blockwise masks; the batches, flips and masks depend only on ``seed``,
    so every variant sees the same inputs."""
    torch.manual_seed(seed)
    model = build_student(cfg, target_dim).train()
    opt = torch.optim.AdamW(param_groups_lrd(model, cfg.weight_decay, 1.0), lr=0.0, betas=cfg.mim_betas)
    g = torch.Generator().manual_seed(1000 + seed)
    masker = BlockwiseMaskGenerator(input_size=cfg.image_size // cfg.patch_size, num_masking_patches=cfg.num_masked,
                                    min_num_patches=cfg.min_block, seed=seed)
    n = len(images)
    steps = cfg.mim_epochs * (n // cfg.batch_size)
    step, curve, losses = 0, [], []
    for _ in range(cfg.mim_epochs):
        for idx in _batches(n, cfg.batch_size, g):
            x = _flip(images[idx], g)
            mask = masker.batch(len(idx))
            target = objective.targets(x)  # the uncorrupted view, in [0, 1]
            _set_lr(opt, lr_at(step, lr=cfg.mim_lr, total_steps=steps,
                               warmup_steps=max(1, int(cfg.warmup_frac * steps)), min_lr=cfg.mim_lr / 100))
            out = model.mim_loss(_norm(x), mask, target, objective)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            losses.append(out.loss.item())
            if step % 10 == 0 or step == steps - 1:
                curve.append([step, out.loss.item()])
            step += 1
    return model.eval(), curve, {"loss_first": losses[0], "loss_last": float(np.mean(losses[-5:])), "steps": steps}


@torch.no_grad()
def mean_features(model: Beit, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model.forward_features(_norm(images[i : i + batch]))[:, 1:].mean(1)
                      for i in range(0, len(images), batch)])


class _FineTune(nn.Module):
    """Backbone (pretraining model without its FC head) + mean pooling + LayerNorm + linear head."""

    def __init__(self, backbone: MaskDistillForMIM, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc_norm = nn.LayerNorm(backbone.embed_dim, eps=1e-6)
        self.head = nn.Linear(backbone.embed_dim, classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        self.head.weight.data.mul_(0.001)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.backbone.forward_blocks(self.backbone.embed(x))
        return self.head(self.fc_norm(x[:, 1:].mean(1)))


def fine_tune(cfg: MiniConfig, backbone: MaskDistillForMIM, data: MiniData, seed: int) -> float:
    """End-to-end fine-tuning on the probe split; top-1 (%) on the test images."""
    import copy

    torch.manual_seed(seed)
    model = _FineTune(copy.deepcopy(backbone), data.num_classes).train()
    # layer decay over the backbone's blocks (embeddings get the smallest scale)
    groups = []
    depth = len(model.backbone.blocks)
    for name, p in model.named_parameters():
        if name.startswith("backbone.head_distill") or name == "backbone.mask_token":
            p.requires_grad_(False)
            continue
        if name.startswith("backbone.blocks."):
            layer = int(name.split(".")[2]) + 1
        elif name.startswith("backbone."):
            layer = 0
        else:
            layer = depth + 1
        scale = cfg.ft_layer_decay ** (depth + 1 - layer)
        wd = 0.0 if p.ndim == 1 or name.endswith(("cls_token", "relative_position_bias_table")) else cfg.ft_weight_decay
        groups.append({"params": [p], "weight_decay": wd, "lr_scale": scale})
    opt = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999))
    g = torch.Generator().manual_seed(2000 + seed)
    n = min(len(data.probe_y), cfg.ft_images)
    steps = cfg.ft_epochs * (n // cfg.batch_size)
    step = 0
    for _ in range(cfg.ft_epochs):
        for idx in _batches(n, cfg.batch_size, g):
            x = _flip(data.probe_x[idx], g)
            _set_lr(opt, lr_at(step, lr=cfg.ft_lr, total_steps=steps, warmup_steps=max(1, steps // 10),
                               min_lr=cfg.ft_lr / 100))
            loss = F.cross_entropy(model(_norm(x)), data.probe_y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(_norm(data.test_x[i : i + 500])).argmax(-1) for i in range(0, len(data.test_y), 500)])
    return (pred == data.test_y).float().mean().item() * 100


def make_teacher(cfg: MiniConfig, data: MiniData, seed: int = 0) -> tuple[ModuleTeacher, float]:
    """Train the stand-in teacher (labels of the teacher split only) and its own linear-probe top-1."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = train_teacher(_teacher_cfg(cfg), data, g)
    with torch.no_grad():
        pooled = lambda x: torch.cat([net.pooled(x[i : i + 500]) for i in range(0, len(x), 500)])  # noqa: E731
        f_tr, f_te = pooled(data.probe_x), pooled(data.test_x)
    acc = linear_probe(f_tr, data.probe_y, f_te, data.test_y, classes=data.num_classes, wds=cfg.probe_wds,
                       steps=cfg.probe_steps, seed=seed)["top1"]
    # the CNN was trained on images in [0, 1] (no mean / std), so it is queried the same way
    return ModuleTeacher(net, out_dim=net.out_dim), acc


def run_seed(cfg: MiniConfig, data: MiniData, seed: int, log: Callable[[str], None] = print,
             teacher: tuple[ModuleTeacher, float] | None = None) -> dict:
    """The whole pipeline for one seed: teacher (unless given), three students, random init,
    probes, fine-tunes."""
    torch.manual_seed(seed)
    times: dict[str, float] = {}
    t0 = time.time()
    probe = lambda f_tr, f_te: linear_probe(f_tr, data.probe_y, f_te, data.test_y,  # noqa: E731
                                            classes=data.num_classes, wds=cfg.probe_wds, steps=cfg.probe_steps,
                                            seed=seed)["top1"]
    teacher, teacher_acc = teacher if teacher is not None else make_teacher(cfg, data, seed)
    times["teacher"] = time.time() - t0
    log(f"  teacher probe {teacher_acc:.1f}% ({times['teacher']:.0f}s)")
    result: dict = {"teacher_probe": teacher_acc}
    curves: dict[str, list[list[float]]] = {}
    for variant in VARIANTS:
        t = time.time()
        obj = build_objective_for(variant, cfg, teacher)
        dim = teacher.out_dim if variant != "pixel" else 3 * cfg.patch_size**2
        student, curve, stats = pretrain(cfg, data.pretrain, obj, dim, seed)
        times[f"{variant}_pretrain"] = time.time() - t
        t = time.time()
        acc = probe(mean_features(student, data.probe_x), mean_features(student, data.test_x))
        ft = fine_tune(cfg, student, data, seed)
        times[f"{variant}_eval"] = time.time() - t
        result[variant] = {"probe": acc, "finetune": ft, **stats}
        curves[f"{variant} MIM loss"] = curve
        log(f"  {variant}: loss {stats['loss_first']:.3f} -> {stats['loss_last']:.3f}, probe {acc:.1f}%, "
            f"fine-tune {ft:.1f}% ({times[f'{variant}_pretrain']:.0f}s + {times[f'{variant}_eval']:.0f}s)")
    torch.manual_seed(seed)
    rand = build_student(cfg, teacher.out_dim)
    result["random"] = {"probe": probe(mean_features(rand, data.probe_x), mean_features(rand, data.test_x)),
                        "finetune": fine_tune(cfg, rand, data, seed)}
    times["total"] = time.time() - t0
    result["times_s"] = {k: round(v, 1) for k, v in times.items()}
    result["curves"] = curves
    log(f"  random init: probe {result['random']['probe']:.1f}%, fine-tune {result['random']['finetune']:.1f}% "
        f"(seed total {times['total']:.0f}s)")
    return result
