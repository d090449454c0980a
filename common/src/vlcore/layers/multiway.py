"""Multiway experts (BEiT-3): one copy of a module per modality, routed by position.

``MultiwayNetwork`` holds expert ``A`` (vision) and ``B`` (language). Its
``split_position`` decides the routing, with torchscale's convention:

* ``-1``: the whole sequence goes to A (image-only input);
* ``0``: the whole sequence goes to B (text-only input);
* ``k > 0``: the first k tokens go to A, the rest to B (``[image; text]`` input).

The split is a module attribute pushed into every expert before a forward with
:func:`set_split_position` (or the :func:`multiway_split` context), as torchscale does,
so that wrapped ``nn.Linear`` / ``nn.LayerNorm`` keep their one-argument forward.
Keys carry ``.A.`` / ``.B.`` after the wrapped name, as in torchscale
(``ffn.A.fc1.weight`` there, ``mlp.A.fc1.weight`` here).

Blocks with Multiway experts are built with ``EncoderBlock(multiway=...)`` in
:mod:`vlcore.layers.blocks`, which uses :func:`wrap_multiway_` and the presets below.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator

import torch
from torch import nn

ALL_A = -1  # whole sequence through expert A (vision)
ALL_B = 0  # whole sequence through expert B (language)

# Submodules of an EncoderBlock that become per-modality experts.
# "decoupled": released BEiT-3 (torchscale multiway=True): everything with parameters
#   is per modality; only the softmax over the joint sequence is shared.
# "shared_attention": the BEiT-3 paper / VLMo layout: one self-attention for all
#   tokens, per-modality norms and FFN experts.
MULTIWAY_PRESETS: dict[str, tuple[str, ...]] = {
    "decoupled": ("norm1", "attn.qkv", "attn.norm", "attn.proj", "norm2", "mlp"),
    "shared_attention": ("norm1", "norm2", "mlp"),
}


def reset_parameters_(module: nn.Module) -> None:
    """Re-sample every submodule that knows how (``reset_parameters``), e.g. Linear, LayerNorm."""
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


class MultiwayNetwork(nn.Module):
    """Two modality experts ``A`` and ``B`` of the same architecture.

    Args:
        module: expert A; B is a deep copy.
        dim: sequence dimension along which tokens are split (1 for (B, N, C)).
        reinit_b: re-sample B's parameters (torchscale) instead of starting as a copy of A.
    """

    def __init__(self, module: nn.Module, *, dim: int = 1, reinit_b: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.A = module
        self.B = copy.deepcopy(module)
        if reinit_b:
            reset_parameters_(self.B)
        self.split_position = ALL_A

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        split = self.split_position
        n = x.size(self.dim)
        if split == ALL_A or split >= n:
            return self.A(x, **kwargs)
        if split == ALL_B:
            return self.B(x, **kwargs)
        x_a, x_b = torch.split(x, [split, n - split], dim=self.dim)
        return torch.cat((self.A(x_a, **kwargs), self.B(x_b, **kwargs)), dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, split_position={self.split_position}"


def set_split_position(module: nn.Module, split_position: int) -> None:
    """Route every MultiwayNetwork inside ``module`` with ``split_position``."""
    if split_position < -1:
        raise ValueError(f"split_position must be >= -1, got {split_position}")
    for m in module.modules():
        if isinstance(m, MultiwayNetwork):
            m.split_position = split_position


@contextlib.contextmanager
def multiway_split(module: nn.Module, split_position: int) -> Iterator[None]:
    """Temporarily route ``module``'s experts with ``split_position`` (restores ALL_A after)."""
    set_split_position(module, split_position)
    try:
        yield
    finally:
        set_split_position(module, ALL_A)


def wrap_multiway_(
    module: nn.Module, names: Iterable[str], *, dim: int = 1, reinit_b: bool = True
) -> nn.Module:
    """Replace each dotted submodule name of ``module`` by a MultiwayNetwork of it, in place.

    Submodules without parameters (e.g. an ``nn.Identity`` inner norm) are left shared.
    """
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        sub = getattr(parent, child)
        if isinstance(sub, MultiwayNetwork) or not any(True for _ in sub.parameters()):
            continue
        setattr(parent, child, MultiwayNetwork(sub, dim=dim, reinit_b=reinit_b))
    return module
