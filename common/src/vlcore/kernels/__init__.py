"""Fused kernels (Triton) with PyTorch references; see :mod:`vlcore.kernels.dispatch`.

Importing this package does not import triton.
"""

from vlcore.kernels.dispatch import backend, cross_entropy, fused_add_layer_norm, nearest_code, set_backend, use_triton
from vlcore.kernels.reference import add_layer_norm_ref, cross_entropy_ref, nearest_code_ref

__all__ = [
    "add_layer_norm_ref", "backend", "cross_entropy", "cross_entropy_ref", "fused_add_layer_norm",
    "nearest_code", "nearest_code_ref", "set_backend", "use_triton",
]
