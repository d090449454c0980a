"""Typed configs of LDA's classification runs (`python -m lda.train --config ... --set k=v`).

Presets under `lda/configs/` hold only what differs from these defaults. The
defaults are the CPU mini reproduction on CIFAR-10-LT (imbalance 100); the
paper's recipes (ImageNet-LT, Places-LT, CIFAR-10/100-LT) are presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.config import find_preset

from lda.engine.losses import BaselineConfig, LDALossConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class DataConfig:
    # cifar10_lt: the shared real CIFAR-10 subset, subsampled; generated_lt: the same construction on generated
    # shapes (offline); split_files: ImageNet-LT / Places-LT / iNaturalist split files and their images
    dataset: Literal["cifar10_lt", "generated_lt", "split_files"] = "cifar10_lt"
    root: str = ""  # real-data root; "" = ../shared/data next to the repository (or $VLREPRO_DATA)
    imbalance_factor: float = 100.0
    n_max: Optional[int] = None  # images of the head class; None = all the smallest source class has
    subsample_seed: int = 0
    # split_files
    benchmark: Optional[Literal["imagenet_lt", "places_lt", "inaturalist2018"]] = None
    train_split: str = ""
    test_split: str = ""
    image_root: str = ""
    layout: Literal["as_listed", "places365_large"] = "as_listed"
    input_size: int = 224
    color_jitter: float = 0.4  # brightness / contrast / saturation of the ImageNet-LT / Places-LT recipe
    num_workers: int = 4


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lda_small_cnn_cifar10_mini"  # a name of lda.models.REGISTRY
    neck_dim: Optional[int] = None  # None: the registered default (the neck is only built for LDA's distance terms)
    init_checkpoint: str = ""  # backbone / full weights to start from (e.g. converted ImageNet ResNet-152)


@dataclass(frozen=True)
class OptimConfig:
    batch_size: int = 128
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    # Official schedules, stepped once per epoch: warm-up from lr/3 over `warmup_epochs`, then
    # the recursive cosine towards `min_lr` (ImageNet-LT, Places-LT) or steps at `milestones` (CIFAR-LT).
    schedule: Literal["warmup_cosine", "warmup_multistep"] = "warmup_cosine"
    warmup_epochs: int = 5
    warmup_factor: float = 1.0 / 3.0
    min_lr: float = 1e-4
    milestones: tuple[int, ...] = (160, 180)
    lr_factor: float = 0.01


@dataclass(frozen=True)
class LDATrainConfig:
    method: Literal["ce", "reweight", "cb", "cb_focal", "focal", "ldam_drw", "balanced_softmax", "lda"] = "lda"
    lda: LDALossConfig = field(default_factory=LDALossConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out_dir: str = "runs/lda"
    seed: int = 0
    device: Literal["auto", "cpu"] = "auto"
    eval_every: int = 0  # epochs between test evaluations (0: only at the end)
    log_interval: int = 10  # steps
    save_checkpoint: bool = True
    ckpt_every: int = 1  # epochs between checkpoints (0: only the final one); a killed run resumes from the last
    resume: Optional[str] = None  # "auto" or a checkpoint folder
    threads: int = 0  # torch CPU threads; 0 = leave torch's default


def resolve_config_path(path: str) -> Path:
    """A preset name (`cifar10_lt_mini`), a path relative to the cwd, or one relative to lda/configs."""
    return find_preset(path, CONFIG_DIR)
