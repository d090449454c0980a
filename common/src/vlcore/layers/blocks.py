"""Transformer encoder / decoder blocks with the four norm layouts, and a stack.

``norm_layout`` (LN = LayerNorm, f = attention or FFN branch, g = layer scale):

* ``pre``:      x <- x + DropPath(g * f(LN(x)))                       (ViT, BEiT, GPT)
* ``post``:     x <- LN(x + DropPath(g * f(x)))                       (BERT, NMT)
* ``deepnorm``: x <- LN(alpha * x + DropPath(g * f(x)))               (DeepNet)
* ``subln``:    pre + LN on the merged heads before W_O and LN on the FFN hidden
  activation before W_2 (Magneto); the stack then ends with a LayerNorm.

Key names (timm / BEiT): ``norm1``, ``attn.*``, ``norm2``, ``mlp.{fc1,norm,fc2}``,
``gamma_1``, ``gamma_2``; decoders add ``norm_cross``, ``cross_attn.*``, ``gamma_cross``;
a stack has ``blocks.{i}``, ``norm`` and, with a shared relative position bias,
``rel_pos_bias.relative_position_bias_table``. :func:`convert_torchscale_state_dict`
maps torchscale (Magneto / BEiT-3 / Kosmos-2) layer keys onto these names.

Incremental decoding: ``cache = stack.new_cache()`` then ``stack(x_new, cache=cache)``
step by step; each decoder block keeps its self-attention keys/values and the
projected encoder memory (:class:`DecoderCache`).
"""

from __future__ import annotations

import re
from functools import partial
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from vlcore.layers.attention import Attention, CrossAttention, KVCache, QKVBias
from vlcore.layers.init import Arch, NormLayout, ValueInit, apply_value_path_gain_, layout_constants
from vlcore.layers.multiway import MULTIWAY_PRESETS, set_split_position, wrap_multiway_
from vlcore.layers.relpos import RelativePositionBias

MultiwayKind = Literal["decoupled", "shared_attention"]
_LAYOUTS = ("pre", "post", "deepnorm", "subln")


class BlockCache:
    """What one decoder block keeps between decoding steps: its self-attention keys/values
    and the keys/values of the encoder memory its cross-attention reads."""

    def __init__(self) -> None:
        self.self_attn = KVCache()
        self.cross_attn = KVCache()

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)


class DecoderCache:
    """One :class:`BlockCache` per block of a decoder stack (``TransformerStack.new_cache()``).

    ``len(cache)`` is the number of positions already decoded, i.e. the position offset
    of the next input token.
    """

    def __init__(self, num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = [BlockCache() for _ in range(num_layers)]

    def __len__(self) -> int:
        return len(self.layers[0].self_attn)

    def reorder(self, index: torch.Tensor) -> None:
        """Select / repeat batch rows of every layer (beam search, dropping finished rows)."""
        for layer in self.layers:
            layer.reorder(index)

    def reset(self) -> None:
        self.layers = [BlockCache() for _ in self.layers]


class EncoderBlock(nn.Module):
    """Self-attention + FFN block.

    Args:
        dim, num_heads: width and heads.
        mlp_ratio: FFN hidden width = ``mlp_ratio * dim`` (or ``mlp_hidden_dim``).
        norm_layout: ``pre`` | ``post`` | ``deepnorm`` | ``subln``.
        qkv_bias: ``qkv`` (torchscale), ``qv`` (BEiT), ``none``.
        norm_eps: LayerNorm eps of every norm (torchscale 1e-5, BEiT 1e-6).
        act_layer: FFN activation class.
        drop: dropout after W_O and after W_2 (torchscale ``dropout``).
        attn_drop: dropout on attention probabilities.
        act_drop: dropout after the FFN activation (torchscale ``activation_dropout``).
        drop_path: stochastic depth rate of this block.
        init_values: layer-scale init (BEiT 0.1 / 1e-5); None disables layer scale.
        residual_alpha: DeepNorm residual weight (only with ``deepnorm``).
        window_size: per-layer BEiT relative position bias for this patch grid.
        multiway: per-modality experts (``decoupled`` = released BEiT-3,
            ``shared_attention`` = BEiT-3 paper); route with ``split_position``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        mlp_hidden_dim: int | None = None,
        norm_layout: NormLayout = "pre",
        qkv_bias: QKVBias = "qkv",
        norm_eps: float = 1e-5,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        act_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        residual_alpha: float = 1.0,
        window_size: tuple[int, int] | None = None,
        multiway: MultiwayKind | None = None,
    ) -> None:
        super().__init__()
        if norm_layout not in _LAYOUTS:
            raise ValueError(f"norm_layout must be one of {_LAYOUTS}, got {norm_layout!r}")
        if residual_alpha != 1.0 and norm_layout != "deepnorm":
            raise ValueError("residual_alpha != 1 is DeepNorm; use norm_layout='deepnorm'")
        self.norm_layout = norm_layout
        self.pre_norm = norm_layout in ("pre", "subln")
        self.residual_alpha = residual_alpha
        subln = norm_layout == "subln"

        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            inner_norm=subln,
            norm_eps=norm_eps,
            attn_drop=attn_drop,
            proj_drop=drop,
            window_size=window_size,
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        hidden = mlp_hidden_dim or int(dim * mlp_ratio)
        self.mlp = Mlp(
            in_features=dim,
            hidden_features=hidden,
            act_layer=act_layer,
            norm_layer=partial(nn.LayerNorm, eps=norm_eps) if subln else None,
            drop=(act_drop, drop),
        )
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.init_values = init_values
        if init_values is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))
        else:
            self.gamma_1 = None
            self.gamma_2 = None
        self.multiway = multiway
        if multiway is not None:
            if multiway not in MULTIWAY_PRESETS:
                raise ValueError(f"multiway must be one of {tuple(MULTIWAY_PRESETS)}, got {multiway!r}")
            wrap_multiway_(self, MULTIWAY_PRESETS[multiway])

    def _residual(
        self,
        x: torch.Tensor,
        branch: Callable[[torch.Tensor], torch.Tensor],
        norm: nn.Module,
        gamma: torch.Tensor | None,
        drop_path: nn.Module,
    ) -> torch.Tensor:
        if self.pre_norm:
            y = branch(norm(x))
            return x + drop_path(y if gamma is None else gamma * y)
        y = branch(x)
        y = drop_path(y if gamma is None else gamma * y)
        return norm((x * self.residual_alpha if self.residual_alpha != 1.0 else x) + y)

    def forward(
        self,
        x: torch.Tensor,
        *,
        rel_pos_bias: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        split_position: int | None = None,
    ) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C). Masks as in ``vlcore.layers.attention.build_attn_bias``;
        ``split_position`` routes Multiway experts (-1 all A, 0 all B, k first k to A)."""
        if split_position is not None:
            set_split_position(self, split_position)

        def attn(h: torch.Tensor) -> torch.Tensor:
            return self.attn(
                h,
                rel_pos_bias=rel_pos_bias,
                attn_mask=attn_mask,
                key_padding_mask=key_padding_mask,
                is_causal=is_causal,
            )

        x = self._residual(x, attn, self.norm1, self.gamma_1, self.drop_path1)
        return self._residual(x, self.mlp, self.norm2, self.gamma_2, self.drop_path2)


class DecoderBlock(EncoderBlock):
    """Causal self-attention + optional cross-attention to ``memory`` + FFN.

    Cross-attention has its own pre/post norm (``norm_cross``), layer scale and the same
    residual rule, and never an inner LayerNorm (Magneto). Extra args: ``cross_attention``
    and ``memory_dim`` (width of the memory, default ``dim``).
    """

    def __init__(self, *, cross_attention: bool = True, memory_dim: int | None = None, **kwargs) -> None:
        if kwargs.get("multiway") is not None:
            raise ValueError("Multiway experts are an encoder feature (BEiT-3); DecoderBlock does not take them")
        super().__init__(**kwargs)
        dim = self.norm1.normalized_shape[0]
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim, eps=self.norm1.eps)
            self.cross_attn = CrossAttention(
                dim=dim,
                num_heads=self.attn.num_heads,
                memory_dim=memory_dim,
                attn_drop=kwargs.get("attn_drop", 0.0),
                proj_drop=kwargs.get("drop", 0.0),
            )
            self.drop_path_cross = DropPath(kwargs["drop_path"]) if kwargs.get("drop_path", 0.0) > 0 else nn.Identity()
            self.gamma_cross = (
                nn.Parameter(torch.full((dim,), float(self.init_values))) if self.init_values is not None else None
            )
        else:
            self.norm_cross = None
            self.cross_attn = None
            self.drop_path_cross = None
            self.gamma_cross = None

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        rel_pos_bias: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = True,
        memory_key_padding_mask: torch.Tensor | None = None,
        cache: BlockCache | None = None,
    ) -> torch.Tensor:
        """x: (B, Nq, C); memory: (B, Nk, Cm) or None (skips cross-attention).

        With ``cache``, ``x`` holds only the new positions (see ``Attention.forward``); the
        memory is projected on the first call and read from the cache afterwards, so later
        calls may pass ``memory=None``."""
        self_cache = cache.self_attn if cache is not None else None
        cross_cache = cache.cross_attn if cache is not None else None

        def self_attn(h: torch.Tensor) -> torch.Tensor:
            return self.attn(
                h,
                rel_pos_bias=rel_pos_bias,
                attn_mask=attn_mask,
                key_padding_mask=key_padding_mask,
                is_causal=is_causal,
                cache=self_cache,
            )

        x = self._residual(x, self_attn, self.norm1, self.gamma_1, self.drop_path1)
        if self.cross_attn is not None and (memory is not None or (cross_cache is not None and cross_cache.filled)):

            def cross_attn(h: torch.Tensor) -> torch.Tensor:
                return self.cross_attn(h, memory, key_padding_mask=memory_key_padding_mask, cache=cross_cache)

            x = self._residual(x, cross_attn, self.norm_cross, self.gamma_cross, self.drop_path_cross)
        return self._residual(x, self.mlp, self.norm2, self.gamma_2, self.drop_path2)


class TransformerStack(nn.Module):
    """``depth`` encoder or decoder blocks, optional shared relative position bias and final norm,
    with the layout's depth constants (DeepNorm alpha, Magneto / DeepNorm value gain) applied.

    Args (beyond EncoderBlock's):
        depth: number of blocks.
        kind: ``encoder`` or ``decoder`` blocks.
        paired_depth: depth of the partner stack in an encoder-decoder model (the
            constants depend on both); None for encoder-only / decoder-only models.
            Decoder blocks get cross-attention when it is set.
        drop_path_rate: stochastic depth grows linearly from 0 to this over the blocks.
        rel_pos: ``none``; ``shared`` (one table for all blocks, BEiT pretraining);
            ``per_layer`` (one table per block, BEiT fine-tuning); needs ``window_size``.
        final_norm: LayerNorm on the output; default on for ``pre`` / ``subln``.
        value_init: ``scale`` (torchscale) or ``xavier_normal`` (paper) for the gain;
            None leaves the weights as constructed (apply ``apply_value_path_gain_``
            yourself after your own init).
    """

    def __init__(
        self,
        *,
        depth: int,
        dim: int,
        num_heads: int,
        kind: Literal["encoder", "decoder"] = "encoder",
        paired_depth: int | None = None,
        mlp_ratio: float = 4.0,
        norm_layout: NormLayout = "pre",
        qkv_bias: QKVBias = "qkv",
        norm_eps: float = 1e-5,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        act_drop: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
        window_size: tuple[int, int] | None = None,
        rel_pos: Literal["none", "shared", "per_layer"] = "none",
        final_norm: bool | None = None,
        multiway: MultiwayKind | None = None,
        memory_dim: int | None = None,
        value_init: ValueInit | None = "scale",
    ) -> None:
        super().__init__()
        if rel_pos != "none" and window_size is None:
            raise ValueError("rel_pos needs window_size")
        self.kind = kind
        arch: Arch = "encoder_decoder" if paired_depth else kind
        n_enc, n_dec = (depth, paired_depth) if kind == "encoder" else (paired_depth, depth)
        alpha, gain = layout_constants(
            norm_layout, arch=arch, stack=kind, num_layers=depth, encoder_layers=n_enc, decoder_layers=n_dec
        )
        self.residual_alpha, self.value_gain = alpha, gain
        # on the CPU explicitly: the stack may be built under torch.device("meta") (parameter counts)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        common = dict(
            dim=dim,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            norm_layout=norm_layout,
            qkv_bias=qkv_bias,
            norm_eps=norm_eps,
            act_layer=act_layer,
            drop=drop,
            attn_drop=attn_drop,
            act_drop=act_drop,
            init_values=init_values,
            residual_alpha=alpha,
            window_size=window_size if rel_pos == "per_layer" else None,
        )
        if kind == "encoder":
            blocks = [EncoderBlock(drop_path=dpr[i], multiway=multiway, **common) for i in range(depth)]
        elif kind == "decoder":
            if multiway is not None:
                raise ValueError("multiway applies to encoder stacks")
            blocks = [
                DecoderBlock(
                    drop_path=dpr[i], cross_attention=paired_depth is not None, memory_dim=memory_dim, **common
                )
                for i in range(depth)
            ]
        else:
            raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
        self.blocks = nn.ModuleList(blocks)
        self.rel_pos_bias = (
            RelativePositionBias(window_size=window_size, num_heads=num_heads) if rel_pos == "shared" else None
        )
        if final_norm is None:
            final_norm = norm_layout in ("pre", "subln")
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()
        if multiway is not None:
            wrap_multiway_(self, ["norm"])
        if value_init is not None and (gain != 1.0 or value_init == "xavier_normal"):
            # torchscale's DeepNorm decoder also shrinks cross-attention; Magneto skips it
            apply_value_path_gain_(
                self.blocks, gain, base=value_init, include_cross_attention=norm_layout == "deepnorm"
            )

    def forward(
        self,
        x: torch.Tensor,
        *,
        memory: torch.Tensor | None = None,
        rel_pos_bias: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        split_position: int | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C). ``is_causal`` defaults to True for decoders.

        ``cache`` (decoders only, from :meth:`new_cache`): ``x`` holds the positions after
        the ``len(cache)`` already decoded; ``key_padding_mask`` then covers all of them."""
        if cache is not None:
            if self.kind != "decoder":
                raise ValueError("a KV cache is for decoder stacks (incremental decoding)")
            if len(cache.layers) != len(self.blocks):
                raise ValueError(f"cache has {len(cache.layers)} layers, the stack {len(self.blocks)}")
            if self.rel_pos_bias is not None:
                raise ValueError("a shared BEiT relative position table is for image grids; it takes no KV cache")
        if split_position is not None:
            set_split_position(self, split_position)
        if self.rel_pos_bias is not None:
            shared = self.rel_pos_bias()  # H, N, N
            rel_pos_bias = shared if rel_pos_bias is None else rel_pos_bias + shared
        causal = (self.kind == "decoder") if is_causal is None else is_causal
        for i, blk in enumerate(self.blocks):
            if self.kind == "decoder":
                x = blk(
                    x,
                    memory,
                    rel_pos_bias=rel_pos_bias,
                    attn_mask=attn_mask,
                    key_padding_mask=key_padding_mask,
                    is_causal=causal,
                    memory_key_padding_mask=memory_key_padding_mask,
                    cache=cache.layers[i] if cache is not None else None,
                )
            else:
                x = blk(
                    x,
                    rel_pos_bias=rel_pos_bias,
                    attn_mask=attn_mask,
                    key_padding_mask=key_padding_mask,
                    is_causal=causal,
                )
        return self.norm(x)

    def new_cache(self) -> DecoderCache:
        """An empty KV cache for incremental decoding with this (decoder) stack."""
        if self.kind != "decoder":
            raise ValueError("a KV cache is for decoder stacks (incremental decoding)")
        return DecoderCache(len(self.blocks))


# torchscale name -> vlcore name, applied in order to every key (after q/k/v fusion keys are grouped)
_TORCHSCALE_RENAMES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)layers\.", r"\1blocks."),
    (r"self_attn_layer_norm", "norm1"),
    (r"encoder_attn_layer_norm", "norm_cross"),
    (r"final_layer_norm", "norm2"),
    (r"(^|\.)layer_norm\.", r"\1norm."),
    (r"self_attn\.inner_attn_ln", "attn.norm"),
    (r"self_attn\.out_proj", "attn.proj"),
    (r"self_attn\.qkv_proj", "attn.qkv"),
    (r"encoder_attn\.q_proj", "cross_attn.q"),
    (r"encoder_attn\.kv_proj", "cross_attn.kv"),
    (r"encoder_attn\.out_proj", "cross_attn.proj"),
    (r"ffn_layernorm", "norm"),
    (r"(^|\.)ffn\.", r"\1mlp."),
)


def convert_torchscale_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchscale Encoder / Decoder (or single layer) keys to vlcore stack / block keys.

    q/k/v projections are concatenated into ``attn.qkv`` (k/v into ``cross_attn.kv``),
    Multiway ``.A.`` / ``.B.`` markers are kept in place, ``layers.`` becomes ``blocks.``
    and the output ``layer_norm`` becomes ``norm``. Strip model prefixes
    (``beit3.encoder.``, ``text_model.model.``) first; other keys pass through renamed.
    """
    fused: dict[str, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.search(r"(self_attn|encoder_attn)\.([qkv])_proj\.", key)
        if m and not (m.group(1) == "encoder_attn" and m.group(2) == "q"):
            group = "qkv" if m.group(1) == "self_attn" else "kv"
            fused.setdefault(key[: m.start(2)] + group + key[m.end(2) :], {})[m.group(2)] = value
        else:
            out[key] = value
    for key, parts in fused.items():
        order = "qkv" if ".qkv_proj." in key else "kv"
        if set(parts) != set(order):
            raise KeyError(f"incomplete projections for {key}: have {sorted(parts)}, need {list(order)}")
        out[key] = torch.cat([parts[p] for p in order], dim=0)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in out.items():
        for pattern, repl in _TORCHSCALE_RENAMES:
            key = re.sub(pattern, repl, key)
        renamed[key] = value
    return renamed
