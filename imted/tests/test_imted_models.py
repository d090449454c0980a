"""Released configurations: parameter counts from the architecture, MAE loading, head parity, gradients."""

import pytest
import torch

from imted.convert import load_mae_into_detector, mae_to_imted
from imted.models import REGISTRY, random_init_share
from vlcore.checkpoint import CheckpointMismatchError

from imted.testing import detector, mae, tiny_detector, tiny_mae  # noqa: F401  (fixtures)


def _block(d: int) -> int:  # pre-norm ViT block, MLP ratio 4, qkv bias
    return 12 * d * d + 13 * d


def imted_params(d: int, depth: int, dd: int, ddepth: int, classes: int = 80, mask: bool = False) -> int:
    """Parameter count of an imTED detector from the architecture of the official configs."""
    encoder = (3 * 256 * d + d) + d + 197 * d + depth * _block(d)  # patch embed, cls, pos, blocks (no norm)
    pyramid = 3 * (4 * d * d + d) + 2 * d  # 3 ConvT(2, s2) + BatchNorm
    neck = 4 * (d * 256 + 2 * 256 + 9 * 256 * 256 + 2 * 256)  # 1x1 + LN, 3x3 + LN, no bias
    rpn = (9 * 256 * 256 + 256) + (256 * 3 + 3) + (256 * 12 + 12)
    mfm = (256 * d + d) + d
    head = 2 * d + (d * dd + dd) + ddepth * _block(dd) + 2 * dd  # enc norm, decoder_embed, blocks, box norm
    fc = (dd * (classes + 1) + classes + 1) + (dd * 4 * classes + 4 * classes)
    total = encoder + pyramid + neck + rpn + mfm + head + fc
    if mask:  # FCN mask head: 4 conv3x3, deconv, 1x1 logits
        total += 4 * (9 * 256 * 256 + 256) + (4 * 256 * 256 + 256) + (256 * classes + classes)
    return total


EXPECTED = {
    "imted_faster_rcnn_vit_small_3x_coco": dict(d=384, depth=12, dd=256, ddepth=4),
    "imted_faster_rcnn_vit_base_3x_coco": dict(d=768, depth=12, dd=512, ddepth=8),
    "imted_faster_rcnn_vit_large_3x_coco": dict(d=1024, depth=24, dd=512, ddepth=8),
    "imted_mask_rcnn_vit_small_3x_coco": dict(d=384, depth=12, dd=256, ddepth=4, mask=True),
    "imted_mask_rcnn_vit_base_3x_coco": dict(d=768, depth=12, dd=512, ddepth=8, mask=True),
    "imted_mask_rcnn_vit_large_3x_coco": dict(d=1024, depth=24, dd=512, ddepth=8, mask=True),
    "imted_faster_rcnn_vit_base_2x_base_training_coco": dict(d=768, depth=12, dd=512, ddepth=8, classes=60),
    "imted_faster_rcnn_vit_base_finetuning_30shot_coco": dict(d=768, depth=12, dd=512, ddepth=8),
}


@pytest.mark.config
@pytest.mark.slow
def test_released_configs_count_the_architecture_and_the_reference():
    rows = {r["name"]: r for r in REGISTRY.table()}
    assert set(rows) == set(EXPECTED)
    for name, arch in EXPECTED.items():
        assert rows[name]["params"] == imted_params(**arch), name
        assert rows[name]["matches_paper"], (name, rows[name]["params_m"], rows[name]["paper_params_m"])
    # ViT-B: 122.64 M in all, of which 11.23 M (9.2 %) start random when the whole MAE is loaded.
    assert rows["imted_faster_rcnn_vit_base_3x_coco"]["params_m"] == pytest.approx(122.64, abs=0.01)


@pytest.mark.unit
def test_mae_checkpoint_leaves_no_random_parameter_in_the_decoder_head(detector, mae):
    report = load_mae_into_detector(detector, mae.state_dict())
    head = detector.roi_head.bbox_head
    pretrained = ("norm.", "decoder_embed.", "decoder_blocks.")
    head_params = [n for n, _ in head.named_parameters() if n.startswith(pretrained)]
    assert head_params and all(f"roi_head.bbox_head.{n}" not in report["random"] for n in head_params)
    random_head = sorted(n for n in report["random"] if n.startswith("roi_head.bbox_head."))
    assert random_head == sorted(f"roi_head.bbox_head.{n}" for n in (
        "decoder_box_norm.weight", "decoder_box_norm.bias", "fc_cls.weight", "fc_cls.bias", "fc_reg.weight",
        "fc_reg.bias"))
    mae_sd = mae.state_dict()
    for n in head_params:
        assert torch.equal(head.state_dict()[n], mae_sd[n]), n
    assert torch.equal(head.decoder_pos_embed, mae_sd["decoder_pos_embed"])
    assert torch.equal(detector.backbone.blocks[1].mlp.fc2.weight, mae_sd["blocks.1.mlp.fc2.weight"])
    share = random_init_share(detector, report["loaded"])
    without = random_init_share(tiny_detector(), mae_to_imted(mae.state_dict(), load_decoder=False))
    assert 0 < share < without < 1


@pytest.mark.unit
def test_head_on_a_fixed_roi_equals_the_mae_decoder_on_the_same_tokens(detector, mae):
    load_mae_into_detector(detector, mae.state_dict())
    img = torch.randn(1, 3, 112, 112)
    rois = torch.tensor([[0.0, 0.0, 0.0, 112.0, 112.0]])  # the whole 7 x 7 token grid
    with torch.no_grad():
        x = detector.extract_feat(img)
        feats = detector.roi_head.bbox_roi_extractor([x[-1]], rois)  # 1, 96, 7, 7
        ours = detector.roi_head.bbox_head.forward_tokens(feats)  # 1, 49, 64
        # MAE with nothing masked and patches kept in order: encoder residual stream, then the decoder
        # path on the same 49 patch tokens (no class token, no mask tokens), as the head uses it.
        _, _, _, pre = mae.forward_encoder(img, mask_ratio=0.0, noise=torch.arange(49.0)[None],
                                           return_prenorm=True)
        ref = mae.decoder_embed(mae.norm(pre[:, 1:])) + mae.decoder_pos_embed[:, 1:]
        for blk in mae.decoder_blocks:
            ref = blk(ref)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # The randomly initialised head gives something else.
    fresh = tiny_detector()
    with torch.no_grad():
        other = fresh.roi_head.bbox_head.forward_tokens(feats)
    assert (other - ref).abs().max() > 1e-2


@pytest.mark.unit
def test_decoder_table_is_resized_to_the_roi_grid():
    model = tiny_detector(img_size=224, pretrain_grid=14)
    head = model.roi_head.bbox_head
    assert head.decoder_pos_embed.shape == (1, 197, 64)
    pe = head.roi_pos_embed()
    assert pe.shape == (1, 49, 64)
    # Bicubic resizing of a smooth table stays close to the table sampled at the matching positions.
    assert torch.isfinite(pe).all() and pe.abs().max() <= 1.2


@pytest.mark.unit
def test_encoder_only_checkpoint_is_refused(detector, mae):
    enc_only = {k: v for k, v in mae.state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
    with pytest.raises(CheckpointMismatchError, match="decoder"):
        load_mae_into_detector(detector, enc_only)
    report = load_mae_into_detector(detector, enc_only, load_decoder=False)
    assert "roi_head.bbox_head.decoder_embed.weight" in report["random"]


@pytest.mark.unit
def test_one_training_step_reaches_every_parameter():
    from mmdet.testing import demo_mm_inputs

    model = tiny_detector(img_size=224, pretrain_grid=14).train()
    with torch.no_grad():
        model.roi_head.mfm_factor.fill_(0.1)  # zero at init: only the gate itself would get a gradient
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 128, 160]], num_items=[3, 2], num_classes=80)
    data = model.data_preprocessor(packed, True)
    losses = model.loss(data["inputs"], data["data_samples"])
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
