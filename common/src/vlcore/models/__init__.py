"""Models shared by two or more papers (MAE: G2SD and imTED)."""

from vlcore.models.mae import (
    DECODERS,
    ENCODERS,
    MaskedAutoencoderViT,
    build_mae,
    load_mae_checkpoint,
    mae_state_dict_from_timm,
    mae_state_dict_to_timm,
    masking_from_noise,
    read_official_state_dict,
)

__all__ = [
    "DECODERS",
    "ENCODERS",
    "MaskedAutoencoderViT",
    "build_mae",
    "load_mae_checkpoint",
    "mae_state_dict_from_timm",
    "mae_state_dict_to_timm",
    "masking_from_noise",
    "read_official_state_dict",
]
