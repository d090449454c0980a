"""imTED backbone (the MAE encoder as a plain ViT with a simple pyramid) and its SimpleFPN neck.

Parameter names follow the official layout (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.i``, ``fpn1``/``fpn2``), so MAE checkpoints and official imTED checkpoints load by name.
The encoder's final LayerNorm is *not* here: imTED re-uses it as the first layer of the box head.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from vlcore.layers.pos_embed import sincos_2d_pos_embed


@MODELS.register_module()
class ImTEDViT(BaseModule):
    """MAE encoder (global attention in every block) + ViTDet-style simple pyramid from the last block.

    forward(images # B, 3, H, W) -> (P2, P3, P4, P5, V): four maps of ``embed_dim`` channels at strides
    4 / 8 / 16 / 32 and V # B, D, H/16, W/16, the last block's tokens (pre-norm) as a map; V is what the
    MAE decoder saw in pre-training and what the box head pools from.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
        with_simple_fpn: bool = True,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, strict_img_size=False, dynamic_img_pad=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        grid = self.patch_embed.grid_size
        # Learnable here (fine-tuned), initialised from the MAE sin-cos table.
        self.pos_embed = nn.Parameter(sincos_2d_pos_embed(embed_dim, grid, cls_token=True)[None].float())
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # no tensor: builds on meta
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            [Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=dpr[i],
                   norm_layer=norm) for i in range(depth)]
        )
        self.with_simple_fpn = with_simple_fpn
        if with_simple_fpn:
            d = embed_dim
            self.fpn1 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2), nn.BatchNorm2d(d), nn.GELU(),
                                      nn.ConvTranspose2d(d, d, 2, 2))
            self.fpn2 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2))
            self.fpn3 = nn.Identity()
            self.fpn4 = nn.MaxPool2d(2, 2)
        nn.init.normal_(self.cls_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def _pos_embed(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        pe = self.pos_embed
        if pe.shape[1] - 1 != hw[0] * hw[1]:
            pe = resample_abs_pos_embed(pe, new_size=list(hw), num_prefix_tokens=1, interpolation="bicubic")
        cls = (self.cls_token + pe[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat((cls, x + pe[:, 1:]), dim=1)  # B, 1 + h*w, D

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens after the last block (pre-norm) # B, 1 + h*w, D and the grid (h, w)."""
        B, _, H, W = x.shape
        hw = (H // self.patch_size, W // self.patch_size)
        x = self.patch_embed(x)  # B, h*w, D
        x = self._pos_embed(x, hw)
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.use_checkpoint and x.requires_grad else blk(x)
        return x, hw

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tokens, (h, w) = self.forward_tokens(x)
        B, _, D = tokens.shape
        # contiguous: mmcv's RoIAlign kernels read raw memory and ignore strides
        v = tokens[:, 1:].transpose(1, 2).reshape(B, D, h, w).contiguous()  # B, D, h, w
        if not self.with_simple_fpn:
            return (v,)
        return (self.fpn1(v), self.fpn2(v), self.fpn3(v), self.fpn4(v), v)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a B, C, H, W map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvLN(nn.Module):
    """conv (no bias) + channel LayerNorm, named ``conv`` / ``norm`` as mmcv's ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = LayerNorm2d(out_channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


@MODELS.register_module()
class ImTEDSimpleFPN(BaseModule):
    """Per-level 1x1 + 3x3 conv with channel LayerNorm, no top-down path; P6 = stride-2 subsampling of P5.

    Takes the backbone's (P2..P5, V) and returns (N2..N6, V): five ``out_channels`` maps for the RPN
    (and the multi-scale modulator) with V passed through untouched for the box head.
    """

    def __init__(self, *, in_channels: int = 768, out_channels: int = 256, num_levels: int = 4,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_levels = num_levels
        self.lateral_convs = nn.ModuleList([ConvLN(in_channels, out_channels, 1) for _ in range(num_levels)])
        self.fpn_convs = nn.ModuleList([ConvLN(out_channels, out_channels, 3) for _ in range(num_levels)])

    def forward(self, feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if len(feats) != self.num_levels + 1:
            raise ValueError(f"expected {self.num_levels} pyramid maps + the ViT map, got {len(feats)} maps")
        outs = [f(l(x)) for x, l, f in zip(feats[:-1], self.lateral_convs, self.fpn_convs)]
        outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return (*outs, feats[-1])
