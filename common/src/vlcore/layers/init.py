"""Depth-dependent initialisation: Magneto (Sub-LN) gamma, DeepNet (DeepNorm) alpha/beta,
and BEiT's truncated-normal init with per-layer output rescaling.

Constants (natural log; N, N_e, N_d = layers of the stack / encoder / decoder):

=================  ==============================  ==========================  =====================
architecture       Magneto gain gamma              DeepNorm residual alpha     DeepNorm gain beta
=================  ==============================  ==========================  =====================
encoder-only       sqrt(ln 2N)                     (2N)^(1/4)                  (8N)^(-1/4)
decoder-only       sqrt(ln 2N)                     (2N)^(1/4)                  (8N)^(-1/4)
enc-dec, encoder   sqrt(ln(3 N_d) ln(2 N_e) / 3)   0.81 (N_e^4 N_d)^(1/16)     1.15 (N_e^4 N_d)^(-1/16) *
enc-dec, decoder   sqrt(ln 3 N_d)                  (3 N_d)^(1/4)               (12 N_d)^(-1/4)
=================  ==============================  ==========================  =====================

These are the numbers torchscale 0.3 computes (``architecture/encoder.py``,
``decoder.py``). * torchscale divides the enc-dec encoder's weights by
(N_e^4 N_d)^(1/16) / 1.15, i.e. multiplies by 1.15 (...)^(-1/16); the DeepNet paper
writes beta_e = 0.87 (...)^(-1/16) (0.87 = 1/1.15). ``convention="paper"`` gives the latter.

The gain multiplies the value path: W_V, W_O, W_1, W_2 and, as
torchscale does by name match, their biases. Magneto leaves decoder cross-attention
alone; torchscale's DeepNorm decoder scales it too.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from timm.layers import Mlp
from torch import nn

from vlcore.layers.attention import Attention, CrossAttention

Arch = Literal["encoder", "decoder", "encoder_decoder"]
NormLayout = Literal["pre", "post", "deepnorm", "subln"]
ValueInit = Literal["scale", "xavier_normal"]


def _depths(
    arch: Arch, num_layers: int | None, encoder_layers: int | None, decoder_layers: int | None
) -> tuple[int, int]:
    if arch in ("encoder", "decoder"):
        if num_layers is None or num_layers < 1:
            raise ValueError(f"{arch}-only architecture needs num_layers >= 1, got {num_layers}")
        return num_layers, num_layers
    if arch == "encoder_decoder":
        if not encoder_layers or not decoder_layers:
            raise ValueError("encoder_decoder needs encoder_layers and decoder_layers >= 1")
        return encoder_layers, decoder_layers
    raise ValueError(f"arch must be 'encoder', 'decoder' or 'encoder_decoder', got {arch!r}")


def magneto_gamma(
    arch: Arch,
    *,
    num_layers: int | None = None,
    encoder_layers: int | None = None,
    decoder_layers: int | None = None,
) -> float | tuple[float, float]:
    """Sub-LN value-path gain; a float for single-stack models, (gamma_enc, gamma_dec) for enc-dec."""
    n_e, n_d = _depths(arch, num_layers, encoder_layers, decoder_layers)
    if arch != "encoder_decoder":
        return math.sqrt(math.log(2 * n_e))
    return math.sqrt(math.log(3 * n_d) * math.log(2 * n_e) / 3), math.sqrt(math.log(3 * n_d))


def deepnet_constants(
    arch: Arch,
    *,
    num_layers: int | None = None,
    encoder_layers: int | None = None,
    decoder_layers: int | None = None,
    convention: Literal["torchscale", "paper"] = "torchscale",
) -> tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]:
    """DeepNorm (alpha, beta): residual weight and value-path gain (beta < 1 shrinks the init).

    Single-stack: (alpha, beta); enc-dec: ((alpha_e, beta_e), (alpha_d, beta_d)).
    ``convention`` only matters for the enc-dec encoder's beta (see the module docstring).
    """
    if convention not in ("torchscale", "paper"):
        raise ValueError(f"convention must be 'torchscale' or 'paper', got {convention!r}")
    n_e, n_d = _depths(arch, num_layers, encoder_layers, decoder_layers)
    if arch != "encoder_decoder":
        return (2 * n_e) ** 0.25, (8 * n_e) ** -0.25
    base = (n_e**4 * n_d) ** 0.0625
    beta_e = 1.0 / (base / 1.15) if convention == "torchscale" else 0.87 / base
    return (0.81 * base, beta_e), ((3 * n_d) ** 0.25, (12 * n_d) ** -0.25)


def layout_constants(
    norm_layout: NormLayout,
    *,
    arch: Arch,
    stack: Literal["encoder", "decoder"],
    num_layers: int | None = None,
    encoder_layers: int | None = None,
    decoder_layers: int | None = None,
) -> tuple[float, float]:
    """(residual alpha, value-path gain) for one stack: Sub-LN (1, gamma), DeepNorm (alpha, beta),
    Pre-/Post-LN (1, 1)."""
    if norm_layout in ("pre", "post"):
        return 1.0, 1.0
    kw = dict(num_layers=num_layers, encoder_layers=encoder_layers, decoder_layers=decoder_layers)
    idx = 0 if stack == "encoder" else 1
    if norm_layout == "subln":
        g = magneto_gamma(arch, **kw)
        return 1.0, (g[idx] if isinstance(g, tuple) else g)
    if norm_layout == "deepnorm":
        c = deepnet_constants(arch, **kw)
        return c[idx] if isinstance(c[0], tuple) else c  # type: ignore[return-value]
    raise ValueError(f"norm_layout must be pre, post, deepnorm or subln, got {norm_layout!r}")


def _linears(m: nn.Module) -> list[nn.Linear]:
    """The Linear itself, or every Linear inside a Multiway wrapper."""
    return [m] if isinstance(m, nn.Linear) else [x for x in m.modules() if isinstance(x, nn.Linear)]


def _xavier_normal_rows_(weight: torch.Tensor, rows: slice, gain: float) -> None:
    # each of q, k, v (or k, v) is its own (C_out, C_in) matrix for the fan computation
    w = weight[rows]
    std = gain * math.sqrt(2.0 / (w.shape[0] + w.shape[1]))
    w.normal_(0.0, std)


@torch.no_grad()
def apply_value_path_gain_(
    module: nn.Module,
    gain: float,
    *,
    base: ValueInit = "scale",
    include_cross_attention: bool = False,
) -> int:
    """Apply a depth gain to the value path of every block inside ``module``; returns the
    number of tensors touched.

    ``base="scale"`` multiplies the current W_V, W_O, W_1, W_2 and their biases by ``gain``
    (torchscale). ``base="xavier_normal"`` re-samples them as Xavier-normal with gain
    ``gain``, W_Q / W_K as Xavier-normal with gain 1 and zeroes those biases (the paper's
    pseudo-code). Call it after any other weight init of the model, which would erase it.
    Cross-attention is skipped unless ``include_cross_attention`` (DeepNorm decoders).
    """
    if base not in ("scale", "xavier_normal"):
        raise ValueError(f"base must be 'scale' or 'xavier_normal', got {base!r}")
    touched = 0

    def scale_(t: torch.Tensor | None) -> None:
        nonlocal touched
        if t is not None:
            t.mul_(gain)
            touched += 1

    def project_(lin: nn.Linear, rows: slice, g: float) -> None:
        nonlocal touched
        if base == "scale":
            if g != 1.0:
                lin.weight[rows].mul_(g)
                if lin.bias is not None:
                    lin.bias[rows].mul_(g)
                touched += 1 + int(lin.bias is not None)
        else:
            _xavier_normal_rows_(lin.weight, rows, g)
            if lin.bias is not None:
                lin.bias[rows].zero_()
            touched += 1 + int(lin.bias is not None)

    for m in module.modules():
        if isinstance(m, Attention):
            inner = m.num_heads * m.head_dim
            for lin in _linears(m.qkv):
                project_(lin, slice(0, inner), 1.0)
                project_(lin, slice(inner, 2 * inner), 1.0)
                project_(lin, slice(2 * inner, 3 * inner), gain)
            if m.v_bias is not None:
                if base == "scale":
                    scale_(m.v_bias)
                else:
                    m.q_bias.zero_()
                    m.v_bias.zero_()
            for lin in _linears(m.proj):
                project_(lin, slice(None), gain)
        elif isinstance(m, CrossAttention) and include_cross_attention:
            inner = m.num_heads * m.head_dim
            for lin in _linears(m.q):
                project_(lin, slice(None), 1.0)
            for lin in _linears(m.kv):
                project_(lin, slice(0, inner), 1.0)
                project_(lin, slice(inner, 2 * inner), gain)
            for lin in _linears(m.proj):
                project_(lin, slice(None), gain)
        elif isinstance(m, Mlp):
            for lin in (m.fc1, m.fc2):
                project_(lin, slice(None), gain)
    return touched


@torch.no_grad()
def trunc_normal_init_(module: nn.Module, *, std: float = 0.02, cutoff: float = 2.0) -> None:
    """BEiT-family init: Linear weights ~ N(0, std) truncated at +-``cutoff`` * std, biases 0,
    LayerNorm weight 1 / bias 0. BEiT pretraining truncates at 1 std, fine-tuning at 2 std."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-cutoff * std, b=cutoff * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@torch.no_grad()
def rescale_residual_outputs_(blocks: nn.ModuleList | list[nn.Module]) -> None:
    """BEiT's depth rescale: divide W_O (``attn.proj``) and W_2 (``mlp.fc2``) of block l
    (1-indexed) by sqrt(2 l); biases are left alone."""
    for layer_id, block in enumerate(blocks, start=1):
        div = math.sqrt(2.0 * layer_id)
        outputs = _linears(block.attn.proj) + [mlp.fc2 for mlp in block.mlp.modules() if isinstance(mlp, Mlp)]
        for lin in outputs:
            lin.weight.div_(div)
