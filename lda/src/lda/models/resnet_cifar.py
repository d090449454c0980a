"""ResNet-32 for 32x32 inputs (He et al. 2016, Sec. 4.2), the CIFAR-LT backbone of LDA.

Three stages of 5 basic blocks with 16, 32, 64 channels; stage changes use the
parameter-free "option A" shortcut (stride-2 subsampling plus zero channel
padding), which is what gives the 0.46 M parameters of the paper's table.
`bbn=True` builds the variant of the official CIFAR-10 config
(`bbn_res32_cifar`): the last stage has one block fewer, followed by two
parallel blocks (`cb_block`, `rb_block`) whose outputs are concatenated, so the
feature has 128 channels. Parameter names equal the official ones, so official
checkpoints load after stripping their `module.backbone.` prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = (planes - in_planes) // 2 if (stride != 1 or in_planes != planes) else 0
        self.downsample = stride != 1 or in_planes != planes

    def shortcut(self, x: Tensor) -> Tensor:
        if not self.downsample:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))  # zero channels on both sides (option A)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for CIFAR; `forward_features` gives B x C x 8 x 8 for 32 x 32 inputs."""

    def __init__(self, *, depth: int = 32, num_classes: int = 0, bbn: bool = False, in_chans: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.bbn = bbn
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n - 1 if bbn else n, 2)
        if bbn:
            self.cb_block = BasicBlock(64, 64)
            self.rb_block = BasicBlock(64, 64)
        self.num_features = 128 if bbn else 64
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """Outputs of the stem and of each stage (B x 16 x 32 x 32 ... B x C x 8 x 8)."""
        x = F.relu(self.bn1(self.conv1(x)))
        feats = [x]
        for layer in (self.layer1, self.layer2, self.layer3):
            x = layer(x)
            feats.append(x)
        if self.bbn:
            feats[-1] = torch.cat([self.cb_block(x), self.rb_block(x)], dim=1)
        return feats

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_intermediates(x)[-1]  # B, C, 8, 8

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(2, 3))  # B, C
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^conv1|bn1", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}

    def no_weight_decay(self) -> set[str]:
        return set()
