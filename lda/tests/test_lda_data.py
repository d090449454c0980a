"""Long-tailed data: the CIFAR-LT counts, split-file readers, shot groups and their metrics."""

import json

import numpy as np
import pytest
import torch

from lda.data.cifar_lt import TensorSplit, augment, cifar10_lt
from lda.data.longtail import shot_groups
from lda.data.splits import SplitImageDataset, places_large_path, read_inaturalist_json, read_split, read_split_txt
from lda.metrics import shot_accuracy
from vlcore.data.cifar import long_tail_counts, long_tail_indices
from vlcore.data.paths import DataFormatError, shared_data_root

# Per-class counts of the standard CIFAR-10-LT (LDAM / LDA `imbalance_cifar.py`: int(5000 * ratio^(c/9))).
STANDARD_CIFAR10_LT = {
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    50: [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
}


@pytest.mark.unit
@pytest.mark.parametrize("imbalance", [10, 50, 100])
def test_subsampler_reproduces_standard_cifar10_lt_counts(imbalance):
    assert long_tail_counts(n_max=5000, num_classes=10, imbalance_factor=imbalance) == STANDARD_CIFAR10_LT[imbalance]
    # The same through the index sampler on a balanced 5000-per-class label array.
    labels = np.repeat(np.arange(10), 5000)
    idx = long_tail_indices(labels, imbalance_factor=imbalance, num_classes=10)
    assert np.bincount(labels[idx], minlength=10).tolist() == STANDARD_CIFAR10_LT[imbalance]
    assert len(np.unique(idx)) == len(idx)


@pytest.mark.unit
def test_subsampler_matches_ldam_for_cifar100_lt_too():
    for imbalance in (10, 50, 100):
        want = [int(500 * (1 / imbalance) ** (c / 99)) for c in range(100)]
        assert long_tail_counts(n_max=500, num_classes=100, imbalance_factor=imbalance) == want


@pytest.mark.unit
def test_shot_groups_use_the_official_thresholds():
    g = shot_groups([500, 101, 100, 20, 19, 1])
    assert (g.many, g.medium, g.few) == ((0, 1), (2, 3), (4, 5))
    assert g.as_array(6).tolist() == [2, 2, 1, 1, 0, 0]  # the official class_cate_index codes
    # The mini reproduction's profile: many = 0-3, medium = 4-6, few = 7-9.
    g = shot_groups([500, 299, 179, 107, 64, 38, 23, 13, 8, 5])
    assert (g.many, g.medium, g.few) == ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))


@pytest.mark.unit
def test_shot_accuracy_by_hand():
    counts = [200, 150, 50, 30, 10]  # many 0-1, medium 2-3, few 4
    target = [0, 0, 1, 2, 2, 3, 4, 4, 4, 4]
    pred = [0, 1, 1, 2, 0, 3, 4, 0, 0, 4]
    m = shot_accuracy(pred, target, counts)
    assert m == pytest.approx({"overall": 60.0, "many": 200 / 3, "medium": 200 / 3, "few": 50.0})
    assert np.isnan(shot_accuracy([0], [0], [300, 300])["few"])  # an empty group is NaN, not 0


@pytest.mark.unit
def test_split_txt_reader_formats_and_errors(tmp_path):
    f = tmp_path / "ImageNet_LT_train.txt"
    f.write_text("train/n01440764/n01440764_10026.JPEG 0\ntrain/n01443537/x.JPEG 1\n\ntrain/n01443537/y.JPEG 1\n")
    s = read_split_txt(f)
    assert s.paths[0] == "train/n01440764/n01440764_10026.JPEG" and s.labels.tolist() == [0, 1, 1]
    assert s.class_counts() == [1, 2] and s.num_classes == 2
    full = read_split(f, "imagenet_lt")
    assert full.num_classes == 1000 and len(full.class_counts()) == 1000 and sum(full.class_counts()) == 3
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg 0\nb.jpg x\n")
    with pytest.raises(DataFormatError, match=r"bad.txt:2: label 'x' is not an integer"):
        read_split_txt(bad)
    bad.write_text("a.jpg 0\nb.jpg 3 extra\n")
    with pytest.raises(DataFormatError, match=r"bad.txt:2: expected"):
        read_split_txt(bad)
    bad.write_text("a.jpg 365\n")
    with pytest.raises(DataFormatError, match="outside"):
        read_split(bad, "places_lt")


@pytest.mark.unit
def test_inaturalist_json_reader(tmp_path):
    doc = {"images": [{"id": 10, "file_name": "train_val2018/Plantae/1/a.jpg"}, {"id": 11, "file_name": "b.jpg"}],
           "annotations": [{"id": 1, "image_id": 10, "category_id": 1}, {"id": 2, "image_id": 11, "category_id": 0}],
           "categories": [{"id": 0, "name": "x"}, {"id": 1, "name": "y"}]}
    f = tmp_path / "train2018.json"
    f.write_text(json.dumps(doc))
    s = read_split(f)
    assert s.paths == ("train_val2018/Plantae/1/a.jpg", "b.jpg") and s.labels.tolist() == [1, 0] and s.num_classes == 2
    doc["annotations"][0]["image_id"] = 99
    f.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match="image 99"):
        read_inaturalist_json(f)


@pytest.mark.unit
def test_places_layout_and_image_dataset(tmp_path):
    assert places_large_path("train/airfield/00004851.jpg") == "train/a/airfield/00004851.jpg"
    assert places_large_path("train/apartment_building-outdoor/1.jpg") == "train/a/apartment_building/outdoor/1.jpg"
    assert places_large_path("val/airfield/Places365_val_00003597.jpg") == "val/Places365_val_00003597.jpg"
    from PIL import Image

    (tmp_path / "img" / "train" / "a" / "airfield").mkdir(parents=True)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "img" / "train" / "a" / "airfield" / "1.jpg")
    split_file = tmp_path / "Places_LT_train.txt"
    split_file.write_text("train/airfield/1.jpg 3\n")
    ds = SplitImageDataset(read_split_txt(split_file, 365), tmp_path / "img", layout="places365_large")
    img, label = ds[0]
    assert img.size == (8, 6) and label == 3


@pytest.mark.unit
def test_augment_is_a_crop_of_the_padded_image_or_its_mirror():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = augment(x, torch.Generator().manual_seed(0), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        ok = any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1))
                 for dy in range(5) for dx in range(5) for c in [padded[i, :, dy:dy + 8, dx:dx + 8]])
        assert ok


@pytest.mark.unit
def test_cifar10_lt_on_the_shared_subset():
    root = shared_data_root()
    if not (root / "cifar10" / "cifar10_subset.npz").is_file():
        pytest.skip("shared CIFAR-10 subset not present")
    train, test = cifar10_lt(imbalance_factor=100)
    assert train.class_counts() == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5] and len(train) == 1236
    assert test.class_counts() == [100] * 10
    assert isinstance(train, TensorSplit) and train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
