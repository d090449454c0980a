"""LDA's network: a backbone, global average pooling, two linear heads and an optional neck.

    image -> backbone -> GAP -> z (B, d) -> head_u(z): unbalanced-domain logits g_u (training only)
                                         -> head(z):   balanced-domain logits g_b (the prediction)
                                         -> neck(z):   e (B, 128), for the intra/inter-class terms

`head` is g_b because LDA predicts with the balanced head; `head_u` and `neck`
can be dropped after training (`LDANet.deploy()`). With `dual_head=False` the
network is the plain single-head classifier of the baselines. Backbones are timm
ResNet / ResNeXt models (the paper's ImageNet-LT and Places-LT tables) or the
CIFAR ResNet-32 of this package; all expose `forward_features`.
"""

from __future__ import annotations

from typing import Literal

import timm
import torch
from torch import Tensor, nn

from lda.models.resnet_cifar import ResNetCifar
from lda.models.small_cnn import SmallCNN


class LinearNeck(nn.Module):
    """The official `LinearNeck` (2048 -> 128); `NonLinearNeck` adds a 512-d hidden layer with ReLU."""

    def __init__(self, in_features: int, out_features: int = 128, hidden: int | None = None):
        super().__init__()
        if hidden:
            self.layer_1 = nn.Linear(in_features, hidden)
            self.act = nn.ReLU()
            self.layer_2 = nn.Linear(hidden, out_features)
        else:
            self.layer_1 = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer_1(x)
        if hasattr(self, "layer_2"):
            x = self.layer_2(self.act(x))
        return x


def build_backbone(name: str, *, pretrained: bool = False) -> nn.Module:
    """A feature extractor without classifier: 'resnet32_cifar', 'bbn_resnet32_cifar', 'small_cnn' or a timm name."""
    if name == "resnet32_cifar":
        return ResNetCifar(depth=32)
    if name == "bbn_resnet32_cifar":
        return ResNetCifar(depth=32, bbn=True)
    if name == "small_cnn":
        return SmallCNN()
    if name == "small_cnn_s2":
        return SmallCNN(stem_stride=2)
    if name not in timm.list_models():
        raise ValueError(f"unknown backbone '{name}' (resnet32_cifar, bbn_resnet32_cifar, small_cnn, small_cnn_s2 or a timm model)")
    # Nothing is downloaded at run time: pretrained weights come through lda.convert / a checkpoint.
    if pretrained:
        raise ValueError("pretrained backbones are loaded from a local file (see `python -m lda.convert`), not downloaded")
    return timm.create_model(name, pretrained=False, num_classes=0, global_pool="")


class LDANet(nn.Module):
    def __init__(self, *, backbone: str = "resnext50_32x4d", num_classes: int = 1000, dual_head: bool = True,
                 neck_dim: int = 0, neck_hidden: int | None = None, head_bias: bool = True,
                 trainable: Literal["all", "last_block"] = "all"):
        super().__init__()
        self.backbone_name = backbone
        self.backbone = build_backbone(backbone)
        self.num_features = d = int(self.backbone.num_features)
        self.num_classes = num_classes
        self.dual_head = dual_head
        self.head = nn.Linear(d, num_classes, bias=head_bias)  # g_b, the balanced head
        self.head_u = nn.Linear(d, num_classes, bias=head_bias) if dual_head else None  # g_u
        self.neck = LinearNeck(d, neck_dim, neck_hidden) if neck_dim else None
        if trainable == "last_block":
            self.freeze_backbone_except_last_block()

    def freeze_backbone_except_last_block(self) -> None:
        """Places-LT protocol: an ImageNet ResNet-152 trained only in its last bottleneck (layer4[2])."""
        for p in self.backbone.parameters():
            p.requires_grad = False
        last = self.backbone.layer4[-1]
        for p in last.parameters():
            p.requires_grad = True

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)  # B, d, h, w

    def pool(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))  # B, d

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        z = self.pool(x)
        return z if pre_logits else self.head(z)

    def forward(self, x: Tensor) -> Tensor:
        """Balanced-head logits g_b (B, C): what LDA predicts with."""
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> dict[str, Tensor]:
        """Everything the training losses need: logits of both heads and the neck embedding."""
        z = self.forward_head(self.forward_features(x), pre_logits=True)  # B, d
        out = {"logits": self.head(z), "features": z}
        if self.head_u is not None:
            out["logits_u"] = self.head_u(z)
        if self.neck is not None:
            out["embed"] = self.neck(z)  # B, neck_dim
        return out

    def forward_intermediates(self, x: Tensor):
        return self.backbone.forward_intermediates(x)

    def deploy(self) -> "LDANet":
        """Drop what inference does not use (g_u and the neck): backbone + one linear head remain."""
        self.head_u, self.neck, self.dual_head = None, None, False
        return self

    def no_weight_decay(self) -> set[str]:
        # The official optimizer decays every parameter (BN and biases included).
        return set()

    def group_matcher(self, coarse: bool = False) -> dict:
        inner = self.backbone.group_matcher(coarse) if hasattr(self.backbone, "group_matcher") else {}
        out = {k: (f"^backbone\\.{v.lstrip('^')}" if isinstance(v, str) else v) for k, v in inner.items()}
        out["head"] = r"^head|^neck"
        return out


@torch.no_grad()
def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
