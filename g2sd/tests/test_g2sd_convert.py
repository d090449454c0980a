"""Converters: official G2SD / MAE / detectron2 / mmseg 0.x layouts -> our models, on tiny checkpoints."""

import argparse
import pickle

import numpy as np
import pytest
import torch

from vlcore.checkpoint import CheckpointError

from g2sd.convert import (
    detectron2_to_mmdet,
    main as convert_main,
    mae_encoder_to_vitdet,
    mmdet_to_detectron2,
    mmseg0_to_mmseg1,
    read_any_state_dict,
    read_detectron2_pickle,
)
from g2sd.engine.stages import init_classifier_from_pretrained, load_classifier
from g2sd.models import build_classifier
from g2sd.testing import tiny_batch, tiny_student


def official_gd_keys(depth: int, dec_depth: int) -> set[str]:
    """Names in an official GD student checkpoint (G2SD/models_mae.py, teacher=False)."""
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
            "mask_token", "decoder_embed.weight", "decoder_embed.bias", "decoder_pos_embed", "decoder_norm.weight",
            "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    keys |= {f"{p}.{f}.{w}" for p in ("decoderfeature_pred", "encoderfeature_pred") for f in ("fc1", "fc2")
             for w in ("weight", "bias")}
    keys |= {f"blocks.{i}.{b}" for i in range(depth) for b in block}
    keys |= {f"decoder_blocks.{i}.{b}" for i in range(dec_depth) for b in block}
    return keys


def save_official(obj_model: dict, path):
    # The official save_model: {'model', 'optimizer', 'epoch', 'scaler', 'args' (a Namespace)}
    torch.save({"model": obj_model, "optimizer": {"state": {}}, "epoch": 299, "scaler": {"scale": 65536.0},
                "args": argparse.Namespace(model="mae_vit_small_patch16_dec256d4b", layer_index=4)}, path)


@pytest.mark.convert
def test_official_gd_checkpoint_loads_into_student_and_classifier(tmp_path):
    torch.manual_seed(0)
    s = tiny_student()
    assert set(s.state_dict()) == official_gd_keys(2, 2)
    path = tmp_path / "ViT_S_GD.pth"
    save_official(s.state_dict(), path)
    fresh = tiny_student()
    fresh.load_state_dict(read_any_state_dict(path), strict=True)
    x, noise = tiny_batch()
    with torch.no_grad():
        assert torch.equal(s(x, noise)["decoder"], fresh(x, noise)["decoder"])
    # GD -> distillation-token classifier: the encoder loads, only the new heads / token stay fresh.
    clf = build_classifier(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32, num_classes=10, distilled=True)
    missing = init_classifier_from_pretrained(clf, str(path))
    assert sorted(missing) == ["dist_token", "head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    assert torch.equal(clf.pos_embed, s.pos_embed) and clf.pos_embed.requires_grad  # fixed table -> learnable
    assert clf.head.weight.std() < 1e-4  # MAE / G2SD fine-tuning head init (std 2e-5)
    with torch.no_grad():
        assert torch.allclose(clf.blocks(clf.patch_embed(x) + clf.pos_embed[:, 1:]),
                              s.blocks(s.patch_embed(x) + s.pos_embed[:, 1:]))


@pytest.mark.convert
def test_official_sd_classifier_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    clf = build_classifier(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32, num_classes=10, distilled=True)
    sd = clf.state_dict()
    assert {"dist_token", "head.weight", "head_dist.weight", "cls_token", "pos_embed", "norm.weight"} <= set(sd)
    path = tmp_path / "ViT_S_SD.pth"
    save_official(sd, path)
    fresh = build_classifier(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32, num_classes=10,
                             distilled=True).eval()
    load_classifier(fresh, str(path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), clf.eval()(x))


@pytest.mark.convert
def test_weights_only_reading_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    bad = tmp_path / "bad.pth"
    torch.save({"model": {"w": torch.ones(1)}, "hook": Evil()}, bad)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_any_state_dict(bad)
    pkl = tmp_path / "bad.pkl"
    pkl.write_bytes(pickle.dumps({"model": {"w": np.ones(1)}, "x": Evil()}))
    with pytest.raises(CheckpointError, match="refused global"):
        read_detectron2_pickle(pkl)


@pytest.mark.convert
def test_mmengine_checkpoint_with_message_hub_is_readable(tmp_path):
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    hb = HistoryBuffer()
    hb.update(0.5)
    path = tmp_path / "iter_10.pth"
    torch.save({"meta": {"message_hub": {"log_scalars": {"train/loss": hb}}, "cfg": ConfigDict(a=1),
                         "seed": np.int64(3)},
                "state_dict": {"backbone.w": torch.zeros(2)}}, path)
    # Reading must leave mmengine's process-wide statistics table alone (later runs log through it),
    # also once the plug-ins have registered HistoryBuffer as a safe global for their own resumes.
    from vlcore.mmrun import allow_mmengine_checkpoints

    methods = dict(HistoryBuffer._statistics_methods)
    for allowed in (False, True):
        if allowed:
            allow_mmengine_checkpoints()
        assert list(read_any_state_dict(path)) == ["backbone.w"]
        assert HistoryBuffer._statistics_methods == methods
        assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics("mean") == 2.0


@pytest.mark.convert
def test_mae_encoder_initialises_vitdet_backbone():
    from g2sd.mmdet.vitdet import ViTDet, load_vitdet_encoder

    torch.manual_seed(3)
    s = tiny_student(img_size=224, patch_size=16)
    bb = ViTDet(img_size=64, embed_dim=32, depth=2, num_heads=2, window_size=2, global_blocks=(1,))
    missing = load_vitdet_encoder(bb, mae_encoder_to_vitdet(s.state_dict()))
    assert missing and all("rel_pos" in k for k in missing)
    assert torch.equal(bb.blocks[1].attn.qkv.weight, s.blocks[1].attn.qkv.weight)
    # Relative tables start at zero, so at 14 x 14 with global attention the blocks compute plain ViT attention.
    assert all(float(p.abs().sum()) == 0 for n, p in bb.named_parameters() if "rel_pos" in n)


def _d2_names_of_official_layout() -> list[str]:
    """Key names a detectron2 ViTDet Mask R-CNN checkpoint holds (mask_rcnn_vitdet.py + G2SD's adapter)."""
    return [
        "backbone.net.pos_embed", "backbone.net.patch_embed.proj.weight", "backbone.net.blocks.0.attn.rel_pos_h",
        "backbone.net.blocks.0.attn.qkv.weight", "backbone.net.blocks.1.mlp.fc2.bias",
        "backbone.simfp_2.0.weight", "backbone.simfp_2.1.weight", "backbone.simfp_2.3.weight",
        "backbone.simfp_2.4.weight", "backbone.simfp_2.4.norm.weight", "backbone.simfp_2.5.norm.bias",
        "backbone.simfp_5.1.weight", "backbone.simfp_5.2.norm.weight",
        "proposal_generator.rpn_head.conv.conv0.weight", "proposal_generator.rpn_head.conv.conv1.bias",
        "proposal_generator.rpn_head.objectness_logits.weight", "proposal_generator.rpn_head.anchor_deltas.weight",
        "roi_heads.box_head.conv1.weight", "roi_heads.box_head.conv1.norm.weight", "roi_heads.box_head.conv4.norm.bias",
        "roi_heads.box_head.fc1.weight", "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.mask_head.mask_fcn1.weight",
        "roi_heads.mask_head.mask_fcn4.norm.weight", "roi_heads.mask_head.deconv.weight",
        "roi_heads.mask_head.predictor.weight", "stu_adapter.conv.0.weight", "stu_adapter.conv.4.bias",
    ]


@pytest.mark.convert
def test_detectron2_checkpoint_converts_to_the_mmdet_plugin(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import g2sd.mmdet  # noqa: F401
    from g2sd.convert import load_detector_checkpoint
    from g2sd.verify import PACKAGE_ROOT

    register_all_modules()
    cfg = Config.fromfile(str(PACKAGE_ROOT / "configs/mmdet/g2sd-frs_vitdet-mask-rcnn_vit-tiny_1xb2-smoke_coco-mini-256.py"))
    torch.manual_seed(4)
    det = MODELS.build(cfg.model).eval()
    student = {k: v for k, v in det.state_dict().items() if not k.startswith("teacher.")}
    d2 = mmdet_to_detectron2(student)
    assert set(_d2_names_of_official_layout()) <= set(d2), sorted(set(_d2_names_of_official_layout()) - set(d2))
    # As detectron2 stores it: a pickle of numpy arrays, plus the pixel statistics.
    d2 = {k: v.numpy() for k, v in d2.items()}
    d2.update(pixel_mean=np.zeros((3, 1, 1), np.float32), pixel_std=np.ones((3, 1, 1), np.float32))
    pkl = tmp_path / "model_final.pkl"
    pkl.write_bytes(pickle.dumps({"model": d2, "__author__": "test"}))
    back = detectron2_to_mmdet(read_detectron2_pickle(pkl))
    assert back.keys() == student.keys()
    # The command line writes the same tensors as safetensors, and names a wrong output suffix.
    assert convert_main(["det", str(pkl), str(tmp_path / "det.safetensors")]) == 0
    assert read_any_state_dict(tmp_path / "det.safetensors").keys() == student.keys()
    with pytest.raises(Exception, match="safetensors"):
        convert_main(["det", str(pkl), str(tmp_path / "det.pth")])
    fresh = MODELS.build(cfg.model).eval()
    load_detector_checkpoint(fresh.teacher, {k[len("teacher."):]: v for k, v in det.state_dict().items()
                                             if k.startswith("teacher.")})
    fresh.load_state_dict(dict(back, **{k: v for k, v in fresh.state_dict().items() if k.startswith("teacher.")}))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(det.extract_feat(x), fresh.extract_feat(x)):
            assert torch.equal(a, b)
        assert torch.equal(det.rpn_head(det.extract_feat(x))[0][0], fresh.rpn_head(fresh.extract_feat(x))[0][0])


def _mmseg1_to_official(sd: dict) -> dict:
    """Our mmseg 1.x names -> the official mmseg 0.x BEiT-style names (written independently of the converter)."""
    out = {}
    for k, v in sd.items():
        n = k
        n = n.replace("backbone.patch_embed.projection.", "backbone.patch_embed.proj.")
        n = n.replace("backbone.layers.", "backbone.blocks.")
        n = n.replace(".ln1.", ".norm1.").replace(".ln2.", ".norm2.")
        n = n.replace(".ffn.layers.0.0.", ".mlp.fc1.").replace(".ffn.layers.1.", ".mlp.fc2.")
        n = n.replace("neck.upsample_4x.", "backbone.fpn1.").replace("neck.upsample_2x.", "backbone.fpn2.")
        out["student." + n] = v
    out["teacher.backbone.cls_token"] = torch.zeros(1)  # a distiller checkpoint holds the teacher too
    return out


@pytest.mark.convert
def test_official_segmentation_checkpoint_converts_to_mmseg1():
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import g2sd.mmseg  # noqa: F401
    from g2sd.convert import load_segmentor_checkpoint
    from g2sd.verify import PACKAGE_ROOT

    register_all_modules()
    cfg = Config.fromfile(str(PACKAGE_ROOT / "configs/mmseg/upernet_mae-tiny_1xb2-smoke_coco-mini-128.py"))
    torch.manual_seed(5)
    seg = MODELS.build(cfg.model).eval()
    official = _mmseg1_to_official(seg.state_dict())
    assert "student.backbone.blocks.0.attn.relative_position_bias_table" in official
    assert "student.backbone.blocks.0.gamma_1" in official and "student.backbone.fpn1.1.running_mean" in official
    fresh = MODELS.build(cfg.model).eval()
    load_segmentor_checkpoint(fresh, official)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(seg.decode_head(seg.extract_feat(x)), fresh.decode_head(fresh.extract_feat(x)))
    assert not any(k.startswith("teacher.") for k in mmseg0_to_mmseg1(official))
