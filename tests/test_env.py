"""The environment holds the whole stack, with mmcv's compiled CPU ops."""

import importlib

import pytest
import torch


@pytest.mark.unit
@pytest.mark.parametrize(
    "mod", ["mmcv.ops", "mmdet", "mmseg", "timm", "transformers", "diffusers", "accelerate", "safetensors", "pycocotools.coco"]
)
def test_stack_imports(mod):
    assert importlib.import_module(mod) is not None


@pytest.mark.unit
def test_mmcv_roi_align_matches_torchvision():
    from mmcv.ops import RoIAlign
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 24, 32, generator=g)
    xy = torch.rand(12, 2, generator=g) * torch.tensor([100.0, 70.0])
    wh = torch.rand(12, 2, generator=g) * 40 + 4
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=g).float(), xy, xy + wh], dim=1)  # K, (b, x1, y1, x2, y2)
    ours = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)(feats, rois)
    ref = roi_align(feats, rois, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    assert ours.shape == (12, 8, 7, 7)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.unit
def test_mmcv_nms_matches_torchvision():
    from mmcv.ops import nms
    from torchvision.ops import nms as tv_nms

    g = torch.Generator().manual_seed(1)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 30 + 1], 1)
    scores = torch.rand(200, generator=g)
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    ref = tv_nms(boxes, scores, 0.5)
    assert torch.equal(keep.sort().values, ref.sort().values)
