"""Official LDA checkpoint layout and torchvision weights -> LDANet, with identical outputs."""

import numpy as np
import pytest
import torch

from lda.convert import load_official_into, main as convert_main, official_to_ours, ours_to_official, read_official
from lda.models import REGISTRY, LDANet
from vlcore.checkpoint import CheckpointError, load_weights


def official_checkpoint(model: LDANet, path, with_neck: bool = True):
    """What the official train.py writes: DataParallel keys, NumPy best_result, optimizer / scheduler states."""
    sd = ours_to_official(model.state_dict())
    if not with_neck:
        sd = {k: v for k, v in sd.items() if ".neck." not in k}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    torch.save({"state_dict": sd, "epoch": 90, "best_result": np.float64(0.4321), "best_epoch": 88,
                "scheduler": {"last_epoch": 90, "base_lrs": [0.1]}, "optimizer": opt.state_dict()}, path)
    return sd


@pytest.mark.convert
def test_official_cifar_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    src = REGISTRY.build("lda_bbn_resnet32_cifar10_lt").eval()
    for m in src.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    sd = official_checkpoint(src, tmp_path / "best_model.pth")
    assert "module.backbone.cb_block.conv1.weight" in sd and "module.classifier.1.weight" in sd
    dst = REGISTRY.build("lda_bbn_resnet32_cifar10_lt").eval()
    meta = load_official_into(dst, tmp_path / "best_model.pth")
    assert meta["epoch"] == 90 and float(meta["best_result"]) == pytest.approx(0.4321)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
        assert torch.equal(src.head_u(src.forward_head(src.forward_features(x), pre_logits=True)),
                           dst.head_u(dst.forward_head(dst.forward_features(x), pre_logits=True)))


@pytest.mark.convert
def test_official_imagenet_layout_with_neck_maps_every_key():
    with torch.device("meta"):
        m = REGISTRY.build("lda_resnext50_32x4d_imagenet_lt")
    official = ours_to_official(m.state_dict())
    # The keys the official ImageNet-LT checkpoint holds (the official ImageNet-LT checkpoint layout).
    assert {"module.backbone.conv1.weight", "module.backbone.layer1.0.conv2.weight", "module.backbone.layer4.2.bn3.running_var",
            "module.classifier.0.weight", "module.classifier.1.weight", "module.neck.layer_1.weight"} <= set(official)
    assert tuple(official["module.backbone.layer1.0.conv2.weight"].shape) == (128, 4, 3, 3)
    assert tuple(official["module.neck.layer_1.weight"].shape) == (128, 2048)
    back = official_to_ours(official)
    assert set(back) == set(m.state_dict())
    with pytest.raises(CheckpointError, match="unexpected key 'module.fc_add.weight'"):
        official_to_ours({"module.fc_add.weight": torch.zeros(1)})


@pytest.mark.convert
def test_convert_cli_deploy_and_torchvision_backbone(tmp_path, capsys):
    torch.manual_seed(1)
    src = REGISTRY.build("lda_resnet32_cifar10_lt").eval()
    official_checkpoint(src, tmp_path / "ck.pth", with_neck=False)
    out = tmp_path / "deploy.safetensors"
    assert convert_main(["--src", str(tmp_path / "ck.pth"), "--model", "lda_resnet32_cifar10_lt", "--out", str(out),
                         "--deploy"]) == 0
    assert "official epoch 90, best 0.4321" in capsys.readouterr().out
    sd = load_weights(out)
    assert not any(k.startswith(("head_u.", "neck.")) for k in sd)
    dst = REGISTRY.build("lda_resnet32_cifar10_lt").deploy().eval()
    dst.load_state_dict(sd)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    # torchvision-style ImageNet weights (a ResNet-18 here) initialise the backbone; `fc` is dropped.
    import timm

    tv = timm.create_model("resnet18", num_classes=1000).state_dict()
    torch.save(tv, tmp_path / "resnet18.pth")
    m = LDANet(backbone="resnet18", num_classes=5)
    from lda.convert import load_into

    load_into(m, tmp_path / "resnet18.pth", strict=False)
    assert torch.equal(m.backbone.conv1.weight, tv["conv1.weight"])


@pytest.mark.convert
def test_refuses_checkpoints_with_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": {}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_official(tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_official(tmp_path / "missing.pth")
