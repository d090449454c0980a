"""Pretraining views and masks, data errors, and the mini pipeline's pieces."""

import numpy as np
import pytest
import torch
from PIL import Image

from vlcore.data import DataNotFoundError

from beit2.data import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset, MIMTransform
from beit2.mini import MiniConfig, PatchPixels, TeacherCNN, linear_probe, load_mini_data


@pytest.mark.unit
def test_mim_views_share_one_crop_and_masks_have_exactly_75_patches():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 260, 3), dtype=np.uint8))
    tf = MIMTransform(seed=0, color_jitter=0.0)
    torch.manual_seed(0)
    view, tok, mask = tf(img)
    assert view.shape == tok.shape == (3, 224, 224) and mask.shape == (196,) and int(mask.sum()) == 75
    # same box, same size, same interpolation: the ViT view is the tokenizer view, normalised
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(view * std + mean, tok, atol=1e-5)
    assert 0.0 <= tok.min() and tok.max() <= 1.0  # the tokenizer gets [0, 1], never mean/std-normalised
    masks = torch.stack([tf(img)[2] for _ in range(20)])
    assert (masks.sum(1) == 75).all() and masks.float().mean(0).std() > 0  # masks differ between calls


@pytest.mark.unit
def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataNotFoundError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "cls").mkdir()
    with pytest.raises(DataNotFoundError, match="no images"):
        ImageFolderDataset(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "b.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "a.png")
    ds = ImageFolderDataset(tmp_path, limit=1)
    assert len(ds) == 1 and ds.samples[0][0].name == "a.png"


@pytest.mark.unit
def test_pixel_targets_teacher_grid_and_probe():
    x = torch.rand(2, 3, 32, 32)
    t = PatchPixels(8)(x)
    assert t.shape == (2, 16, 192)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.equal(PatchPixels(8)(x)[0, 1], PatchPixels(8)(x[:, :, :8, 8:16])[0, 0])  # patch order: row-major
    assert TeacherCNN(16, 10)(x).shape == (2, 32, 4, 4)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    f = torch.randn(300, 8, generator=g) + 6.0 * torch.nn.functional.one_hot(y, 8).float()
    r = linear_probe(f[:200], y[:200], f[200:], y[200:], classes=3)
    assert r["top1"] > 95 and r["wd"] in (1e-4, 1e-3, 1e-2)


@pytest.mark.unit
def test_mini_data_splits_are_disjoint_and_balanced():
    from vlcore.data import shared_data_root

    if not (shared_data_root() / "cifar10").is_dir():
        pytest.skip("CIFAR-10 subset not in the shared data")
    d = load_mini_data(MiniConfig(), data_root=None, seed=0)
    assert d.source.startswith("real: CIFAR-10")
    assert len(d.teacher_y) == 1500 and torch.bincount(d.teacher_y).tolist() == [150] * 10
    assert len(d.probe_y) == 3500 and len(d.test_y) == 1000 and len(d.pretrain) == 5000
    flat = lambda t: {bytes(r.numpy()) for r in (t * 255).round().to(torch.uint8).flatten(1)}  # noqa: E731
    assert not flat(d.teacher_x) & flat(d.probe_x)  # the probe never sees the teacher's labelled images
