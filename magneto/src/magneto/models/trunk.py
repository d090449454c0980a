"""The Transformer trunk every Magneto model is built on: the ``norm`` switch, its
initialisation and the checks that refuse contradictory settings.

``norm`` picks the block layout (``vlcore.layers.TransformerStack``):

=========  ====================================================  =============================
norm       block                                                 init (``init="auto"``)
=========  ====================================================  =============================
post       x <- LN(x + f(x))                         (BERT, NMT)  none
pre        x <- x + f(LN(x)), final LN               (GPT, ViT)   none
deepnorm   x <- LN(alpha x + f(x))                   (DeepNet)    beta on W_V, W_O, W_1, W_2
subln      x <- x + W_out LN(g(LN(x))), final LN     (Magneto)    gamma on W_V, W_O, W_1, W_2
=========  ====================================================  =============================

gamma = sqrt(ln 2N) for encoder-only / decoder-only stacks; in an encoder-decoder model
gamma_e = sqrt(ln(3 N_d) ln(2 N_e) / 3), gamma_d = sqrt(ln 3 N_d); decoder cross-attention
is never scaled (``vlcore.layers.init`` holds the formulas, DeepNorm's alpha / beta too).

``value_init`` is the base distribution the gain multiplies: ``xavier_normal`` (the
paper's pseudo-code: Xavier-normal with gain gamma on the value path, gain 1 on W_Q / W_K,
zero biases) or ``scale`` (torchscale: PyTorch's default Linear init, then multiplied,
biases included). The gain is applied last, after every other initialisation of the
model, so nothing overwrites it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from vlcore.errors import UserError
from vlcore.layers import CrossAttention, TransformerStack, apply_value_path_gain_

Norm = Literal["post", "pre", "deepnorm", "subln"]
Init = Literal["auto", "magneto", "deepnet", "none"]
ValueInit = Literal["xavier_normal", "scale"]
NORMS: tuple[str, ...] = ("post", "pre", "deepnorm", "subln")
INITS: tuple[str, ...] = ("auto", "magneto", "deepnet", "none")


class ArchitectureError(UserError, ValueError):
    """A model setting that contradicts another (e.g. Sub-LN with DeepNorm)."""


def resolve_init(norm: str, init: str = "auto") -> str:
    """The init rule a (norm, init) pair means: ``magneto``, ``deepnet`` or ``none``.

    Raises on a pair that contradicts itself instead of rewriting either value.
    """
    if norm not in NORMS:
        raise ArchitectureError(f"norm must be one of {NORMS}, got {norm!r}")
    if init not in INITS:
        raise ArchitectureError(f"init must be one of {INITS}, got {init!r}")
    if init == "auto":
        return {"subln": "magneto", "deepnorm": "deepnet"}.get(norm, "none")
    if init == "magneto" and norm != "subln":
        raise ArchitectureError(
            f"init 'magneto' (gamma = sqrt(ln 2N)) is derived for Sub-LN blocks, but norm is {norm!r}; "
            "use norm=subln, or init=auto / none"
        )
    if init == "deepnet" and norm != "deepnorm":
        raise ArchitectureError(
            f"init 'deepnet' (beta = (8N)^-1/4) belongs to DeepNorm's residual alpha, but norm is {norm!r}; "
            "use norm=deepnorm, or init=auto / none"
        )
    return init


def norm_from_torchscale_flags(*, subln: bool, deepnorm: bool, normalize_before: bool) -> str:
    """Map torchscale's ``subln`` / ``deepnorm`` / ``*_normalize_before`` flags onto ``norm``.

    torchscale's config silently switches one flag off when another is on; here any such
    combination is an error naming both flags.
    """
    if subln and deepnorm:
        raise ArchitectureError("subln and deepnorm are both set: Sub-LN (Magneto) and DeepNorm exclude each other")
    if subln and not normalize_before:
        raise ArchitectureError("subln needs normalize_before=True (Sub-LN is a pre-norm layout)")
    if deepnorm and normalize_before:
        raise ArchitectureError("deepnorm needs normalize_before=False (DeepNorm is a post-norm layout)")
    if subln:
        return "subln"
    if deepnorm:
        return "deepnorm"
    return "pre" if normalize_before else "post"


def build_stack(
    *,
    kind: Literal["encoder", "decoder"],
    depth: int,
    dim: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
    norm: str = "subln",
    paired_depth: int | None = None,
    norm_eps: float = 1e-5,
    drop: float = 0.0,
    attn_drop: float = 0.0,
    act_drop: float = 0.0,
    drop_path_rate: float = 0.0,
) -> TransformerStack:
    """A ``TransformerStack`` with the layout's residual alpha, no gain applied yet
    (``init_trunk_`` applies it once the model's own init is done)."""
    if norm not in NORMS:
        raise ArchitectureError(f"norm must be one of {NORMS}, got {norm!r}")
    return TransformerStack(
        depth=depth,
        dim=dim,
        num_heads=num_heads,
        kind=kind,
        paired_depth=paired_depth,
        mlp_ratio=mlp_ratio,
        norm_layout=norm,  # type: ignore[arg-type]
        qkv_bias="qkv",
        norm_eps=norm_eps,
        drop=drop,
        attn_drop=attn_drop,
        act_drop=act_drop,
        drop_path_rate=drop_path_rate,
        value_init=None,
    )


@torch.no_grad()
def init_trunk_(stack: TransformerStack, *, init: str, value_init: str) -> float:
    """Base-initialise a stack's linears and apply its depth gain; returns the gain used.

    ``init`` is a resolved rule (``resolve_init``). With ``none`` the gain is 1: Pre-/Post-LN
    baselines and the Sub-LN-without-gamma ablation get the same base distribution.
    """
    if value_init not in ("xavier_normal", "scale"):
        raise ArchitectureError(f"value_init must be 'xavier_normal' or 'scale', got {value_init!r}")
    gain = stack.value_gain if init in ("magneto", "deepnet") else 1.0
    if value_init == "xavier_normal":
        # cross-attention is outside the value path of Magneto; give it the same base
        for m in stack.modules():
            if isinstance(m, CrossAttention):
                for lin in (m.q, m.kv, m.proj):
                    nn.init.xavier_normal_(lin.weight)
                    if lin.bias is not None:
                        nn.init.zeros_(lin.bias)
    if gain != 1.0 or value_init == "xavier_normal":
        # DeepNorm decoders also shrink cross-attention (torchscale); Magneto leaves it alone
        apply_value_path_gain_(
            stack.blocks, gain, base=value_init, include_cross_attention=stack.residual_alpha != 1.0
        )  # type: ignore[arg-type]
    return gain


def embed_init_(weight: torch.Tensor, dim: int) -> None:
    """Token embeddings ~ N(0, dim^-1/2) (fairseq / torchscale ``TextEmbedding``)."""
    nn.init.normal_(weight, mean=0.0, std=dim**-0.5)


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed (num_positions, dim) table, [sin | cos] halves as fairseq's SinusoidalPositionalEmbedding."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000.0) / max(half - 1, 1)))
    ang = torch.arange(num_positions, dtype=torch.float64)[:, None] * freq[None, :]  # P, D/2
    table = torch.cat((ang.sin(), ang.cos()), dim=1)
    if dim % 2:
        table = torch.cat((table, torch.zeros(num_positions, 1, dtype=torch.float64)), dim=1)
    return table.float()
