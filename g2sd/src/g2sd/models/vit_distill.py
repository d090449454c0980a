"""ViT with a distillation token, as G2SD's specific-distillation classification student.

Unlike DeiT, the distillation token is appended at the *end* of the sequence after the
position embeddings were added (it gets none), so a student initialised from a
generic-distillation checkpoint keeps its position table unchanged:

    patches # B, L, D -> [cls, patches] + pos_embed # B, 1 + L, D -> [.., dist] # B, 2 + L, D
    -> blocks -> norm -> head(x[:, 0]), head_dist(x[:, -1])

In training ``forward`` returns both logits (class head, distillation head); in eval mode
their mean, as the official evaluation does.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class DistilledVisionTransformer(VisionTransformer):
    """timm ``VisionTransformer`` (class-token pooling) plus ``dist_token`` and ``head_dist``."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("norm_layer", partial(nn.LayerNorm, eps=1e-6))
        if kwargs.get("global_pool", "token") != "token":
            raise ValueError("the distillation-token ViT pools the class token (global_pool='token')")
        super().__init__(**kwargs)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.head_dist = nn.Linear(self.embed_dim, self.num_classes) if self.num_classes > 0 else nn.Identity()
        trunc_normal_(self.dist_token, std=0.02)
        if isinstance(self.head_dist, nn.Linear):
            trunc_normal_(self.head_dist.weight, std=0.02)
            nn.init.zeros_(self.head_dist.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        self.head_dist = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self._pos_embed(x)  # B, 1 + L, D: cls + pos
        x = torch.cat((x, self.dist_token.expand(x.shape[0], -1, -1)), dim=1)  # B, 2 + L, D
        x = self.norm_pre(x)
        x = self.blocks(x)
        return self.norm(x)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both logits from ``forward_features`` output: (class head, distillation head)."""
        x = self.head_drop(x)
        return self.head(x[:, 0]), self.head_dist(x[:, -1])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return (x[:, 0] + x[:, -1]) / 2
        cls, dist = self.forward_heads(x)
        return (cls + dist) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(x)
        if self.training:
            return self.forward_heads(feats)
        return self.forward_head(feats)
