"""Official, mmpretrain and detector checkpoint layouts load into our model; round trips are exact."""

import argparse
import subprocess
import sys

import pytest
import torch

from vlcore.checkpoint import CheckpointError, CheckpointMismatchError, load_weights

from conformer import convert
from conformer.models import REGISTRY

from conformer.testing import TINY, one_torch_thread, randomize_, tiny_conformer  # noqa: F401

# Keys and shapes of the released Conformer-S/16 file (718 tensors), as listed on the paper card.
OFFICIAL_S16 = {
    "cls_token": (1, 1, 384),
    "conv1.weight": (64, 3, 7, 7),
    "conv_1.conv1.weight": (64, 64, 1, 1),
    "conv_1.residual_conv.weight": (256, 64, 1, 1),
    "trans_patch_conv.weight": (384, 64, 4, 4),
    "trans_1.attn.qkv.weight": (1152, 384),
    "conv_trans_2.cnn_block.conv2.weight": (64, 64, 3, 3),
    "conv_trans_2.fusion_block.conv3.weight": (256, 64, 1, 1),
    "conv_trans_2.squeeze_block.conv_project.weight": (384, 64, 1, 1),
    "conv_trans_2.squeeze_block.ln.weight": (384,),
    "conv_trans_2.expand_block.conv_project.weight": (64, 384, 1, 1),
    "conv_trans_2.expand_block.bn.running_mean": (64,),
    "conv_trans_2.trans_block.mlp.fc1.weight": (1536, 384),
    "conv_trans_5.cnn_block.residual_conv.weight": (512, 256, 1, 1),
    "trans_norm.weight": (384,),
    "trans_cls_head.weight": (1000, 384),
    "conv_cls_head.weight": (1000, 1024),
}


def _outputs(model, x):
    with torch.no_grad():
        return model.eval().forward_heads(x)


@pytest.mark.convert
def test_our_state_dict_is_the_official_key_layout():
    with torch.device("meta"):
        sd = REGISTRY.build("conformer_small_patch16_224").state_dict()
    assert len(sd) == 718
    for k, shape in OFFICIAL_S16.items():
        assert tuple(sd[k].shape) == shape, k
    with torch.device("meta"):
        s32 = REGISTRY.build("conformer_small_patch32_224").state_dict()
    assert tuple(s32["trans_patch_conv.weight"].shape) == (384, 64, 8, 8)  # P = 32 differs only here


@pytest.mark.convert
def test_official_training_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path):
    src = randomize_(tiny_conformer(), seed=1)
    ema = randomize_(tiny_conformer(), seed=2)
    # main.py's container: model, optimizer, lr_scheduler, epoch, model_ema and the argparse namespace.
    torch.save({"model": src.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {},
                "epoch": 299, "model_ema": ema.state_dict(), "args": argparse.Namespace(model="Conformer_tiny")},
               tmp_path / "official.pth")
    sd = convert.load_state_dict_any(tmp_path / "official.pth")
    model = convert.build_and_load(sd, num_heads=2)  # strict: raises on any missing / unexpected key
    assert sorted(sd) == sorted(src.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(_outputs(model, x), _outputs(src, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ema_sd = convert.load_state_dict_any(tmp_path / "official.pth", ema=True)
    torch.testing.assert_close(ema_sd["cls_token"], ema.cls_token.detach())
    # The configuration is read back from the shapes.
    cfg = convert.infer_config(sd)
    assert {k: cfg[k] for k in ("embed_dim", "depth", "patch_size", "channel_ratio", "num_classes")} == {
        "embed_dim": 32, "depth": 6, "patch_size": 16, "channel_ratio": 0.25, "num_classes": 7}


@pytest.mark.convert
def test_round_trip_through_every_layout_is_unchanged():
    model = randomize_(tiny_conformer(), seed=3)
    sd = model.state_dict()
    official = convert.ours_to_official(sd)
    mmpre = convert.ours_to_mmpretrain(sd)
    for back in (convert.official_to_ours(official), convert.mmpretrain_to_ours(mmpre), convert.to_ours(mmpre)):
        assert sorted(back) == sorted(sd)
        assert all(torch.equal(back[k], sd[k]) for k in sd)
    rebuilt = convert.build_and_load(convert.to_ours(official), num_heads=2)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(_outputs(rebuilt, x), _outputs(model, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.convert
def test_mmpretrain_file_with_their_names_loads(tmp_path):
    model = randomize_(tiny_conformer(), seed=4)
    theirs = convert.ours_to_mmpretrain(model.state_dict())
    # mmpretrain names, written out independently of the mapping table
    for k in ("backbone.trans_1.ln1.weight", "backbone.conv_trans_2.trans_block.ln2.bias",
              "backbone.conv_trans_2.trans_block.ffn.layers.0.0.weight",
              "backbone.conv_trans_6.trans_block.ffn.layers.1.bias", "backbone.conv_trans_2.trans_block.attn.qkv.weight",
              "backbone.trans_norm.weight", "head.conv_cls_head.weight", "head.trans_cls_head.bias"):
        assert k in theirs, k
    torch.save({"meta": {"mmcls_version": "0.19.0", "CLASSES": ["a", "b"]}, "state_dict": theirs},
               tmp_path / "mmpretrain.pth")
    assert convert.detect_layout(convert.unwrap(convert.read_checkpoint(tmp_path / "mmpretrain.pth"))) == "mmpretrain"
    loaded = convert.build_and_load(convert.load_state_dict_any(tmp_path / "mmpretrain.pth"), num_heads=2)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(_outputs(loaded, x), _outputs(model, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.convert
def test_detector_checkpoint_gives_the_backbone(tmp_path):
    model = randomize_(tiny_conformer(num_classes=0), seed=5)
    backbone = convert.ours_to_mmdet_backbone(model.state_dict(), prefix="backbone.")
    assert not any(k.startswith(("backbone.trans_norm", "backbone.conv_cls_head")) for k in backbone)
    det = {**backbone, "neck.lateral_convs.0.conv.weight": torch.zeros(8, 16, 1, 1),
           "roi_head.bbox_head.fc_cls.weight": torch.zeros(81, 16)}
    torch.save({"meta": {"mmdet_version": "2.8.0"}, "state_dict": det}, tmp_path / "faster_rcnn.pth")
    sd = convert.load_state_dict_any(tmp_path / "faster_rcnn.pth")
    assert convert.detect_layout(det) == "mmdet"
    rebuilt = convert.build_and_load(sd, num_heads=2)  # a backbone without heads: loads strictly too
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = rebuilt.eval().forward_intermediates(x, intermediates_only=True)
        b = model.eval().forward_intermediates(x, intermediates_only=True)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


@pytest.mark.convert
def test_bad_checkpoints_fail_with_a_clear_error(tmp_path):
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a Conformer checkpoint"):
        convert.load_state_dict_any(tmp_path / "other.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no 'model / state_dict / module' state dict"):
        convert.load_state_dict_any(tmp_path / "empty.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="Unsupported global"):
        convert.read_checkpoint(tmp_path / "evil.pth")
    sd = tiny_conformer().state_dict()
    sd.pop("conv_trans_3.squeeze_block.ln.weight")
    with pytest.raises(CheckpointMismatchError, match="1 missing"):
        convert.build_and_load(sd)


@pytest.mark.convert
def test_convert_cli_writes_ours_and_mmdet_backbone(tmp_path, capsys):
    model = randomize_(tiny_conformer(), seed=6)
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    with pytest.raises(SystemExit) as e:
        from vlcore.cli import run_cli

        run_cli(convert.main, ["--src", str(tmp_path / "bare.pth"), "--dst", str(tmp_path / "ours.safetensors"),
                               "--num-heads", "2"])
    assert e.value.code == 0
    assert "official layout" in capsys.readouterr().out
    ours = load_weights(tmp_path / "ours.safetensors")
    assert all(torch.equal(ours[k], v) for k, v in model.state_dict().items())
    assert convert.main(["--src", str(tmp_path / "ours.safetensors"), "--dst", str(tmp_path / "bb.pth"),
                         "--to", "mmdet-backbone", "--num-heads", "2"]) == 0
    bb = torch.load(tmp_path / "bb.pth", weights_only=True)
    assert "conv_cls_head.weight" not in bb and "trans_norm.weight" not in bb and "cls_token" in bb
    # Bad input: one line, exit status 2.
    out = subprocess.run([sys.executable, "-m", "conformer.convert", "--src", str(tmp_path / "nope.pth"),
                          "--dst", str(tmp_path / "x.safetensors")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error:") and "nope.pth" in out.stderr
