"""Model configurations of imted, each with the paper's parameter count.

Each entry builds the detector of one released mmdet config (``imted/configs/mmdet``).
`python -m imted.models [--json]` lists them. The reference counts are computed from the
official module definitions (the paper does not tabulate parameters); the decoder head's
fixed 197 x D sin-cos table is a buffer and not counted.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vlcore.registry import ModelRegistry

REGISTRY = ModelRegistry("imted")
CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "mmdet"
SOURCE = "computed from the official imTED module definitions (LiewFeng/imTED configs/imted)"

# registry name -> (config file, reference parameter count in millions)
RELEASED: dict[str, tuple[str, float]] = {
    "imted_faster_rcnn_vit_small_3x_coco": ("imted_faster-rcnn_vit-s-mae_8xb2-3x_coco.py", 30.25),
    "imted_faster_rcnn_vit_base_3x_coco": ("imted_faster-rcnn_vit-b-mae_8xb2-3x_coco.py", 122.64),
    "imted_faster_rcnn_vit_large_3x_coco": ("imted_faster-rcnn_vit-l-mae_8xb2-3x_coco.py", 346.11),
    "imted_mask_rcnn_vit_small_3x_coco": ("imted_mask-rcnn_vit-s-mae_8xb2-3x_coco.py", 32.89),
    "imted_mask_rcnn_vit_base_3x_coco": ("imted_mask-rcnn_vit-b-mae_8xb2-3x_coco.py", 125.28),
    "imted_mask_rcnn_vit_large_3x_coco": ("imted_mask-rcnn_vit-l-mae_8xb2-3x_coco.py", 348.75),
    # 60-class classifier / regressor: 122.64 - 20 * (512 + 4 * 512 + 5) M
    "imted_faster_rcnn_vit_base_2x_base_training_coco": ("imted_faster-rcnn_vit-b-mae_8xb2-24e_coco-base60.py", 122.59),
    "imted_faster_rcnn_vit_base_finetuning_30shot_coco": ("imted_faster-rcnn_vit-b-mae_8xb2-108e_coco-30shot.py", 122.64),
}


def build_from_config(config: str | Path, **overrides) -> nn.Module:
    """The detector of an mmdet config (a file, or a name in ``imted/configs/mmdet``); weights not loaded."""
    from imted.convert import build_detector

    path = Path(config)
    if not path.is_file():
        path = CONFIG_DIR / str(config)
    return build_detector(path, **overrides)


def random_init_share(model: nn.Module, loaded: set[str] | list[str]) -> float:
    """Share of parameters (by count) not covered by ``loaded`` names: what training starts from scratch."""
    loaded = set(loaded)
    total = sum(p.numel() for p in model.parameters())
    rand = sum(p.numel() for n, p in model.named_parameters() if n not in loaded)
    return rand / total


def _register(name: str, cfg: str, params_m: float) -> None:
    def builder(**overrides) -> nn.Module:
        return build_from_config(cfg, **overrides)

    builder.__doc__ = f"imTED detector of configs/mmdet/{cfg}"
    REGISTRY.register(name, paper_params_m=params_m, paper_source=SOURCE, tolerance=0.001)(builder)


for _name, (_cfg, _m) in RELEASED.items():
    _register(_name, _cfg, _m)
