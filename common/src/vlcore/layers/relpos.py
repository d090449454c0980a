"""BEiT relative position bias for a Wh x Ww patch grid plus a class token.

One learnt table of (2Wh-1)(2Ww-1) + 3 rows per head: one row per 2-D offset between
two patches, then three rows for class->patch, patch->class and class->class. The
same module serves as a shared bias (one instance for the whole stack, BEiT
pretraining) or a per-layer bias (one per attention, BEiT fine-tuning).

Key names match BEiT / timm: ``relative_position_bias_table`` (parameter) and
``relative_position_index`` (non-persistent buffer, rebuilt from the window size, so
drop it from official checkpoints before loading).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from timm.layers import gen_relative_position_index
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table, resize_rel_pos_bias_table_simple
from torch import nn


def num_relative_distances(window_size: tuple[int, int], *, class_token: bool = True) -> int:
    """Rows of the table: (2Wh-1)(2Ww-1), plus 3 with a class token."""
    return (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + (3 if class_token else 0)


def relative_position_index(window_size: tuple[int, int], *, class_token: bool = True) -> torch.Tensor:
    """(N, N) long table row for every (query, key) pair; N = Wh*Ww (+1 with a class token)."""
    return gen_relative_position_index(tuple(window_size), class_token=class_token)


class RelativePositionBias(nn.Module):
    """Learnt relative position bias; ``forward()`` returns (H, N, N) to add to attention logits."""

    def __init__(self, *, window_size: tuple[int, int], num_heads: int, class_token: bool = True) -> None:
        super().__init__()
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.num_heads = num_heads
        self.class_token = class_token
        n_rel = num_relative_distances(self.window_size, class_token=class_token)
        # zeros, as BEiT: the bias starts neutral and is learnt
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))  # R, H
        self.register_buffer(
            "relative_position_index",
            relative_position_index(self.window_size, class_token=class_token),
            persistent=False,
        )

    @property
    def num_tokens(self) -> int:
        return self.window_size[0] * self.window_size[1] + int(self.class_token)

    def forward(self) -> torch.Tensor:
        n = self.num_tokens
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)  # N, N, H
        return bias.permute(2, 0, 1).contiguous()  # H, N, N

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, num_heads={self.num_heads}, class_token={self.class_token}"


def resize_rel_pos_table(
    table: torch.Tensor,
    *,
    src_window: tuple[int, int],
    dst_window: tuple[int, int],
    class_token: bool = True,
    method: Literal["geometric", "bicubic"] = "geometric",
) -> torch.Tensor:
    """Resample a (R, H) table learnt for ``src_window`` to ``dst_window``.

    ``geometric``: BEiT's fine-tuning rule (source offsets placed on a geometric
    progression so the central offsets stay put, then interpolated; timm's scipy-free
    implementation, linear between samples). Only enlarges the window; beyond about
    1.5x per side the progression no longer reaches the new extreme offsets and the
    outermost rows are extrapolated.
    ``bicubic``: plain bicubic resampling of the offset grid, either direction.
    The three class-token rows are copied unchanged. Same window returns the input.
    """
    n_extra = 3 if class_token else 0
    src_h, src_w = 2 * src_window[0] - 1, 2 * src_window[1] - 1
    dst_h, dst_w = 2 * dst_window[0] - 1, 2 * dst_window[1] - 1
    if table.shape[0] != src_h * src_w + n_extra:
        raise ValueError(f"table has {table.shape[0]} rows, expected {src_h * src_w + n_extra} for window {src_window}")
    if (src_h, src_w) == (dst_h, dst_w):
        return table
    num_heads = table.shape[1]
    grid, extra = table[: src_h * src_w], table[src_h * src_w :]
    grid = grid.t().reshape(num_heads, src_h, src_w)  # H, 2Wh-1, 2Ww-1
    if method == "geometric":
        if dst_h < src_h or dst_w < src_w:
            raise ValueError("geometric resizing only enlarges the window; use method='bicubic' to shrink")
        with warnings.catch_warnings():
            # timm's grid interpolator trips two harmless torch indexing/performance warnings
            warnings.filterwarnings("ignore", message=r".*(non-tuple sequence|non-contiguous).*")
            new = resize_rel_pos_bias_table(
                grid.float(), new_window_size=tuple(dst_window), new_bias_shape=(num_heads, dst_h, dst_w)
            )
    elif method == "bicubic":
        new = resize_rel_pos_bias_table_simple(
            grid.float(), new_window_size=tuple(dst_window), new_bias_shape=(num_heads, dst_h, dst_w)
        )
    else:
        raise ValueError(f"method must be 'geometric' or 'bicubic', got {method!r}")
    new = new.reshape(num_heads, dst_h * dst_w).t().to(table.dtype)  # R', H
    return torch.cat((new, extra), dim=0)
