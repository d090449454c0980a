"""The 0.07 M-parameter CNN of the CPU mini reproduction.

Three stages of two 3x3 conv-BN-ReLU layers (16, 32, 64 channels), stride 2
between stages, global average pooling to a 64-d feature. `stem_stride=2` also
strides the first convolution (32x32 input -> 16x16 maps), which makes a step
about three times cheaper on a CPU while the first layer still sees the full
image; the mini reproduction uses it so that 30 epochs x 3 seeds x every arm fit
in minutes on two cores.
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self, *, widths: tuple[int, ...] = (16, 32, 64), num_classes: int = 0, in_chans: int = 3,
                 stem_stride: int = 1):
        super().__init__()
        stages, cin = [], in_chans
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(*_conv_bn_relu(cin, w, stem_stride if i == 0 else 2), *_conv_bn_relu(w, w, 1)))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        self.num_classes = num_classes
        self.fc = nn.Linear(cin, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(x)  # B, C, H/(4 stem_stride), W/(4 stem_stride)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^stages\.0", "blocks": r"^stages\.(\d+)"}

    def no_weight_decay(self) -> set[str]:
        return set()
