"""mmengine checkpoints under ``torch.load(weights_only=True)``: allow only the few classes they store."""

from __future__ import annotations

import torch


def allow_mmengine_checkpoints() -> None:
    """Register the classes an mmengine checkpoint's ``meta`` holds as safe for weights-only loading."""
    import collections

    import numpy as np
    from mmengine.config.config import ConfigDict
    from mmengine.logging.history_buffer import HistoryBuffer

    torch.serialization.add_safe_globals([
        HistoryBuffer, ConfigDict, collections.OrderedDict, np.dtype, np.ndarray,
        np.core.multiarray._reconstruct, type(np.dtype("float64")), type(np.dtype("int64")),
    ])
