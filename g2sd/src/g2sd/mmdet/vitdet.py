"""ViTDet for MMDetection 3.x: a plain ViT backbone and the simple feature pyramid.

``G2SDViTDet``: patch embedding (stride 16), an absolute position table of the
pre-training grid (class-token row kept, dropped and bicubic-resized at run time), and
timm's SAM / ViTDet blocks: window attention (window 14) in most blocks, global attention
in ``global_blocks`` (ViT-B/S/Ti: 2, 5, 8, 11), decomposed relative position bias in every
block, stochastic depth. It returns the last feature map (B, C, H/16, W/16).

``G2SDSimpleFPN``: from that single map, deconvolutions (x4, x2), identity and max-pool
(x0.5) give strides 4-32; each goes through a 1x1 and a 3x3 convolution with LayerNorm to
256 channels, and a stride-2 max-pool of the last adds stride 64 (p2-p6).

Parameter names follow detectron2's ViTDet (``backbone.net.*`` -> ``backbone.*``,
``backbone.simfp_*`` -> ``neck.simfp_*``), so official checkpoints convert by renaming.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from timm.layers import PatchEmbed
from timm.models.vision_transformer_sam import Block
from torch import nn


@MODELS.register_module(name="G2SDLN2d")
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) map (detectron2 / ConvNeXt ``LayerNorm``)."""

    _abbr_ = "ln"

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N, C, H, W
        x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _pos_on_grid(pos_embed: torch.Tensor, hw: tuple[int, int], has_cls: bool) -> torch.Tensor:
    """(1, [1 +] G*G, C) table -> (1, H, W, C), bicubic-resized as ViTDet's ``get_abs_pos``."""
    if has_cls:
        pos_embed = pos_embed[:, 1:]
    g = int(pos_embed.shape[1] ** 0.5)
    table = pos_embed.reshape(1, g, g, -1)
    if (g, g) != tuple(hw):
        table = F.interpolate(table.permute(0, 3, 1, 2), size=hw, mode="bicubic", align_corners=False)
        table = table.permute(0, 2, 3, 1)
    return table


@MODELS.register_module(name="G2SDViTDet")
class ViTDet(BaseModule):
    """Plain ViT backbone of ViTDet (returns one stride-16 map).

    Args:
        img_size: training image size (sizes the relative tables of the global blocks).
        pretrain_img_size: grid of the absolute position table (224 / 16 = 14).
        window_size, global_blocks: window attention except in these blocks.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads an MAE / G2SD encoder
            (official layout or ours); relative tables start at zero.
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        window_size: int = 14,
        global_blocks: Sequence[int] = (2, 5, 8, 11),
        pretrain_img_size: int = 224,
        use_rel_pos: bool = True,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=None)
        self._pretrained = init_cfg
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim, output_fmt="NHWC", strict_img_size=False)
        g = pretrain_img_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, embed_dim))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear stochastic-depth rule
        grid = (img_size // patch_size, img_size // patch_size)
        self.blocks = nn.ModuleList([
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=dpr[i],
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=use_rel_pos,
                  window_size=0 if i in global_blocks else window_size, input_size=grid)
            for i in range(depth)
        ])
        self.embed_dim = embed_dim
        self.num_layers = depth
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_linear)

    @staticmethod
    def _init_linear(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        cfg = self._pretrained
        if cfg and cfg.get("type") == "Pretrained":
            from g2sd.convert import mae_encoder_to_vitdet, read_any_state_dict

            load_vitdet_encoder(self, mae_encoder_to_vitdet(read_any_state_dict(cfg["checkpoint"])))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.patch_embed(x)  # B, H, W, C
        x = x + _pos_on_grid(self.pos_embed, x.shape[1:3], has_cls=True)
        for blk in self.blocks:
            x = blk(x)
        return (x.permute(0, 3, 1, 2).contiguous(),)  # B, C, H, W


def load_vitdet_encoder(backbone: ViTDet, sd: dict[str, torch.Tensor]) -> list[str]:
    """Load encoder weights; only relative position tables may be missing. Returns the missing keys."""
    from vlcore.checkpoint import CheckpointMismatchError

    own = backbone.state_dict()
    if "pos_embed" in sd and sd["pos_embed"].shape != own["pos_embed"].shape:
        g = int((own["pos_embed"].shape[1] - 1) ** 0.5)
        grid = _pos_on_grid(sd["pos_embed"], (g, g), has_cls=True).reshape(1, g * g, -1)
        sd = dict(sd, pos_embed=torch.cat((sd["pos_embed"][:, :1], grid), dim=1))
    missing = [k for k in own if k not in sd]
    bad = [k for k in missing if "rel_pos" not in k]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad or unexpected or shapes:
        raise CheckpointMismatchError(
            f"encoder weights do not fit G2SDViTDet: missing {bad[:5]}, unexpected {unexpected[:5]}, shapes {shapes[:5]}",
            missing=bad, unexpected=unexpected, mismatched=shapes)
    backbone.load_state_dict(sd, strict=False)
    return missing


class ConvLN(nn.Conv2d):
    """Conv2d followed by a channel LayerNorm held as ``.norm`` (detectron2's ``Conv2d(norm=LN)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.norm = LayerNorm2d(out_channels)
        nn.init.kaiming_uniform_(self.weight, a=1)  # detectron2's c2_xavier_fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


def _stage(scale: float) -> str:
    # detectron2 names a pyramid stage by log2 of its stride: simfp_2 (stride 4) ... simfp_5 (stride 32)
    return f"simfp_{int(math.log2(16 / scale))}"


@MODELS.register_module(name="G2SDSimpleFPN")
class SimpleFPN(BaseModule):
    """ViTDet's simple feature pyramid: scales (4, 2, 1, 0.5) + a max-pooled p6, all ``out_channels``."""

    def __init__(self, *, in_channels: int = 768, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), top_block: bool = True,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.scale_factors = tuple(scale_factors)
        self.top_block = top_block
        c = in_channels
        for scale in self.scale_factors:
            if scale == 4.0:
                layers = [nn.ConvTranspose2d(c, c // 2, 2, stride=2), LayerNorm2d(c // 2), nn.GELU(),
                          nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2)]
                dim = c // 4
            elif scale == 2.0:
                layers, dim = [nn.ConvTranspose2d(c, c // 2, 2, stride=2)], c // 2
            elif scale == 1.0:
                layers, dim = [], c
            elif scale == 0.5:
                layers, dim = [nn.MaxPool2d(2, stride=2)], c
            else:
                raise ValueError(f"scale factor {scale} is not supported")
            layers += [ConvLN(dim, out_channels, 1), ConvLN(out_channels, out_channels, 3, padding=1)]
            self.add_module(_stage(scale), nn.Sequential(*layers))

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = inputs[-1]  # B, C, H/16, W/16
        outs = [getattr(self, _stage(s))(x) for s in self.scale_factors]
        if self.top_block:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2, padding=0))
        return tuple(outs)
