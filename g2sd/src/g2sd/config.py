"""Typed configuration of every G2SD stage (``python -m g2sd.train --config ... --set k=v``).

One schema serves the four stages; a YAML preset holds only what differs from these
defaults (paper-scale recipes under ``g2sd/configs/``, tiny / smoke presets beside them).

* ``mae_pretrain``: MAE pre-training of a teacher (pixels, norm-pixel loss);
* ``gd``: generic distillation of an MAE student from a frozen MAE teacher (no labels);
* ``finetune``: supervised fine-tuning of a ViT classifier (teacher, or a student baseline);
* ``sd``: specific distillation of a distillation-token student from a fine-tuned teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
Stage = Literal["mae_pretrain", "gd", "finetune", "sd"]


@dataclass(frozen=True)
class ArchConfig:
    """A ViT encoder and, for MAE models, its decoder."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    decoder_embed_dim: int = 256
    decoder_depth: int = 4
    decoder_num_heads: int = 8
    drop_path_rate: float = 0.0
    global_pool: Literal["token", "avg"] = "token"  # classifiers: class token (students) or mean + fc_norm (MAE teachers)


def _base_teacher() -> ArchConfig:
    return ArchConfig(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512, decoder_depth=8,
                      decoder_num_heads=16, global_pool="avg")


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["cifar10", "imagefolder"] = "imagefolder"
    # cifar10: the shared data root (default ../shared/data); imagefolder: a folder with train/ and val/
    root: Optional[str] = None
    num_classes: int = 1000
    train_subset: int = 0  # first N training images of a seeded permutation; 0 = all
    eval_subset: int = 0  # first N evaluation images; 0 = all
    # imagefolder augmentation (cifar10 always uses pad-and-crop + horizontal flip, done per batch)
    crop_scale_min: float = 0.2  # RandomResizedCrop lower scale for mae_pretrain / gd; fine-tuning uses timm's 0.08
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    pad_crop: int = 4  # cifar10 random-crop padding (pixels)
    seed: int = 0  # seeds the train_subset permutation


@dataclass(frozen=True)
class MAEConfig:
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True


@dataclass(frozen=True)
class GDConfig:
    layer_index: int = 4  # teacher decoder block (1-based) whose output is the target
    beta: float = 2.0  # Smooth-L1 beta
    supervise_all: bool = True  # class + visible + masked tokens (False: masked tokens only)
    encoder_loss_weight: float = 0.0  # the official encoder-feature term is computed with weight 0


@dataclass(frozen=True)
class ClsConfig:
    label_smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    reinit_head_std: float = 2e-5  # head init after loading a pre-trained encoder (MAE / G2SD fine-tuning)


@dataclass(frozen=True)
class G2SDConfig:
    stage: Stage = "gd"
    model: ArchConfig = field(default_factory=ArchConfig)
    teacher: ArchConfig = field(default_factory=_base_teacher)
    init_checkpoint: Optional[str] = None  # encoder (+ decoder) to start from: MAE, G2SD GD or our runs
    teacher_checkpoint: Optional[str] = None  # gd: MAE with decoder; sd: fine-tuned classifier
    data: DataConfig = field(default_factory=DataConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    gd: GDConfig = field(default_factory=GDConfig)
    cls: ClsConfig = field(default_factory=ClsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_batch_size: int = 256


def resolve_config_path(path: str | Path) -> Path:
    """A preset path as given, else relative to ``g2sd/configs`` (so any working directory works)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if cand.is_file():
            return cand
    from vlcore.config import ConfigError

    presets = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file not found: {path} (not a file, nor a preset in {CONFIG_DIR}: {presets})")
