"""Choose the Triton kernel or the PyTorch reference, per call.

``VLCORE_KERNELS`` = ``auto`` (default: kernel on CUDA tensors when triton imports), ``triton``
(kernel whenever triton imports, also on CPU under ``TRITON_INTERPRET=1``) or ``torch`` (reference
always). :func:`set_backend` overrides the variable at run time. Triton is imported on first use only.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch

from vlcore.kernels import reference

_BACKENDS = ("auto", "triton", "torch")
_override: str | None = None


def set_backend(backend: str | None) -> None:
    """Force ``triton`` / ``torch`` / ``auto``; ``None`` returns to the environment variable."""
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"kernel backend must be one of {_BACKENDS}, got {backend!r}")
    global _override
    _override = backend


def backend() -> str:
    value = _override or os.environ.get("VLCORE_KERNELS", "auto")
    if value not in _BACKENDS:
        raise ValueError(f"VLCORE_KERNELS must be one of {_BACKENDS}, got {value!r}")
    return value


@functools.lru_cache(maxsize=1)
def _kernels() -> ModuleType | None:
    try:
        return importlib.import_module("vlcore.kernels._triton")
    except Exception:  # no triton, or no driver: the reference does the job
        return None


def use_triton(*tensors: torch.Tensor) -> bool:
    mode = backend()
    if mode == "torch":
        return False
    if mode == "auto" and not all(t.is_cuda for t in tensors):
        return False
    ok = _kernels() is not None
    if mode == "triton" and not ok:
        raise RuntimeError("VLCORE_KERNELS=triton but triton could not be imported")
    return ok


def fused_add_layer_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (LayerNorm(x + residual), x + residual); the sum feeds the next residual."""
    if use_triton(x, residual):
        return _kernels().add_layer_norm(x, residual, weight, bias, eps)
    return reference.add_layer_norm_ref(x, residual, weight, bias, eps)


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-nearest code: z (..., D), codebook (K, D) -> indices (...), unit code vectors (..., D)."""
    if use_triton(z, codebook):
        return _kernels().nearest_code(z.detach(), codebook.detach())
    idx, q = reference.nearest_code_ref(z.detach().reshape(-1, z.shape[-1]), codebook.detach())
    return idx.view(z.shape[:-1]), q.view(z.shape)


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = -100, label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy over the last dim of logits (N, V) with integer targets (N,); float32 result."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    if logits.dim() != 2 or not use_triton(logits, target):
        return reference.cross_entropy_ref(logits, target, ignore_index=ignore_index,
                                           label_smoothing=label_smoothing, reduction=reduction)
    rows = _kernels().cross_entropy_rows(logits, target, ignore_index, label_smoothing)  # N
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / (target != ignore_index).sum()
