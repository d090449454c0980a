"""Typed configs of the BEiT v2 entry points (YAML presets under ``beit2/configs/``).

One schema serves the four tasks: ``vqkd`` (tokenizer training), ``pretrain`` (MIM),
``finetune`` (classification) and ``linprobe`` (linear classifier on frozen features).
Presets hold only what differs from these defaults; ``--set a.b=v`` overrides anything.
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
    root: str = "data/imagenet"  # imagenet / image_folder root; cifar10: the shared data root ("" = default)
    input_size: int = 224
    second_input_size: int = 224  # tokenizer view (pretraining)
    second_interpolation: Literal["bicubic", "bilinear", "lanczos"] = "bicubic"
    crop_scale: tuple[float, float] = (0.2, 1.0)  # pretraining RandomResizedCrop; fine-tuning uses (0.08, 1)
    color_jitter: float = 0.4
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    crop_pct: float = 0.875
    num_classes: int = 1000
    limit: Optional[int] = None  # first N images (smoke runs, fixed eval subsets)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "beitv2_base_patch16_224_pt"  # a beit2.models registry name
    img_size: int = 224
    patch_size: int = 16
    drop_path: float = 0.1
    layer_scale_init: Optional[float] = None  # None: the registry default (0.1 base, 1e-5 large)
    # smaller widths for smoke presets; None keeps the registered size
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    # pretraining
    vocab_size: int = 8192
    early_layers: Optional[int] = None
    head_layers: int = 2
    num_masking_patches: int = 75
    min_mask_patches_per_block: int = 16
    tokenizer: str = "vqkd_encoder_base_decoder_3x768x12_clip"
    tokenizer_weights: Optional[str] = None  # converted VQ-KD .safetensors / official .pth (required to pretrain)
    # fine-tuning / linear probing
    num_classes: int = 1000
    init_checkpoint: Optional[str] = None  # a pretraining checkpoint (ours or official) to start from
    linprobe_feature: Literal["cls", "mean"] = "cls"


@dataclass(frozen=True)
class TeacherConfig:
    # clip: transformers CLIPVisionModelWithProjection at `path` (local); dino: timm ViT + weights file at `path`
    kind: Literal["clip", "dino"] = "clip"
    path: Optional[str] = None
    timm_name: str = "vit_base_patch16_224.dino"


@dataclass(frozen=True)
class VQKDConfigSection:
    num_codes: int = 8192
    code_dim: int = 32
    decoder_depth: int = 3
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    decay: float = 0.99


@dataclass(frozen=True)
class Config:
    task: Literal["vqkd", "pretrain", "finetune", "linprobe"] = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    vqkd: VQKDConfigSection = field(default_factory=VQKDConfigSection)
    train: TrainConfig = field(default_factory=TrainConfig)


def resolve_config_path(path: str | None) -> str | None:
    """A preset path as given, or a bare name found under ``beit2/configs/`` (any working directory)."""
    return None if path is None else str(find_preset(path, CONFIG_DIR))
