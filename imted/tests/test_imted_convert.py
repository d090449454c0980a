"""Official formats: an MAE file into the detector, an official imTED (mmdet 2.x) checkpoint, the CLI."""

import pytest
import torch

from imted.convert import convert_official_imted, main
from vlcore.checkpoint import CheckpointMismatchError, load_weights

from imted.testing import SMOKE, tiny_detector, tiny_mae


def _outputs(model, img):
    with torch.no_grad():
        x = model.extract_feat(img)
        rois = torch.tensor([[0.0, 8.0, 8.0, 96.0, 80.0], [0.0, 0.0, 0.0, 112.0, 112.0]])
        return model.roi_head._bbox_forward(x, rois)


@pytest.mark.convert
def test_official_imted_checkpoint_converts_with_identical_outputs(tmp_path):
    src = tiny_detector()
    with torch.no_grad():
        src.roi_head.mfm_factor.normal_()  # make the multi-scale path matter
    # The mmdet 2.x layout: {'meta': ..., 'state_dict': ..., 'optimizer': ...}; older files lack
    # BatchNorm's num_batches_tracked.
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "imted_official.pth"
    torch.save({"meta": {"epoch": 36, "mmdet_version": "2.11.0", "CLASSES": ("person",)}, "state_dict": sd,
                "optimizer": {}}, path)
    dst = tiny_detector()
    dst.load_state_dict(convert_official_imted(path, dst), strict=True)
    img = torch.randn(1, 3, 112, 112)
    a, b = _outputs(src, img), _outputs(dst, img)
    torch.testing.assert_close(a["cls_score"], b["cls_score"], atol=0, rtol=0)
    torch.testing.assert_close(a["bbox_pred"], b["bbox_pred"], atol=0, rtol=0)

    bad = dict(sd)
    bad.pop("roi_head.mfm_factor")
    with pytest.raises(CheckpointMismatchError, match="mfm_factor"):
        convert_official_imted(bad, tiny_detector())


@pytest.mark.convert
def test_mae_file_through_the_cli(tmp_path):
    mae = tiny_mae(img_size=224)
    src = tmp_path / "mae_pretrain_full.pth"
    torch.save({"model": mae.state_dict()}, src)  # the official MAE container
    out = tmp_path / "imted.safetensors"
    from imted.models import CONFIG_DIR

    assert main(["mae", str(src), str(out), "--config", str(CONFIG_DIR / SMOKE)]) == 0
    sd = load_weights(out)
    assert torch.equal(sd["roi_head.bbox_head.decoder_blocks.0.attn.qkv.weight"],
                       mae.state_dict()["decoder_blocks.0.attn.qkv.weight"])
    assert torch.equal(sd["roi_head.bbox_head.norm.weight"], mae.state_dict()["norm.weight"])
    assert torch.equal(sd["backbone.pos_embed"], mae.state_dict()["pos_embed"])
