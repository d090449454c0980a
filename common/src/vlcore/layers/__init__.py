"""Transformer building blocks shared by the papers (see each module's docstring)."""

from vlcore.layers.attention import (
    Attention,
    CrossAttention,
    KVCache,
    build_attn_bias,
    dot_product_attention,
    eager_attention,
)
from vlcore.layers.blocks import (
    BlockCache,
    DecoderBlock,
    DecoderCache,
    EncoderBlock,
    TransformerStack,
    convert_torchscale_state_dict,
)
from vlcore.layers.init import (
    apply_value_path_gain_,
    deepnet_constants,
    layout_constants,
    magneto_gamma,
    rescale_residual_outputs_,
    trunc_normal_init_,
)
from vlcore.layers.multiway import (
    ALL_A,
    ALL_B,
    MULTIWAY_PRESETS,
    MultiwayNetwork,
    multiway_split,
    set_split_position,
    wrap_multiway_,
)
from vlcore.layers.pos_embed import PatchEmbed, resample_pos_embed, sincos_1d_pos_embed, sincos_2d_pos_embed
from vlcore.layers.relpos import (
    RelativePositionBias,
    num_relative_distances,
    relative_position_index,
    resize_rel_pos_table,
)

__all__ = [
    "ALL_A",
    "ALL_B",
    "MULTIWAY_PRESETS",
    "Attention",
    "BlockCache",
    "CrossAttention",
    "DecoderBlock",
    "DecoderCache",
    "EncoderBlock",
    "KVCache",
    "MultiwayNetwork",
    "PatchEmbed",
    "RelativePositionBias",
    "TransformerStack",
    "apply_value_path_gain_",
    "dot_product_attention",
    "build_attn_bias",
    "convert_torchscale_state_dict",
    "deepnet_constants",
    "eager_attention",
    "layout_constants",
    "magneto_gamma",
    "multiway_split",
    "num_relative_distances",
    "relative_position_index",
    "resample_pos_embed",
    "rescale_residual_outputs_",
    "resize_rel_pos_table",
    "set_split_position",
    "sincos_1d_pos_embed",
    "sincos_2d_pos_embed",
    "trunc_normal_init_",
    "wrap_multiway_",
]
