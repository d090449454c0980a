"""Tiny imTED models shared by imted/tests (here, not in a conftest.py: every paper's tests folder is
the package ``tests``, so two conftest modules would collide)."""

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

SMOKE = "imted_faster-rcnn_vit-tiny_1xb2-smoke_coco-mini-320.py"


def tiny_detector(img_size: int = 112, pretrain_grid: int = 7, **overrides):
    """The smoke-config detector (96-d 2-block encoder, one 64-d decoder block as the box head)."""
    from imted.models import build_from_config

    torch.manual_seed(0)
    model = build_from_config(SMOKE, backbone=dict(img_size=img_size),
                              roi_head=dict(bbox_head=dict(pretrain_grid=pretrain_grid)), **overrides)
    model.init_weights()
    return model.eval()


def tiny_mae(img_size: int = 112):
    """An MAE whose encoder / decoder match the smoke detector's backbone / box head."""
    from vlcore.models.mae import MaskedAutoencoderViT

    torch.manual_seed(1)
    mae = MaskedAutoencoderViT(img_size=img_size, patch_size=16, embed_dim=96, depth=2, num_heads=3,
                               decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)
    # Non-trivial LayerNorm affine parameters, so a missed norm would show in the outputs.
    with torch.no_grad():
        for n, p in mae.named_parameters():
            if "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    return mae.eval()


@pytest.fixture
def detector():
    return tiny_detector()


@pytest.fixture
def mae():
    return tiny_mae()
