"""The training engine: `Trainer`, its `TrainConfig`, lr schedule and layer-wise lr decay groups."""

from vlcore.train.engine import (
    GlobalBatchSampler,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainSummary,
    evaluate,
    seed_everything,
)
from vlcore.train.ema import ModelEma
from vlcore.train.optim import lr_at, param_groups_lrd, vit_layer_id

__all__ = [
    "GlobalBatchSampler", "NonFiniteLossError", "TrainConfig", "Trainer", "TrainSummary", "evaluate", "ModelEma",
    "seed_everything", "lr_at", "param_groups_lrd", "vit_layer_id",
]
