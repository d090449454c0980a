"""Typed configs of the MaskDistill entry points (YAML presets under ``maskdistill/configs/``).

One schema serves three tasks: ``pretrain`` (MIM with any ``vlcore.mim`` preset; MaskDistill
by default), ``finetune`` (classification) and ``linprobe`` (linear classifier on frozen
features). Presets hold only what differs from these defaults; ``--set a.b=v`` overrides
anything and unknown keys are rejected.

Choices the paper leaves open are options here (defaults in brackets, see the README):
``teacher.name`` per student size [auto: CLIP-B/16 for B and L, CLIP-L/14 for H],
``teacher.tensor`` [last_hidden: last block, before ln_post and projection],
``teacher.image_size`` [auto: teacher grid = student grid], ``objective.beta`` [1.0],
``objective.normalize`` [layernorm, no affine], ``objective.positions`` [masked].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.config import find_preset
from vlcore.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class DataConfig:
    # imagenet: root/{train,val}/<class>/<image>; cifar10: the shared CIFAR-10 subset; image_folder: root/<class>/...
    kind: Literal["imagenet", "cifar10", "image_folder"] = "imagenet"
    root: str = "data/imagenet"
    input_size: int = 224
    crop_scale: tuple[float, float] = (0.2, 1.0)  # pretraining RandomResizedCrop (one box for both views)
    color_jitter: float = 0.4
    second_interpolation: Literal["bicubic", "bilinear", "lanczos"] = "bicubic"  # teacher view
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    crop_pct: float = 0.875
    num_classes: int = 1000
    limit: Optional[int] = None


@dataclass(frozen=True)
class ModelConfig:
    name: str = "maskdistill_vit_base_patch16_224_pt"  # a maskdistill.models registry name
    img_size: int = 224
    patch_size: Optional[int] = None  # None: the registered size's (16, or 14 for huge)
    drop_path: float = 0.1
    layer_scale_init: Optional[float] = None  # None: registry default (0.1 base, 1e-5 large / huge)
    embed_dim: Optional[int] = None  # smaller widths for smoke presets
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mask_ratio: float = 0.4  # block-wise; 75 of 196 patches at 224 / 16, 102 of 256 at 224 / 14
    min_mask_patches_per_block: int = 16
    # fine-tuning / linear probing
    num_classes: int = 1000
    init_checkpoint: Optional[str] = None
    linprobe_feature: Literal["cls", "mean"] = "mean"


@dataclass(frozen=True)
class TeacherConfig:
    # a key of maskdistill.models.TEACHERS; "auto" = the default for the student size;
    # "random_tiny": a randomly initialised small CLIPVisionModel (smoke runs; no download)
    name: str = "auto"
    path: Optional[str] = None  # local transformers folder of the CLIP model (required for real teachers)
    tensor: str = "last_hidden"  # last_hidden | post_ln | projected | layer:<k>
    image_size: Optional[int] = None  # None: chosen so the teacher grid equals the student grid
    keep_cls: bool = False
    precision: Literal["fp32", "bf16"] = "fp32"  # fp16 overflows in CLIP's last layers; not offered


@dataclass(frozen=True)
class ObjectiveConfig:
    preset: Literal["maskdistill", "mae", "simmim", "maskfeat", "data2vec"] = "maskdistill"
    beta: float = 1.0  # Smooth-L1 threshold (re-implementations: 1.0 and 2.0)
    normalize: Optional[Literal["none", "layernorm", "patch", "patch_biased", "l2"]] = None  # None: preset default
    positions: Literal["masked", "all", "visible"] = "masked"
    # data2vec
    top_k: int = 6
    ema_momentum: float = 0.999


@dataclass(frozen=True)
class Config:
    task: Literal["pretrain", "finetune", "linprobe"] = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def resolve_config_path(path: str | None) -> str | None:
    """A preset path as given, or a bare name found under ``maskdistill/configs/`` (any working directory)."""
    return None if path is None else str(find_preset(path, CONFIG_DIR))
