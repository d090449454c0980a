"""Conformer: a ResNet-style CNN branch and a ViT branch run side by side, coupled by FCUs.

Peng et al., "Conformer: Local Features Coupling Global Representations for Visual
Recognition", ICCV 2021 (arXiv 2105.03889).

Layout (depth 12, channel ratio r, width E, patch size P; input H x W):

    stem     7x7/2 conv, BN, ReLU, 3x3/2 max-pool                          64 @ H/4
    c1       conv_1 (bottleneck 64 -> 64r)   |  trans_patch_conv (k = s = P/4) + cls token, trans_1
    c2       conv_trans_2..4   64r @ H/4     |  tokens, FCU stride P/4
    c3       conv_trans_5..8  128r @ H/8     |  tokens, FCU stride P/8     (first block: stride 2)
    c4       conv_trans_9..12 256r @ H/16    |  tokens, FCU stride P/16    (block 12 fusion: stride 2 -> H/32)
    heads    GAP -> conv_cls_head            |  trans_norm(cls) -> trans_cls_head;  logits summed

Every coupled block runs bottleneck -> FCUDown -> transformer block -> FCUUp -> bottleneck;
see `ConvTransBlock`. There is no position embedding: the token grid is fixed by the
patch convolution and position reaches the tokens through FCUDown's CNN features.

Module and parameter names are those of the official release (`conv_trans_{i}.cnn_block`,
`squeeze_block`, `expand_block`, `trans_block`, ...), so official ImageNet checkpoints and
the backbone part of the official MMDetection 2.x checkpoints load without renaming
(`conformer.convert` handles containers, prefixes and the mmpretrain layout).
"""

from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from vlcore.layers import EncoderBlock

__all__ = ["ConvBlock", "FCUDown", "FCUUp", "ConvTransBlock", "Conformer", "stage_layout"]


class ConvBlock(nn.Module):
    """ResNet bottleneck (expansion 4) that also returns its 3x3 activation and can take one in.

    `x_t` (the FCUUp output, B x C/4 x H x W) is added to the input of the 3x3 conv; the
    activation after that conv (`x2`) is what FCUDown reads. BatchNorm eps 1e-6.
    """

    expansion = 4

    def __init__(
        self,
        *,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        res_conv: bool = False,
        groups: int = 1,
        bn_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        mid = out_chs // self.expansion
        self.conv1 = nn.Conv2d(in_chs, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid, out_chs, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.act3 = nn.ReLU(inplace=True)
        self.res_conv = res_conv
        if res_conv:
            self.residual_conv = nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False)
            self.residual_bn = nn.BatchNorm2d(out_chs, eps=bn_eps)

    def forward(
        self, x: torch.Tensor, x_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))  # B, C/4, H, W
        if x_t is not None:
            x = x + x_t
        x2 = self.act2(self.bn2(self.conv2(x)))  # B, C/4, H/s, W/s
        x = self.bn3(self.conv3(x2))  # B, C, H/s, W/s
        if self.res_conv:
            shortcut = self.residual_bn(self.residual_conv(shortcut))
        return self.act3(x + shortcut), x2


class FCUDown(nn.Module):
    """CNN -> transformer: 1x1 conv to E, average pooling by `dw_stride`, LayerNorm, GELU.

    The transformer's current class token is put in front, so the result adds onto the
    full token sequence (the class token therefore enters the next block doubled).
    """

    def __init__(self, *, in_chs: int, embed_dim: int, dw_stride: int, ln_eps: float = 1e-6) -> None:
        super().__init__()
        self.dw_stride = dw_stride
        self.conv_project = nn.Conv2d(in_chs, embed_dim, kernel_size=1)
        self.sample_pooling = nn.AvgPool2d(kernel_size=dw_stride, stride=dw_stride)
        self.ln = nn.LayerNorm(embed_dim, eps=ln_eps)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        x = self.conv_project(x)  # B, E, H, W
        x = self.sample_pooling(x).flatten(2).transpose(1, 2)  # B, HW / dw^2, E
        x = self.act(self.ln(x))
        return torch.cat([x_t[:, :1], x], dim=1)  # B, 1 + N, E


class FCUUp(nn.Module):
    """Transformer -> CNN: patch tokens back to a grid, 1x1 conv, BatchNorm, ReLU, nearest upsampling."""

    def __init__(self, *, embed_dim: int, out_chs: int, up_stride: int, bn_eps: float = 1e-6) -> None:
        super().__init__()
        self.up_stride = up_stride
        self.conv_project = nn.Conv2d(embed_dim, out_chs, kernel_size=1)
        self.bn = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x[:, 1:].transpose(1, 2).reshape(b, c, h, w)  # B, E, h, w (class token dropped)
        x = self.act(self.bn(self.conv_project(x)))  # B, C/4, h, w
        return F.interpolate(x, size=(h * self.up_stride, w * self.up_stride), mode="nearest")


class ConvTransBlock(nn.Module):
    """One coupled block: two bottlenecks, one transformer block and the two FCUs between them.

    The transformer block sees this block's CNN features (FCUDown of `cnn_block`'s 3x3
    activation) before the CNN sees the updated tokens (FCUUp into `fusion_block`).
    `last_fusion` makes the fusion bottleneck stride 2 (the network's final stride 32).
    """

    def __init__(
        self,
        *,
        in_chs: int,
        out_chs: int,
        res_conv: bool,
        stride: int,
        dw_stride: int,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        last_fusion: bool = False,
        groups: int = 1,
    ) -> None:
        super().__init__()
        mid = out_chs // ConvBlock.expansion
        self.dw_stride = dw_stride
        self.cnn_block = ConvBlock(in_chs=in_chs, out_chs=out_chs, res_conv=res_conv, stride=stride, groups=groups)
        if last_fusion:
            self.fusion_block = ConvBlock(in_chs=out_chs, out_chs=out_chs, stride=2, res_conv=True, groups=groups)
        else:
            self.fusion_block = ConvBlock(in_chs=out_chs, out_chs=out_chs, groups=groups)
        self.squeeze_block = FCUDown(in_chs=mid, embed_dim=embed_dim, dw_stride=dw_stride)
        self.expand_block = FCUUp(embed_dim=embed_dim, out_chs=mid, up_stride=dw_stride)
        self.trans_block = _transformer_block(
            embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate
        )

    def forward(self, x: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, x2 = self.cnn_block(x)  # B, C, H, W ; B, C/4, H, W
        h, w = x2.shape[-2:]
        x_st = self.squeeze_block(x2, x_t)  # B, 1 + N, E
        x_t = self.trans_block(x_st + x_t)
        x_t_r = self.expand_block(x_t, h // self.dw_stride, w // self.dw_stride)  # B, C/4, H, W
        x, _ = self.fusion_block(x, x_t_r)
        return x, x_t


def _transformer_block(
    dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float, drop_path: float
) -> EncoderBlock:
    # Pre-norm ViT block, LayerNorm eps 1e-6, GELU MLP: keys norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2.
    return EncoderBlock(
        dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, norm_layout="pre",
        qkv_bias="qkv" if qkv_bias else "none", norm_eps=1e-6, drop=drop, attn_drop=attn_drop, drop_path=drop_path,
    )


def stage_layout(depth: int) -> list[tuple[int, int]]:
    """(block index, stage) for the coupled blocks 2..depth: stages 2, 3, 4 hold depth/3 - 1, depth/3, depth/3."""
    if depth % 3 or depth < 6:
        raise ValueError(f"Conformer depth must be a multiple of 3 and >= 6, got {depth}")
    third = depth // 3
    return [(i, 2 if i <= third else 3 if i <= 2 * third else 4) for i in range(2, depth + 1)]


class Conformer(nn.Module):
    """Conformer classifier / backbone with the timm-style API.

    `forward(x)` returns the summed logits of the two heads (what the paper reports);
    `forward(x, return_heads=True)` / `forward_heads(x)` return both, (conv_logits, trans_logits),
    for the training loss (the mean of the two heads' losses).

    Args:
        patch_size: P; the token grid is H/P x W/P (for the default stem of stride 4).
        channel_ratio: r; CNN widths are base_channel * r * (1, 2, 4) for stages c1-c2, c3, c4.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the transformer branch.
        drop_path_rate: stochastic depth of the transformer blocks, linear over the depth
            (`trans_1` gets 0); the CNN branch has none.
        stem_chs, stem_kernel, stem_stride, stem_pool: the stem (official: 64, 7, 2, max-pool);
            small-image variants change them, e.g. stride 2 without pooling for 32 x 32 inputs.
    """

    def __init__(
        self,
        *,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        base_channel: int = 64,
        channel_ratio: float = 4,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stem_chs: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
    ) -> None:
        super().__init__()
        if patch_size % 16:
            raise ValueError(f"Conformer patch_size must be a multiple of 16 (FCU strides P/4, P/8, P/16), got {patch_size}")
        layout = stage_layout(depth)
        self.num_classes = num_classes
        self.depth = depth
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.trans_dw_stride = patch_size // 4
        self.stem_reduction = stem_stride * (2 if stem_pool else 1)

        chs = {2: int(base_channel * channel_ratio), 3: int(base_channel * channel_ratio * 2),
               4: int(base_channel * channel_ratio * 4)}
        self.num_features = chs[4] + embed_dim  # pre-logits: [GAP(CNN), LN(cls)]
        dpr = [drop_path_rate * i / (depth - 1) for i in range(depth)]  # linspace(0, rate, depth)

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))

        # Stem: 1/4 of the input with the official settings.
        self.conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=stem_kernel, stride=stem_stride,
                               padding=stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)  # eps 1e-5, unlike the branches
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()

        # c1: a plain bottleneck beside the patch embedding and the first transformer block.
        self.conv_1 = ConvBlock(in_chs=stem_chs, out_chs=chs[2], res_conv=True, stride=1)
        self.trans_patch_conv = nn.Conv2d(stem_chs, embed_dim, kernel_size=self.trans_dw_stride,
                                          stride=self.trans_dw_stride)
        self.trans_1 = _transformer_block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[0])

        self.block_names: list[str] = []
        for i, stage in layout:
            first = i == min(j for j, s in layout if s == stage)
            in_chs = chs[stage - 1] if first and stage > 2 else chs[stage]
            down = first and stage > 2
            self.add_module(f"conv_trans_{i}", ConvTransBlock(
                in_chs=in_chs, out_chs=chs[stage], res_conv=down, stride=2 if down else 1,
                dw_stride=self.trans_dw_stride // 2 ** (stage - 2), embed_dim=embed_dim, num_heads=num_heads,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                drop_path_rate=dpr[i - 1], last_fusion=i == depth,
            ))
            self.block_names.append(f"conv_trans_{i}")

        # CNN maps at strides 4 / 8 / 16 / 32 (default stem): the ends of c2 and c3, the
        # block before the last (stride 16) and the last block (stride 32, after `last_fusion`).
        ends = [max(j for j, s in layout if s == 2), max(j for j, s in layout if s == 3), depth - 1, depth]
        r = self.stem_reduction
        self.feature_info = [
            dict(num_chs=chs[2], reduction=r, module=f"conv_trans_{ends[0]}"),
            dict(num_chs=chs[3], reduction=2 * r, module=f"conv_trans_{ends[1]}"),
            dict(num_chs=chs[4], reduction=4 * r, module=f"conv_trans_{ends[2]}"),
            dict(num_chs=chs[4], reduction=8 * r, module=f"conv_trans_{ends[3]}"),
        ]
        self._level_of_block = {e: k for k, e in enumerate(ends)}

        self.trans_norm = nn.LayerNorm(embed_dim)  # eps 1e-5 here, 1e-6 inside the blocks
        self.pooling = nn.AdaptiveAvgPool2d(1)
        self.conv_cls_head = nn.Linear(chs[4], num_classes) if num_classes > 0 else nn.Identity()
        self.trans_cls_head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            # Weights only: conv biases (patch conv, FCU projections) keep PyTorch's default, as released.
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # --- timm-style API ---

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^cls_token|^conv1|^bn1|^conv_1\.|^trans_patch_conv|^trans_1\.",
            blocks=r"^conv_trans_(\d+)" if coarse else [(r"^conv_trans_(\d+)", None), (r"^trans_norm", (99999,))],
        )

    def get_classifier(self) -> tuple[nn.Module, nn.Module]:
        return self.conv_cls_head, self.trans_cls_head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        c, e = self.feature_info[-1]["num_chs"], self.embed_dim
        self.conv_cls_head = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        self.trans_cls_head = nn.Linear(e, num_classes) if num_classes > 0 else nn.Identity()

    def stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stem and c1: (CNN map B x 64r x H/4 x W/4, tokens B x (1 + N) x E, stem output)."""
        x_base = self.maxpool(self.act1(self.bn1(self.conv1(x))))  # B, 64, H/4, W/4
        hs, ws = x_base.shape[-2:]
        # FCUUp has to give back the CNN grid exactly at every stage (H/4 divisible by P/4).
        if hs % self.trans_dw_stride or ws % self.trans_dw_stride:
            step = self.trans_dw_stride * self.stem_reduction
            raise ValueError(
                f"Conformer with patch size {self.patch_size} needs input height and width divisible by {step}, "
                f"got {tuple(x.shape[-2:])}"
            )
        x_c, _ = self.conv_1(x_base)  # B, 64r, H/4, W/4
        x_t = self.trans_patch_conv(x_base).flatten(2).transpose(1, 2)  # B, N, E
        x_t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x_t], dim=1)  # B, 1 + N, E
        return x_c, self.trans_1(x_t), x_base

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(final CNN map B x 256r x H/32 x W/32, final tokens B x (1 + N) x E, before trans_norm)."""
        x, x_t, _ = self.stem(x)
        for name in self.block_names:
            x, x_t = getattr(self, name)(x, x_t)
        return x, x_t

    def forward_head(
        self, features: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Both heads' logits (conv, trans); with `pre_logits`, the concatenated [GAP(CNN), LN(cls)]."""
        x, x_t = features
        x_p = self.pooling(x).flatten(1)  # B, 256r
        cls = self.trans_norm(x_t)[:, 0]  # B, E
        if pre_logits:
            return torch.cat([x_p, cls], dim=1)
        return self.conv_cls_head(x_p), self.trans_cls_head(cls)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conv_logits, trans_logits): the CNN head on the pooled map and the transformer head on the class token."""
        return self.forward_head(self.forward_features(x))

    def forward(
        self, x: torch.Tensor, return_heads: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Summed logits; with `return_heads`, (conv_logits, trans_logits) (through DDP's forward too)."""
        conv_logits, trans_logits = self.forward_heads(x)
        if return_heads:
            return conv_logits, trans_logits
        return conv_logits + trans_logits

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: Literal["NCHW"] = "NCHW",
        intermediates_only: bool = False,
        return_tokens: bool = False,
    ):
        """CNN-branch maps at the four feature levels (strides 4, 8, 16, 32 with the default stem).

        `indices`: the levels to return (list of 0..3) or the last n levels (int); default all.
        With `return_tokens`, each entry is (map, tokens B x (1 + N) x E) from the same block.
        Returns the list, or (final features, list) unless `intermediates_only`.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"Conformer intermediates are CNN maps (NCHW), got output_fmt={output_fmt!r}")
        if norm:
            raise ValueError("Conformer's CNN maps have no final norm; call with norm=False")
        n = len(self.feature_info)
        if indices is None:
            take = list(range(n))
        elif isinstance(indices, int):
            if not 1 <= indices <= n:
                raise ValueError(f"indices={indices}: Conformer has {n} feature levels")
            take = list(range(n - indices, n))
        else:
            take = sorted(i % n for i in indices)
            if any(not -n <= i < n for i in indices):
                raise ValueError(f"indices={list(indices)}: Conformer has {n} feature levels (0..{n - 1})")
        last_block = max(int(re.search(r"(\d+)$", self.feature_info[i]["module"]).group(1)) for i in take)

        out = []
        x, x_t, _ = self.stem(x)
        for name in self.block_names:
            i = int(name.rsplit("_", 1)[1])
            if stop_early and i > last_block:
                break
            x, x_t = getattr(self, name)(x, x_t)
            level = self._level_of_block.get(i)
            if level is not None and level in take:
                out.append((x, x_t) if return_tokens else x)
        if intermediates_only:
            return out
        return (x, x_t), out
