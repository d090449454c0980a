"""Multi-head self- and cross-attention shared by every paper.

Two numerically equivalent paths: ``F.scaled_dot_product_attention`` (fused) and an
eager reference whose softmax runs in fp32. ``eager_attention()`` forces the reference
everywhere (tests, attention-map inspection); ``module.fused_attn = False`` forces it
for one module.

Parameter names follow timm / official BEiT so that BEiT-family checkpoints load
unchanged; torchscale (Magneto, BEiT-3, Kosmos-2) keys map as follows:

==========================================  =====================================
torchscale                                  vlcore
==========================================  =====================================
``self_attn.{q,k,v}_proj.weight``           ``attn.qkv.weight`` (concatenated q, k, v)
``self_attn.{q,k,v}_proj.bias``             ``attn.qkv.bias`` (``qkv_bias="qkv"``)
``self_attn.inner_attn_ln.*``               ``attn.norm.*`` (``inner_norm=True``, Sub-LN)
``self_attn.out_proj.*``                    ``attn.proj.*``
``encoder_attn.q_proj.*``                   ``cross_attn.q.*``
``encoder_attn.{k,v}_proj.*``               ``cross_attn.kv.*`` (concatenated k, v)
``encoder_attn.out_proj.*``                 ``cross_attn.proj.*``
==========================================  =====================================

Incremental decoding: pass a :class:`KVCache` to ``Attention`` / ``CrossAttention``.
Self-attention appends the new keys/values and attends over all of them (the causal
mask is aligned at the end, so a prefix of P tokens followed by one-token steps gives
the full causal forward); cross-attention projects ``memory`` once and reuses it.

BEiT / BEiT v2 keys (``attn.qkv.weight``, ``attn.q_bias``, ``attn.v_bias``, ``attn.proj.*``)
are identical with ``qkv_bias="qv"``; a per-layer relative position table lives at
``attn.rel_pos_bias.relative_position_bias_table`` (BEiT: ``attn.relative_position_bias_table``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.layers.relpos import RelativePositionBias

QKVBias = Literal["qkv", "qv", "none"]


class KVCache:
    """Keys and values of one attention layer kept between incremental decoding steps.

    ``k`` / ``v`` are (B, H, N, Dh) or None while empty. Self-attention grows them with
    :meth:`append`; cross-attention fills them once (:meth:`set`) from the encoder memory.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    @property
    def filled(self) -> bool:
        return self.k is not None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this step's k, v (B, H, n, Dh); returns the keys/values of every position so far."""
        if self.k is not None:
            if self.k.shape[:2] != k.shape[:2] or self.k.shape[3] != k.shape[3]:
                raise ValueError(
                    f"KV cache holds (B, H, Dh) = {tuple(self.k.shape[:2]) + (self.k.shape[3],)}, "
                    f"this step has {tuple(k.shape[:2]) + (k.shape[3],)}; reset or reorder the cache"
                )
            k = torch.cat((self.k, k), dim=2)
            v = torch.cat((self.v, v), dim=2)
        self.k, self.v = k, v
        return k, v

    def set(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep / repeat batch rows (beam search): ``index`` (B',) into the batch dimension."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)

    def reset(self) -> None:
        self.k = self.v = None

_FORCE_EAGER = False


@contextlib.contextmanager
def eager_attention() -> Iterator[None]:
    """Run every vlcore attention through the eager (fp32-softmax) reference path."""
    global _FORCE_EAGER
    previous = _FORCE_EAGER
    _FORCE_EAGER = True
    try:
        yield
    finally:
        _FORCE_EAGER = previous


def build_attn_bias(
    *,
    q_len: int,
    k_len: int,
    dtype: torch.dtype,
    device: torch.device,
    rel_pos_bias: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor | None:
    """Fold every bias/mask into one additive tensor broadcastable to (B, H, Nq, Nk).

    ``rel_pos_bias``: (H, Nq, Nk) or (B, H, Nq, Nk), added to the logits.
    ``attn_mask``: bool (True = may attend, SDPA convention) or additive float,
    shape (Nq, Nk), (B, Nq, Nk) or (B, H, Nq, Nk).
    ``key_padding_mask``: (B, Nk) bool, True = padding (ignored key).
    ``is_causal``: query i attends keys j <= i + (Nk - Nq) (aligned at the end, as with a KV cache).
    Returns None when there is nothing to add.
    """
    bias: torch.Tensor | None = None

    def add(term: torch.Tensor) -> None:
        nonlocal bias
        bias = term if bias is None else bias + term

    if rel_pos_bias is not None:
        add(_to_4d(rel_pos_bias).to(dtype))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill(
                ~attn_mask, float("-inf")
            )
        add(_to_4d(attn_mask, heads_missing=attn_mask.dim() == 3).to(dtype))
    if key_padding_mask is not None:
        pad = torch.zeros(key_padding_mask.shape, dtype=dtype, device=device)
        pad = pad.masked_fill(key_padding_mask.bool(), float("-inf"))
        add(pad[:, None, None, :])  # B, 1, 1, Nk
    if is_causal:
        blocked = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(k_len - q_len + 1)
        add(torch.zeros(q_len, k_len, dtype=dtype, device=device).masked_fill(blocked, float("-inf")))
    return bias


def _to_4d(t: torch.Tensor, heads_missing: bool = False) -> torch.Tensor:
    if t.dim() == 2:
        return t[None, None]
    if t.dim() == 3:
        # a 3-D mask is per batch (B, Nq, Nk); a 3-D bias is per head (H, Nq, Nk)
        return t[:, None] if heads_missing else t[None]
    return t


def dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """Scaled dot-product attention on (B, H, N, Dh) tensors with an additive ``bias``.

    ``is_causal`` is only honoured here when ``bias`` is None (otherwise fold it into
    ``bias`` with :func:`build_attn_bias`).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    n_q, n_k = q.shape[-2], k.shape[-2]
    if is_causal and bias is None and n_q != n_k:
        # SDPA aligns a rectangular causal mask top-left; vlcore aligns it bottom-right (KV cache)
        bias = build_attn_bias(q_len=n_q, k_len=n_k, dtype=q.dtype, device=q.device, is_causal=True)
    if fused and not _FORCE_EAGER:
        if bias is not None:
            bias = bias.to(q.dtype)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, is_causal=is_causal and bias is None, scale=scale
        )
    logits = (q @ k.transpose(-2, -1)).float() * scale  # B, H, Nq, Nk
    if bias is not None:
        logits = logits + bias.float()
    elif is_causal:
        blocked = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
        logits = logits.masked_fill(blocked, float("-inf"))
    probs = logits.softmax(dim=-1).to(v.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return probs @ v  # B, H, Nq, Dh


class Attention(nn.Module):
    """Multi-head self-attention.

    Args:
        dim: model width.
        num_heads: number of heads.
        qkv_bias: ``"qkv"`` bias on q, k and v (torchscale); ``"qv"`` learnt q and v biases,
            no k bias (BEiT, stored as ``q_bias`` / ``v_bias``); ``"none"``.
        inner_norm: Sub-LN LayerNorm on the merged heads before ``proj`` (Magneto).
        norm_eps: eps of the inner LayerNorm.
        attn_drop: dropout on attention probabilities.
        proj_drop: dropout after ``proj``.
        window_size: if given, a per-layer BEiT relative position bias for a
            Wh x Ww patch grid plus one class token.
        head_dim: per-head width (default ``dim // num_heads``).
    """

    fused_attn: bool

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        qkv_bias: QKVBias = "qkv",
        inner_norm: bool = False,
        norm_eps: float = 1e-5,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        window_size: tuple[int, int] | None = None,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        if qkv_bias not in ("qkv", "qv", "none"):
            raise ValueError(f"qkv_bias must be 'qkv', 'qv' or 'none', got {qkv_bias!r}")
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner_dim = self.head_dim * num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * inner_dim, bias=qkv_bias == "qkv")
        if qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(inner_dim))
            self.v_bias = nn.Parameter(torch.zeros(inner_dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.rel_pos_bias = (
            RelativePositionBias(window_size=window_size, num_heads=num_heads) if window_size is not None else None
        )
        self.attn_drop = attn_drop
        self.norm = nn.LayerNorm(inner_dim, eps=norm_eps) if inner_norm else nn.Identity()
        self.proj = nn.Linear(inner_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)  # B, N, 3*C
        if self.q_bias is not None:
            qkv = qkv + torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        return qkv

    def forward(
        self,
        x: torch.Tensor,
        *,
        rel_pos_bias: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x: (B, N, C); masks as in :func:`build_attn_bias`; ``rel_pos_bias`` is added
        to the module's own table when it has one (shared + per-layer, as timm BEiT).

        With ``cache``, ``x`` holds only the new positions: their keys/values are appended
        and attention runs over all Nk = cached + N keys, so ``key_padding_mask`` is (B, Nk),
        masks and ``rel_pos_bias`` cover (N, Nk), and ``is_causal`` aligns at the end."""
        B, N, _ = x.shape
        q, k, v = self._qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # B, H, N, Dh
        if cache is not None:
            if self.rel_pos_bias is not None:
                raise ValueError("a per-layer BEiT relative position table is for image grids; it takes no KV cache")
            k, v = cache.append(k, v)  # B, H, Nk, Dh
        Nk = k.shape[2]
        # one new query may see every cached key: causality is already in the cache
        is_causal = is_causal and N > 1
        if self.rel_pos_bias is not None:
            own = self.rel_pos_bias()  # H, N, N
            rel_pos_bias = own if rel_pos_bias is None else _to_4d(rel_pos_bias) + own
        bias = build_attn_bias(
            q_len=N,
            k_len=Nk,
            dtype=q.dtype,
            device=x.device,
            rel_pos_bias=rel_pos_bias,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal and (rel_pos_bias is not None or attn_mask is not None or key_padding_mask is not None),
        )
        out = dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            is_causal=is_causal and bias is None,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
            fused=self.fused_attn,
        )
        out = out.transpose(1, 2).reshape(B, N, -1)  # B, N, C
        out = self.norm(out)
        return self.proj_drop(self.proj(out))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x``, keys/values from ``memory``.

    No inner LayerNorm: Magneto's decoders keep cross-attention plain.
    """

    fused_attn: bool

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        memory_dim: int | None = None,
        bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner_dim = self.head_dim * num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.q = nn.Linear(dim, inner_dim, bias=bias)
        self.kv = nn.Linear(memory_dim or dim, 2 * inner_dim, bias=bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner_dim, dim, bias=bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        *,
        rel_pos_bias: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x: (B, Nq, C); memory: (B, Nk, Cm); key_padding_mask: (B, Nk), True = padding.

        With a filled ``cache`` the memory's keys/values come from it (``memory`` may be None);
        with an empty one they are computed from ``memory`` and stored."""
        B, Nq, _ = x.shape
        q = self.q(x).view(B, Nq, self.num_heads, self.head_dim).transpose(1, 2)  # B, H, Nq, Dh
        if cache is not None and cache.filled:
            k, v = cache.k, cache.v
        else:
            if memory is None:
                raise ValueError("cross-attention needs memory (or a filled KV cache)")
            Nm = memory.shape[1]
            k, v = self.kv(memory).view(B, Nm, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # B, H, Nk, Dh
            if cache is not None:
                cache.set(k, v)
        Nk = k.shape[2]
        bias = build_attn_bias(
            q_len=Nq,
            k_len=Nk,
            dtype=q.dtype,
            device=x.device,
            rel_pos_bias=rel_pos_bias,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
        )
        out = dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
            fused=self.fused_attn,
        )
        out = out.transpose(1, 2).reshape(B, Nq, -1)  # B, Nq, C
        return self.proj_drop(self.proj(out))
