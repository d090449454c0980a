"""Absolute position embeddings and patch embedding.

``sincos_2d_pos_embed`` follows MAE: the first half of the channels encodes the
column (x) index, the second half the row (y) index; each half is [sin | cos] of the
position times 1 / 10000^(i / (D/4)), i < D/4; an optional class-token row of zeros
comes first. Learnt tables are resampled with timm's ``resample_abs_pos_embed``;
``PatchEmbed`` is timm's (Conv2d patchifier, key ``patch_embed.proj.*``).
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed

__all__ = ["PatchEmbed", "resample_pos_embed", "sincos_1d_pos_embed", "sincos_2d_pos_embed"]


def sincos_1d_pos_embed(embed_dim: int, positions: torch.Tensor, *, temperature: float = 10000.0) -> torch.Tensor:
    """(M,) positions -> (M, embed_dim) as [sin(p * w_i) | cos(p * w_i)], computed in float64."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / temperature**omega  # D/2
    out = positions.to(torch.float64).reshape(-1)[:, None] * omega[None, :]  # M, D/2
    return torch.cat((out.sin(), out.cos()), dim=1)


def sincos_2d_pos_embed(
    embed_dim: int,
    grid_size: int | tuple[int, int],
    *,
    cls_token: bool = False,
    temperature: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fixed 2-D sin-cos table of shape (Gh*Gw (+1), embed_dim), row-major over the grid."""
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4, got {embed_dim}")
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")  # Gh, Gw
    emb_x = sincos_1d_pos_embed(embed_dim // 2, cols, temperature=temperature)
    emb_y = sincos_1d_pos_embed(embed_dim // 2, rows, temperature=temperature)
    emb = torch.cat((emb_x, emb_y), dim=1)  # Gh*Gw, D
    if cls_token:
        emb = torch.cat((torch.zeros(1, embed_dim, dtype=emb.dtype), emb), dim=0)
    return emb.to(dtype)


def resample_pos_embed(
    pos_embed: torch.Tensor,
    *,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a learnt table (1, P + Gh*Gw, D) or (P + Gh*Gw, D) to ``new_grid``.

    The first ``num_prefix_tokens`` rows (class token; BEiT-3 also has 2 fairseq offset
    rows) are kept as they are; ``old_grid`` defaults to a square grid.
    """
    squeeze = pos_embed.dim() == 2
    pe = pos_embed[None] if squeeze else pos_embed
    out = resample_abs_pos_embed(
        pe,
        new_size=list(new_grid),
        old_size=list(old_grid) if old_grid is not None else None,
        num_prefix_tokens=num_prefix_tokens,
        interpolation=interpolation,
        antialias=antialias,
    )
    return out[0] if squeeze else out
