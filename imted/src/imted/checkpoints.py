"""mmengine checkpoints under ``torch.load(weights_only=True)`` (kept here for imTED's callers)."""

from vlcore.mmrun import allow_mmengine_checkpoints

__all__ = ["allow_mmengine_checkpoints"]
