"""Registered configurations: parameter counts, shapes, gradients, the timm-style API."""

import pytest
import timm
import torch

from lda.models import REGISTRY, LDANet, ResNetCifar


def resnet32_params(bbn: bool = False) -> int:
    """Hand count of He et al.'s CIFAR ResNet-32 (option-A shortcuts have no parameters)."""
    total, cin = 3 * 16 * 9 + 2 * 16, 16
    for planes, blocks in ((16, 5), (32, 5), (64, 4 if bbn else 5)):
        for _ in range(blocks):
            total += cin * planes * 9 + planes * planes * 9 + 4 * planes
            cin = planes
    if bbn:
        total += 2 * (2 * 64 * 64 * 9 + 4 * 64)
    return total


def heads(d: int, c: int, neck: int = 0) -> int:
    return 2 * (d * c + c) + (d * neck + neck if neck else 0)


@pytest.mark.unit
def test_registered_counts_match_the_official_networks():
    rows = {r["name"]: r for r in REGISTRY.table()}
    assert all(r["matches_paper"] for r in rows.values() if r["paper_params_m"] is not None)
    # Independent counts: timm backbones without their classifier + the official heads / neck.
    with torch.device("meta"):
        rx = timm.create_model("resnext50_32x4d", num_classes=0)
        r152 = timm.create_model("resnet152", num_classes=0)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert rows["lda_resnext50_32x4d_imagenet_lt"]["params"] == n(rx) + heads(2048, 1000, 128) == 27_340_176
    assert rows["lda_resnet152_places_lt"]["params"] == n(r152) + heads(2048, 365)
    assert rows["lda_resnet32_cifar10_lt"]["params"] == resnet32_params() + heads(64, 10)
    assert rows["lda_bbn_resnet32_cifar10_lt"]["params"] == resnet32_params(bbn=True) + heads(128, 10)
    assert rows["lda_resnet32_cifar100_lt"]["params"] == resnet32_params() + heads(64, 100)
    assert round(resnet32_params() / 1e6, 2) == 0.46  # He et al.'s table: ResNet-32 has 0.46 M


@pytest.mark.unit
def test_places_recipe_trains_only_the_last_bottleneck_and_heads():
    with torch.device("meta"):
        m = REGISTRY.build("lda_resnet152_places_lt")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"backbone", "head", "head_u"}
    assert all(n.startswith("backbone.layer4.2.") for n in trainable if n.startswith("backbone"))
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad]
    assert all(n.startswith("backbone.") for n in frozen) and "backbone.layer4.1.conv1.weight" in frozen
    bottleneck = sum(p.numel() for n, p in m.named_parameters() if n.startswith("backbone.layer4.2."))
    assert round(bottleneck / 1e6, 2) == 4.46  # 1x1 2048->512, 3x3 512->512, 1x1 512->2048 + BN


@pytest.mark.unit
@pytest.mark.parametrize("bbn", [False, True])
def test_cifar_resnet_shapes_and_option_a_shortcut(bbn):
    m = ResNetCifar(depth=32, bbn=bbn, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_intermediates(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (128 if bbn else 64, 8, 8)]
    assert m(x).shape == (2, 10)
    block = m.layer2[0]
    s = block.shortcut(torch.ones(1, 16, 4, 4))
    assert s.shape == (1, 32, 2, 2) and s[:, :8].abs().sum() == 0 and s[:, 8:24].eq(1).all() and s[:, 24:].abs().sum() == 0


@pytest.mark.unit
def test_lda_net_outputs_and_gradients_reach_every_parameter():
    from lda.engine.losses import LDALoss, LDALossConfig

    torch.manual_seed(0)
    m = REGISTRY.build("lda_small_cnn_cifar10_mini")
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    out = m.forward_train(x)
    assert out["logits"].shape == out["logits_u"].shape == (16, 10) and out["embed"].shape == (16, 32)
    assert torch.equal(m(x), out["logits"])  # inference predicts with the balanced head g_b
    loss_fn = LDALoss([50, 40, 30, 20, 10, 8, 6, 4, 2, 1], LDALossConfig(fixed_alpha=1.0))
    loss, _ = loss_fn(out["logits_u"], out["logits"], y, out["embed"])
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    m.deploy()
    assert m.head_u is None and m.neck is None and m(x).shape == (16, 10)
    single = LDANet(backbone="small_cnn", num_classes=10, dual_head=False)
    assert single.head_u is None and "logits_u" not in single.forward_train(x)


@pytest.mark.unit
def test_timm_backbone_feeds_the_heads_and_exposes_group_matcher():
    m = LDANet(backbone="resnet18", num_classes=7, neck_dim=16)
    out = m.forward_train(torch.randn(2, 3, 64, 64))
    assert out["features"].shape == (2, 512) and out["embed"].shape == (2, 16)
    g = m.group_matcher()
    assert g["head"] == r"^head|^neck" and g["stem"].startswith("^backbone\\.")
    with pytest.raises(ValueError, match="unknown backbone"):
        LDANet(backbone="resnet_does_not_exist")
