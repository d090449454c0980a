"""Typed configs of Conformer's classification runs (`python -m conformer.train --config ... --set k=v`).

The defaults are the paper's ImageNet recipe for Conformer-S (official `main.py` defaults:
300 epochs, global batch 1024 = 8 GPUs x 128, AdamW lr 1e-3 absolute, weight decay 0.05,
5 warm-up epochs, cosine to 1e-5, drop path 0.1, RandAugment m9, Mixup 0.8 / CutMix 1.0,
label smoothing 0.1, random erasing 0.25, EMA 0.99996). Presets under `conformer/configs/`
hold only what differs (other sizes, the CPU CIFAR-10 recipes, smoke runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.errors import UserError
from vlcore.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class ModelConfig:
    name: str = "conformer_small_patch16_224"  # a name of conformer.models.REGISTRY
    num_classes: int = 1000
    drop_path_rate: float = 0.1  # transformer blocks only (Conformer); passed where the model takes it
    init_checkpoint: str = ""  # weights to start from, any layout conformer.convert reads


@dataclass(frozen=True)
class DataConfig:
    # imagenet: ImageFolder layout root/{train,val}/<class>/*.JPEG; cifar10: the shared CIFAR-10 subset
    dataset: Literal["imagenet", "cifar10"] = "imagenet"
    root: str = ""  # imagenet: the folder holding train/ and val/; cifar10: the data root ("" = ../shared/data)
    img_size: int = 224
    # Use only N images (0 = all): imagenet takes the first N in folder order, cifar10 N / 10 of each class.
    train_limit: int = 0
    eval_limit: int = 0
    eval_batch_size: int = 64
    crop_pct: float = 0.875  # eval: resize to img_size / crop_pct (256 for 224), bicubic, centre crop
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class AugConfig:
    # DeiT-style recipe (timm create_transform / Mixup), as in the official main.py.
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25  # random erasing probability
    remode: str = "pixel"
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: Literal["batch", "pair", "elem"] = "batch"
    smoothing: float = 0.1
    # cifar10 only: random crop with this zero padding and horizontal flips (the ImageNet transforms
    # above need PIL images; the CPU recipes use these instead)
    cifar_pad: int = 4
    cifar_flip: bool = True


@dataclass(frozen=True)
class ConformerConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        out_dir="runs/conformer_small_patch16_224_in1k",
        epochs=300,
        global_batch_size=1024,
        per_device_batch_size=128,
        lr=1e-3,  # absolute, as released (the official linear-scaling line is commented out)
        min_lr=1e-5,
        weight_decay=0.05,
        warmup_steps=5 * 1251,  # 5 epochs of 1,281,167 / 1024 images
        schedule="cosine",
        ema_decay=0.99996,
        precision="bf16",
        log_interval=50,
        ckpt_interval=1251,
        num_workers=8,
    ))
    threads: int = 0  # torch CPU threads; 0 = torch's default


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a preset in conformer/configs (with or without .yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    presets = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise UserError(f"config not found: {name_or_path} (presets in {CONFIG_DIR}: {', '.join(presets)})")
