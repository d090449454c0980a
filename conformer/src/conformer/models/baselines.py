"""Single-branch baselines of the mini reproduction, built from the same parts as Conformer.

`BottleneckResNet` is Conformer's CNN branch on its own: the same stem, the same
bottleneck (`ConvBlock`) sequence (c1, then two bottlenecks per coupled block, the same
strides, the final stride-2 fusion bottleneck), no transformer and no FCUs, with its
widths free so that it can match another model's parameter count. The transformer-only
baseline is timm's `VisionTransformer` (DeiT: patch embedding, learnt position embedding,
class token), built in `conformer.repro`.
"""

from __future__ import annotations

import torch
from torch import nn

from conformer.models.conformer import ConvBlock, stage_layout


class BottleneckResNet(nn.Module):
    """ResNet of bottlenecks laid out like Conformer's CNN branch (GAP + linear head)."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        base_channel: int = 64,
        channel_ratio: float = 4,
        depth: int = 12,
        stem_chs: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if drop_path_rate:
            raise ValueError("BottleneckResNet has no drop path (nor has Conformer's CNN branch); set it to 0")
        chs = {2: int(base_channel * channel_ratio), 3: int(base_channel * channel_ratio * 2),
               4: int(base_channel * channel_ratio * 4)}
        self.num_classes = num_classes
        self.num_features = chs[4]
        self.conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=stem_kernel, stride=stem_stride,
                               padding=stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        blocks = [ConvBlock(in_chs=stem_chs, out_chs=chs[2], res_conv=True)]
        layout = stage_layout(depth)
        for i, stage in layout:
            first = i == min(j for j, s in layout if s == stage)
            down = first and stage > 2
            blocks.append(ConvBlock(in_chs=chs[stage - 1] if down else chs[stage], out_chs=chs[stage],
                                    res_conv=down, stride=2 if down else 1))
            last = i == depth
            blocks.append(ConvBlock(in_chs=chs[stage], out_chs=chs[stage], res_conv=last, stride=2 if last else 1))
        self.blocks = nn.ModuleList(blocks)
        self.pooling = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(chs[4], num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for blk in self.blocks:
            x, _ = blk(x)
        return x  # B, C, H/32, W/32 with the default stem

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pooling(x).flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
