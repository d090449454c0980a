"""Typed configs of ``python -m kosmos2.train`` (YAML presets under ``kosmos2/configs/``).

Presets hold only what differs from these defaults; ``--set a.b=v`` overrides anything and
unknown keys or wrong types fail with the key's name (``vlcore.config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.config import find_preset
from vlcore.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class ModelConfig:
    name: str = "kosmos2_patch14_224"  # a kosmos2.models registry name
    # overrides of the registered Kosmos2Config (None keeps the registered value)
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    ffn_dim: Optional[int] = None
    vision_dim: Optional[int] = None
    vision_depth: Optional[int] = None
    vision_heads: Optional[int] = None
    num_latents: Optional[int] = None
    img_size: Optional[int] = None
    patch_size: Optional[int] = None
    dropout: Optional[float] = None
    attn_drop: Optional[float] = None
    freeze_vision: bool = True  # the released training code freezes the CLIP tower (card §2.3)
    init_checkpoint: Optional[str] = None  # ours (.safetensors) or the official kosmos-2.pt
    loc_init: Literal["random", "sincos"] = "random"  # location-token embedding init


@dataclass(frozen=True)
class DataConfig:
    # shapes: generated grounded scenes (kosmos2.mini), the only corpus available offline
    kind: Literal["shapes"] = "shapes"
    num_samples: int = 100_000  # length of one epoch of generated samples
    num_bins: int = 16  # location grid P (32 for the paper's 224-px model)
    grounded_prob: float = 0.5  # --use-object-bbox-prob: the rest are plain captions (card §6.1)
    min_objects: int = 1
    max_objects: int = 3


@dataclass(frozen=True)
class Config:
    stage: Literal["pretrain", "instruct"] = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def resolve_config_path(path: str | None) -> str | None:
    """A preset path as given, or a bare name found under ``kosmos2/configs/`` (any working directory)."""
    return None if path is None else str(find_preset(path, CONFIG_DIR))
