"""Vision Transformer classifier with the ``norm`` switch (Sub-LN by default).

timm's ``VisionTransformer`` with ``scale_attn_norm=True, scale_mlp_norm=True`` is the
same Sub-LN network; ``convert_timm_vit`` / ``to_timm_vit`` map weights both ways
(keys: timm ``blocks.{i}.*`` <-> ours ``encoder.blocks.{i}.*``, timm ``norm`` <-> ours
``encoder.norm``; everything else is named alike).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vlcore.layers import PatchEmbed
from magneto.models.trunk import build_stack, init_trunk_, resolve_init


class MagnetoViT(nn.Module):
    """ViT with a class token, learnt positions and a linear head.

    Args:
        img_size, patch_size, in_chans, num_classes: input and output.
        depth, dim, num_heads, mlp_ratio: trunk size.
        norm, init, value_init: see ``magneto.models.trunk``.
        norm_eps: LayerNorm eps (timm / BEiT ViTs: 1e-6).
        global_pool: ``token`` (class token) or ``avg`` (mean of patch tokens).
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        depth: int = 12,
        dim: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        norm: str = "subln",
        init: str = "auto",
        value_init: str = "xavier_normal",
        norm_eps: float = 1e-6,
        global_pool: str = "token",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        self.init_rule = resolve_init(norm, init)
        self.norm_kind = norm
        self.num_classes, self.global_pool, self.embed_dim = num_classes, global_pool, dim
        self.num_features = dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, dim))
        self.pos_drop = nn.Dropout(drop)
        self.encoder = build_stack(
            kind="encoder", depth=depth, dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, norm=norm,
            norm_eps=norm_eps, drop=drop, attn_drop=attn_drop, drop_path_rate=drop_path_rate,
        )
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.gain = init_trunk_(self.encoder, init=self.init_rule, value_init=value_init)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^cls_token|^pos_embed|^patch_embed",
            "blocks": [(r"^encoder\.blocks\.(\d+)", None), (r"^encoder\.norm", (99999,))],
        }

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # B, N, C
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)  # B, 1 + N, C
        return self.pos_drop(x + self.pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> tokens (B, 1 + N, C) after the final norm."""
        return self.encoder(self._tokens(x))

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | list[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final tokens and the tokens after the chosen blocks (default: all; an int = the last n)."""
        depth = len(self.encoder.blocks)
        if indices is None:
            keep = set(range(depth))
        elif isinstance(indices, int):
            keep = set(range(depth - indices, depth))
        else:
            keep = {i % depth for i in indices}
        x = self._tokens(x)
        inter = []
        for i, blk in enumerate(self.encoder.blocks):
            x = blk(x)
            if i in keep:
                inter.append(x)
        return self.encoder.norm(x), inter

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 1:].mean(dim=1) if self.global_pool == "avg" else x[:, 0]  # B, C
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def convert_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``VisionTransformer`` (class token, no fc_norm) weights -> ``MagnetoViT`` keys."""
    out = {}
    for k, v in state_dict.items():
        if k.startswith("blocks."):
            k = "encoder." + k
        elif k.startswith("norm."):
            k = "encoder." + k
        elif k.startswith("fc_norm.") or k.startswith("head_drop"):
            continue
        out[k] = v
    return out


def to_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``MagnetoViT`` weights -> timm ``VisionTransformer`` keys (the inverse of ``convert_timm_vit``)."""
    return {(k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in state_dict.items()}
