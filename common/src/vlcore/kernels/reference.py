"""Pure-PyTorch references for the fused kernels; the kernels are tested against these."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def add_layer_norm_ref(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (LN(x + residual), x + residual)."""
    s = x + residual  # ..., C
    y = F.layer_norm(s.float(), s.shape[-1:], None if weight is None else weight.float(),
                     None if bias is None else bias.float(), eps).to(s.dtype)
    return y, s


def nearest_code_ref(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """l2-normalise z (N, D) and the codebook (K, D); return (indices (N,), quantised (N, D))."""
    zn = F.normalize(z.float(), dim=-1)
    cn = F.normalize(codebook.float(), dim=-1)
    idx = (zn @ cn.t()).argmax(dim=-1)  # N
    return idx, cn[idx].to(z.dtype)


def cross_entropy_ref(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = -100, label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index, label_smoothing=label_smoothing,
                           reduction=reduction)
