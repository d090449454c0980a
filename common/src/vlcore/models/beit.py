"""BEiT-style Vision Transformer (BEiT, BEiT v2, MaskDistill, BEiT-3's vision tower).

One backbone serves masked image modelling (mask token, one *shared* relative position
bias, final LayerNorm), fine-tuning (one relative position table *per layer*, mean
pooling + ``fc_norm``) and dense prediction (``forward_intermediates``). Blocks are
``vlcore.layers.EncoderBlock`` in the pre-LN layout with learnt q / v biases and no k
bias (``qkv_bias="qv"``), LayerNorm eps 1e-6 and optional layer scale.

Parameter names are the official unilm / timm ones except one: a per-layer table lives
at ``blocks.{i}.attn.rel_pos_bias.relative_position_bias_table`` (vlcore's attention
keeps its table in a submodule) where timm and unilm write
``blocks.{i}.attn.relative_position_bias_table``. :func:`beit_state_dict_from_official`
and :func:`beit_state_dict_to_timm` translate, expand a shared table into per-layer ones
(how BEiT fine-tuning starts from a pretraining checkpoint), and resize tables and
absolute position embeddings to the model's grid.

Hooks for BEiT v2's [CLS] bottleneck: :meth:`Beit.embed` (patch embedding, mask token,
class token, position embedding), :meth:`Beit.shared_rel_pos_bias` and
:meth:`Beit.forward_blocks` (returns the pre-norm tokens of any requested blocks), so a
pretraining head can feed the last [CLS] and an early layer's patch tokens to its own
blocks without re-running the trunk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from vlcore.layers.blocks import EncoderBlock
from vlcore.layers.init import rescale_residual_outputs_, trunc_normal_init_
from vlcore.layers.relpos import RelativePositionBias, resize_rel_pos_table

__all__ = [
    "Beit",
    "beit_state_dict_from_official",
    "beit_state_dict_to_timm",
    "expand_shared_rel_pos_bias",
]

RelPos = Literal["none", "shared", "per_layer"]
GlobalPool = Literal["avg", "token", ""]


class Beit(nn.Module):
    """BEiT-style ViT with the timm model API.

    Args:
        img_size, patch_size, in_chans: input geometry (the patch grid fixes the
            relative position tables; build with the resolution you run at).
        num_classes: classifier outputs; 0 for no head.
        global_pool: ``avg`` (mean of patch tokens -> ``fc_norm``; no final ``norm``, as
            BEiT fine-tuning), ``token`` (final ``norm`` -> [CLS]), ``""`` (final ``norm``,
            ``forward_head`` returns the tokens).
        embed_dim, depth, num_heads, mlp_ratio: width, depth, heads, FFN ratio.
        qkv_bias: ``qv`` (BEiT: learnt q and v biases, zero k bias), ``qkv`` or ``none``.
        drop_rate, attn_drop_rate, drop_path_rate: dropout after W_O / W_2, on attention
            probabilities, and stochastic depth (linear in depth up to this rate).
        norm_eps: LayerNorm eps (BEiT: 1e-6).
        init_values: layer-scale init (BEiT v2: 0.1 base / 1e-5 large); None or 0 = no layer scale.
        use_abs_pos_emb: learnt absolute position embedding (VQ-KD encoder / decoder).
        rel_pos: ``shared`` (one table for all blocks, pretraining), ``per_layer``
            (fine-tuning) or ``none``.
        use_mask_token: a learnt token that replaces masked patch embeddings.
        head_init_scale: the classifier's trunc-normal weights and zero bias are multiplied by it.
        init_mode: ``finetune`` (timm / unilm fine-tuning: trunc-normal std 0.02 cut at +-2
            absolute, default Conv2d init) or ``pretrain`` (unilm pretraining: cut at +-1 std,
            patch-embedding Conv2d trunc-normal too). Both divide W_O and W_2 of block l by sqrt(2 l).
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: GlobalPool = "avg",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: Literal["qv", "qkv", "none"] = "qv",
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        init_values: float | None = 0.1,
        use_abs_pos_emb: bool = False,
        rel_pos: RelPos = "per_layer",
        use_mask_token: bool = False,
        head_init_scale: float = 0.001,
        init_std: float = 0.02,
        init_mode: Literal["finetune", "pretrain"] = "finetune",
    ) -> None:
        super().__init__()
        if global_pool not in ("avg", "token", ""):
            raise ValueError(f"global_pool must be 'avg', 'token' or '', got {global_pool!r}")
        if rel_pos not in ("none", "shared", "per_layer"):
            raise ValueError(f"rel_pos must be 'none', 'shared' or 'per_layer', got {rel_pos!r}")
        if init_mode not in ("finetune", "pretrain"):
            raise ValueError(f"init_mode must be 'finetune' or 'pretrain', got {init_mode!r}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.num_heads = num_heads
        self.rel_pos = rel_pos
        self.grad_checkpointing = False
        init_values = init_values or None

        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim)) if use_abs_pos_emb else None
        self.pos_drop = nn.Dropout(drop_rate)
        self.rel_pos_bias = (
            RelativePositionBias(window_size=self.grid_size, num_heads=num_heads) if rel_pos == "shared" else None
        )
        # on the CPU explicitly: the model may be built under torch.device("meta") (parameter counts)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            EncoderBlock(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_eps=norm_eps,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                init_values=init_values,
                window_size=self.grid_size if rel_pos == "per_layer" else None,
            )
            for i in range(depth)
        )
        use_fc_norm = global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=norm_eps)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=patch_size) for i in range(depth)]
        self.init_weights(std=init_std, mode=init_mode, head_init_scale=head_init_scale)

    @torch.no_grad()
    def init_weights(self, *, std: float = 0.02, mode: str = "finetune", head_init_scale: float = 0.001) -> None:
        # timm / unilm fine-tuning call timm's trunc_normal_ with its default absolute cut at +-2
        # (i.e. effectively untruncated at std 0.02); pretraining cuts at +-1 std.
        cutoff = 1.0 if mode == "pretrain" else 2.0 / std
        trunc_normal_init_(self, std=std, cutoff=cutoff)
        tensors = [self.cls_token] + [t for t in (self.pos_embed, self.mask_token) if t is not None]
        if mode == "pretrain":
            tensors.append(self.patch_embed.proj.weight)
            nn.init.zeros_(self.patch_embed.proj.bias)
        for t in tensors:
            nn.init.trunc_normal_(t, std=std, a=-cutoff * std, b=cutoff * std)
        rescale_residual_outputs_(self.blocks)
        if isinstance(self.head, nn.Linear) and head_init_scale:
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    # -- timm API helpers --

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        skip = {"pos_embed", "cls_token", "mask_token"}
        return skip | {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^cls_token|^pos_embed|^mask_token|^patch_embed|^rel_pos_bias",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: GlobalPool | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if (global_pool == "avg") != (self.global_pool == "avg"):
                raise ValueError("switching between 'avg' and token pooling changes the norms; build a new model")
            self.global_pool = global_pool
        device = self.cls_token.device
        self.head = nn.Linear(self.embed_dim, num_classes, device=device) if num_classes > 0 else nn.Identity()

    # -- forward pieces --

    def embed(self, x: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, 1 + N, D); masked patches (B, N bool) become the mask token."""
        x = self.patch_embed(x)  # B, N, D
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError("this model has no mask token (build it with use_mask_token=True)")
            if bool_masked_pos.shape != x.shape[:2]:
                raise ValueError(f"bool_masked_pos must be {tuple(x.shape[:2])}, got {tuple(bool_masked_pos.shape)}")
            w = bool_masked_pos.unsqueeze(-1).type_as(x)  # B, N, 1
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x), dim=1)  # B, 1+N, D
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return self.pos_drop(x)

    def shared_rel_pos_bias(self) -> torch.Tensor | None:
        """(H, 1+N, 1+N) shared bias, or None with per-layer / no relative positions."""
        return self.rel_pos_bias() if self.rel_pos_bias is not None else None

    def _block(self, blk: nn.Module, x: torch.Tensor, rel_pos_bias: torch.Tensor | None) -> torch.Tensor:
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            return checkpoint(lambda t: blk(t, rel_pos_bias=rel_pos_bias), x, use_reentrant=False)
        return blk(x, rel_pos_bias=rel_pos_bias)

    def forward_blocks(
        self, x: torch.Tensor, *, collect: Sequence[int] = (), stop_at: int | None = None
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run tokens (B, 1+N, D) through the blocks; returns the pre-norm output and the
        pre-norm outputs of the blocks whose 0-based index is in ``collect``. ``stop_at``
        runs only blocks ``0..stop_at``."""
        rel_pos_bias = self.shared_rel_pos_bias()
        kept: dict[int, torch.Tensor] = {}
        last = len(self.blocks) - 1 if stop_at is None else stop_at
        for i, blk in enumerate(self.blocks[: last + 1]):
            x = self._block(blk, x, rel_pos_bias)
            if i in collect:
                kept[i] = x
        return x, kept

    def forward_features(self, x: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> tokens after the final norm (B, 1+N, D); ``norm`` is the identity with mean pooling."""
        x, _ = self.forward_blocks(self.embed(x, bool_masked_pos))
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)  # B, D
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API: outputs of the selected blocks (``indices``: last n or a list),
        as (B, D, h, w) maps (``NCHW``) or (B, h*w, D) tokens (``NLC``)."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        B, _, H, W = x.shape
        x, kept = self.forward_blocks(self.embed(x), collect=take, stop_at=max_index if stop_early else None)
        feats = [self.norm(kept[i]) if norm else kept[i] for i in take]
        prefix = [f[:, : self.num_prefix_tokens] for f in feats]
        feats = [f[:, self.num_prefix_tokens :] for f in feats]  # B, h*w, D
        if output_fmt == "NCHW":
            h, w = self.patch_embed.dynamic_feat_size((H, W))
            feats = [f.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous() for f in feats]
        if return_prefix_tokens:
            feats = list(zip(feats, prefix))
        if intermediates_only:
            return feats
        return self.norm(x), feats

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.fc_norm = nn.Identity()
            self.head = nn.Identity()
            self.num_classes = 0
        return take


# --- state-dict conversion ---------------------------------------------------

_OFFICIAL_TABLE = re.compile(r"^(blocks\.\d+\.attn)\.relative_position_bias_table$")
_OURS_TABLE = re.compile(r"^(blocks\.\d+\.attn)\.rel_pos_bias\.relative_position_bias_table$")
SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"


def _window_of(rows: int) -> tuple[int, int]:
    side = (math.isqrt(rows - 3) + 1) // 2
    if (2 * side - 1) ** 2 + 3 != rows:
        raise ValueError(f"a relative position table of {rows} rows is not a square window plus 3 class rows")
    return side, side


def expand_shared_rel_pos_bias(state_dict: Mapping[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Copy the shared table ``rel_pos_bias.relative_position_bias_table`` into each of the
    ``depth`` blocks (official key names) and drop the shared key: BEiT fine-tuning starts
    every layer's table from the pretrained shared one. Existing per-layer tables are kept."""
    out = {k: v for k, v in state_dict.items() if not k.startswith("rel_pos_bias.")}
    shared = state_dict.get(SHARED_TABLE)
    if shared is not None:
        for i in range(depth):
            out.setdefault(f"blocks.{i}.attn.relative_position_bias_table", shared.clone())
    return out


def beit_state_dict_from_official(
    state_dict: Mapping[str, torch.Tensor],
    model: Beit,
    *,
    rel_pos_resize: Literal["geometric", "bicubic"] = "geometric",
) -> dict[str, torch.Tensor]:
    """Official unilm / timm BEiT keys -> keys of ``model``, shaped for its grid.

    Drops ``relative_position_index`` buffers (rebuilt from the grid), expands a shared
    table into per-layer ones when ``model`` uses per-layer tables, renames per-layer
    tables into vlcore's attention submodule, resizes tables (``rel_pos_resize``; BEiT's
    geometric rule enlarges, bicubic also shrinks) and resamples an absolute position
    embedding. Keys the model does not have (``lm_head``, ``cls_pt_layers``, a teacher)
    pass through: load with ``vlcore.checkpoint.load_state_dict_strict`` to see them.
    """
    sd = {k: v for k, v in state_dict.items() if not k.endswith("relative_position_index")}
    if model.rel_pos == "per_layer" and SHARED_TABLE in sd:
        sd = expand_shared_rel_pos_bias(sd, len(model.blocks))
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _OFFICIAL_TABLE.match(k)
        if m:
            k = f"{m.group(1)}.rel_pos_bias.relative_position_bias_table"
        if k.endswith("relative_position_bias_table"):
            v = resize_rel_pos_table(
                v, src_window=_window_of(v.shape[0]), dst_window=model.grid_size, method=rel_pos_resize
            )
        elif k == "pos_embed" and model.pos_embed is not None and v.shape[1] != model.pos_embed.shape[1]:
            v = resample_abs_pos_embed(v, new_size=list(model.grid_size), num_prefix_tokens=1)
        out[k] = v
    return out


def beit_state_dict_to_timm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of a :class:`Beit` -> timm ``Beit`` / unilm keys (per-layer tables renamed back)."""
    out = {}
    for k, v in state_dict.items():
        m = _OURS_TABLE.match(k)
        out[f"{m.group(1)}.relative_position_bias_table" if m else k] = v
    return out
