"""Data utilities on generated data: synthetic scenes, mIoU, long-tail profiles, COCO validation and eval, text."""

import json
import re
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vlcore.data.ade20k import SegmentationMeter, confusion_matrix, mean_iou, reduce_zero_label
from vlcore.data.cifar import (
    CIFAR10Subset,
    balanced_subset_indices,
    load_cifar10_arrays,
    long_tail_counts,
    long_tail_indices,
)
from vlcore.data.paths import DataFormatError, DataNotFoundError
from vlcore.data.synthetic import COLORS, SceneConfig, SyntheticScenes, collate_scenes, generate_scene
from vlcore.data.text import (
    CharTokenizer,
    TextDecodeError,
    TokenBlockDataset,
    WordVocab,
    random_blocks,
    read_text,
    split_ids,
    word_tokens,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- synthetic scenes -------------------------------------------------------------------------


@pytest.mark.unit
def test_scene_is_deterministic_under_seed():
    cfg = SceneConfig(image_size=48, background="textured")
    a, b = generate_scene(seed=123, config=cfg), generate_scene(seed=123, config=cfg)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.masks, b.masks)
    assert a.caption == b.caption and a.qa == b.qa and a.phrases == b.phrases
    c = generate_scene(seed=124, config=cfg)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.unit
def test_dataset_items_do_not_depend_on_access_order():
    ds = SyntheticScenes(num_scenes=20, seed=7)
    forward = [ds[i]["image"] for i in range(20)]
    backward = [ds[i]["image"] for i in reversed(range(20))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))
    other = SyntheticScenes(num_scenes=20, seed=8)
    assert not torch.equal(forward[0], other[0]["image"])


@pytest.mark.unit
@pytest.mark.parametrize("size", [32, 64, 224])
def test_scene_objects_are_consistent(size):
    cfg = SceneConfig(image_size=size, max_objects=5)
    for seed in range(25):
        s = generate_scene(seed=seed, config=cfg)
        n = len(s.objects)
        assert cfg.min_objects <= n <= cfg.max_objects
        assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
        masks = s.masks
        assert masks.shape == (n, size, size)
        assert (masks.sum(0) <= 1).all(), "objects must not overlap"
        for o, m in zip(s.objects, masks):
            x0, y0, x1, y1 = (int(v) for v in o.box)
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            # The box is the tight box of the mask (pixel-edge coordinates).
            assert (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) == (x0, y0, x1, y1)
            assert (s.image[m] == COLORS[o.color]).all()
            assert o.label == cfg.shapes.index(o.shape)
        # Every object is named once in the caption, and each phrase span holds its text.
        assert len(s.phrases) == n
        for p in s.phrases:
            assert s.caption[p.span[0] : p.span[1]] == p.text
            o = s.objects[p.object_index]
            assert f"{o.color} {o.shape}" in p.text and p.box == o.box


REL_Q = r"Is the (\w+) (\w+) (to the left of|to the right of|above|below) the (\w+) (\w+)\?"


@pytest.mark.unit
def test_qa_answers_match_objects():
    cfg = SceneConfig(image_size=64, max_objects=6)
    kinds = set()
    for seed in range(40):
        s = generate_scene(seed=seed, config=cfg)
        shapes = [o.shape for o in s.objects]
        colors = [o.color for o in s.objects]
        for q in s.qa:
            kinds.add(q.kind)
            if q.question == "How many objects are there?":
                assert q.answer == str(len(s.objects))
            elif m := re.fullmatch(r"How many (\w+)s are there\?", q.question):
                assert q.answer == str(shapes.count(m[1]))
            elif m := re.fullmatch(r"How many (\w+) objects are there\?", q.question):
                assert q.answer == str(colors.count(m[1]))
            elif m := re.fullmatch(r"What color is the (\w+)\?", q.question):
                assert shapes.count(m[1]) == 1 and q.answer == colors[shapes.index(m[1])]
            elif m := re.fullmatch(r"What shape is the (\w+) object\?", q.question):
                assert colors.count(m[1]) == 1 and q.answer == shapes[colors.index(m[1])]
            elif m := re.fullmatch(r"Is there an? (\w+) (\w+)\?", q.question):
                assert q.answer == ("yes" if (m[1], m[2]) in set(zip(colors, shapes)) else "no")
            elif m := re.fullmatch(r"Is the (\w+) (\w+) on the left or the right of the image\?", q.question):
                o = next(o for o in s.objects if (o.color, o.shape) == (m[1], m[2]))
                assert q.answer == ("left" if o.center[0] < 32 else "right")
            elif m := re.fullmatch(REL_Q, q.question):
                a = next(o for o in s.objects if (o.color, o.shape) == (m[1], m[2]))
                b = next(o for o in s.objects if (o.color, o.shape) == (m[4], m[5]))
                (ax, ay), (bx, by) = a.center, b.center
                rel = {"to the left of": ax < bx, "to the right of": ax > bx, "above": ay < by, "below": ay > by}
                truth = rel[m[3]]
                assert q.answer == ("yes" if truth else "no")
            else:
                raise AssertionError(f"unexpected question {q.question!r}")
    assert kinds == {"count", "color", "shape", "exist", "position"}


@pytest.mark.unit
def test_caption_relation_matches_geometry():
    s = next(s for s in (generate_scene(seed=k) for k in range(100)) if len(s.objects) >= 2)
    a, b = s.objects[0], s.objects[1]
    rel = s.caption[s.phrases[0].span[1] : s.phrases[1].span[0]].strip()
    (ax, ay), (bx, by) = a.center, b.center
    if abs(ax - bx) >= abs(ay - by):
        expect = "to the left of" if ax < bx else "to the right of"
    else:
        expect = "above" if ay < by else "below"
    assert rel == expect


@pytest.mark.unit
def test_label_modes_and_config_errors():
    cfg = SceneConfig(label_by="shape_color")
    s = generate_scene(seed=3, config=cfg)
    for o in s.objects:
        assert cfg.class_names[o.label] == f"{o.color} {o.shape}"
    with pytest.raises(ValueError, match="hexagon"):
        SceneConfig(shapes=("hexagon",))
    with pytest.raises(ValueError, match="image_size"):
        SceneConfig(image_size=8)


@pytest.mark.unit
def test_dataloader_collates_scenes():
    ds = SyntheticScenes(num_scenes=6, seed=0, config=SceneConfig(image_size=32))
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_scenes)))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["image"].max() <= 1.0
    assert len(batch["boxes"]) == 3 and batch["boxes"][0].shape[1] == 4
    assert batch["masks"][1].shape[1:] == (32, 32) and isinstance(batch["caption"][2], str)


@pytest.mark.unit
def test_generation_is_fast():
    ds = SyntheticScenes(num_scenes=500, seed=0, config=SceneConfig(image_size=64))
    t = time.perf_counter()
    for i in range(len(ds)):
        ds.scene(i)
    # About 1 s here; the bound leaves room for a loaded CI machine.
    assert time.perf_counter() - t < 8.0


# --- mIoU -------------------------------------------------------------------------------------


@pytest.mark.unit
def test_miou_hand_computed_case():
    pred = torch.tensor([[0, 0, 1], [1, 2, 2]])
    target = torch.tensor([[0, 1, 1], [1, 2, 255]])
    cm = confusion_matrix(pred, target, num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 1]]
    r = mean_iou(pred, target, num_classes=3)
    # class 0: 1 / (1 + 2 - 1); class 1: 2 / (3 + 2 - 2); class 2: 1 / 1
    assert r["IoU"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert r["mIoU"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert r["aAcc"] == pytest.approx(4 / 5)
    assert r["mAcc"] == pytest.approx((1 + 2 / 3 + 1) / 3)


@pytest.mark.unit
def test_miou_absent_classes_and_reduce_zero_label():
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, 5, (2, 16, 16), generator=g)  # raw ADE-style: 0 = ignore, 1..4 classes
    r = mean_iou(lab.clamp_min(1) - 1, lab, num_classes=150, reduce_zero_label=True)
    assert r["mIoU"] == 1.0 and sum(not np.isnan(v) for v in r["IoU"]) == 4  # absent classes are NaN, not 0
    assert torch.equal(reduce_zero_label(torch.tensor([0, 1, 150, 255])), torch.tensor([255, 0, 149, 255]))
    # A class predicted but absent from the ground truth counts with IoU 0.
    r = mean_iou(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=2)
    assert r["IoU"] == [0.5, 0.0] and r["mIoU"] == 0.25
    with pytest.raises(ValueError, match="target values"):
        confusion_matrix(torch.tensor([0]), torch.tensor([7]), num_classes=3)


@pytest.mark.unit
def test_meter_accumulates_like_one_big_map():
    g = torch.Generator().manual_seed(1)
    preds = [torch.randint(0, 6, (8, 9), generator=g) for _ in range(3)]
    targets = [torch.randint(0, 6, (8, 9), generator=g) for _ in range(3)]
    m = SegmentationMeter(num_classes=6)
    for p, t in zip(preds, targets):
        m.update(p, t)
    whole = mean_iou(torch.cat([p.flatten() for p in preds]), torch.cat([t.flatten() for t in targets]), num_classes=6)
    assert m.compute()["mIoU"] == pytest.approx(whole["mIoU"])
    # Dataset-level IoU differs from the mean of per-image IoUs; the meter must do the former.
    per_image = np.mean([mean_iou(p, t, num_classes=6)["mIoU"] for p, t in zip(preds, targets)])
    assert m.compute()["mIoU"] != pytest.approx(per_image)


# --- long tail / CIFAR errors -----------------------------------------------------------------


@pytest.mark.unit
def test_long_tail_profile_counts():
    # floor(n_max * IF^(-i / 9)), the profile of the long-tailed CIFAR benchmarks
    lt100 = [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    assert long_tail_counts(n_max=500, num_classes=10, imbalance_factor=100) == lt100
    lt10 = [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert long_tail_counts(n_max=5000, num_classes=10, imbalance_factor=10) == lt10
    assert long_tail_counts(n_max=50, num_classes=5, imbalance_factor=1) == [50] * 5


@pytest.mark.unit
def test_long_tail_and_balanced_indices():
    labels = np.repeat(np.arange(10), 500)
    idx = long_tail_indices(labels, imbalance_factor=100, seed=0)
    assert np.bincount(labels[idx], minlength=10).tolist() == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    assert np.array_equal(idx, long_tail_indices(labels, imbalance_factor=100, seed=0))
    assert not np.array_equal(idx, long_tail_indices(labels, imbalance_factor=100, seed=1))
    order = list(reversed(range(10)))
    rev = long_tail_indices(labels, imbalance_factor=100, class_order=order)
    assert np.bincount(labels[rev], minlength=10)[9] == 500 and np.bincount(labels[rev], minlength=10)[0] == 5
    bal = balanced_subset_indices(labels, per_class=7, seed=2)
    assert np.bincount(labels[bal]).tolist() == [7] * 10 and len(set(bal.tolist())) == 70
    with pytest.raises(DataFormatError, match="outside"):
        long_tail_indices(np.array([0, 1, 12]), imbalance_factor=10, num_classes=10)


@pytest.mark.unit
def test_cifar_missing_folder_file_and_bad_labels(tmp_path):
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "cifar10")):
        load_cifar10_arrays("train", root=tmp_path)
    (tmp_path / "cifar10").mkdir()
    with pytest.raises(DataNotFoundError, match="cifar10_subset.npz"):
        load_cifar10_arrays("train", root=tmp_path)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "cifar10" / "cifar10_subset.npz", x_train=x, y_train=np.array([0, 1, 10, 2], np.uint8),
             classes=np.array([f"c{i}" for i in range(10)]))
    with pytest.raises(DataFormatError, match="outside"):
        load_cifar10_arrays("train", root=tmp_path)
    np.savez(tmp_path / "cifar10" / "cifar10_subset.npz", x_train=x + 255, y_train=np.array([0, 1, 9, 2], np.uint8))
    ds = CIFAR10Subset(split="train", root=tmp_path)
    img, y = ds[2]
    assert img.shape == (3, 32, 32) and float(img.max()) == 1.0 and y == 9


# --- COCO -------------------------------------------------------------------------------------


def _coco_dict():
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
              {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30}]
    cats = [{"id": 3, "name": "cat"}, {"id": 18, "name": "dog"}]

    def ann(i, img, cat, box):
        x, y, w, h = box
        return {"id": i, "image_id": img, "category_id": cat, "bbox": box, "area": w * h, "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}

    anns = [ann(10, 1, 3, [2, 3, 10, 8]), ann(11, 1, 18, [20, 5, 15, 20]), ann(12, 2, 3, [0, 0, 40, 30])]
    return {"images": images, "categories": cats, "annotations": anns}


def _write_coco(tmp_path, data):
    from PIL import Image

    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    for im in data["images"]:
        Image.new("RGB", (im["width"], im["height"]), (10, 20, 30)).save(img_dir / im["file_name"])
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, img_dir


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"bbox": [2, 3, 0, 8]}, "non-positive"),
        ({"bbox": [30, 3, 20, 8]}, "outside"),
        ({"category_id": 99}, "unknown category_id 99"),
    ],
)
def test_coco_invalid_annotation_strict_and_lenient(tmp_path, bad, problem):
    pytest.importorskip("pycocotools")
    from vlcore.data.coco import CocoAnnotationError, CocoDetection

    data = _coco_dict()
    data["annotations"][1].update(bad)
    ann, img_dir = _write_coco(tmp_path, data)
    with pytest.raises(CocoAnnotationError) as e:
        CocoDetection(ann_file=ann, image_dir=img_dir)
    assert str(ann) in str(e.value) and "annotation id 11" in str(e.value) and problem in str(e.value)
    with pytest.warns(UserWarning, match="dropped 1 invalid"):
        ds = CocoDetection(ann_file=ann, image_dir=img_dir, strict=False)
    assert ds.target(0)["ann_ids"].tolist() == [10]


@pytest.mark.unit
def test_coco_dataset_targets(tmp_path):
    pytest.importorskip("pycocotools")
    from vlcore.data.coco import CocoDetection

    ann, img_dir = _write_coco(tmp_path, _coco_dict())
    ds = CocoDetection(ann_file=ann, image_dir=img_dir, with_masks=True)
    assert ds.classes == ("cat", "dog") and ds.cat_id_to_label == {3: 0, 18: 1}
    x, t = ds[0]
    assert x.shape == (3, 30, 40)
    assert t["boxes"].tolist() == [[2, 3, 12, 11], [20, 5, 35, 25]] and t["labels"].tolist() == [0, 1]
    m = t["masks"]
    assert m.shape == (2, 30, 40) and m[0, 3:11, 2:12].all() and m[0].sum() == 80
    with pytest.raises(DataNotFoundError, match="missing"):
        CocoDetection(ann_file=ann, image_dir=tmp_path / "missing")


@pytest.mark.unit
def test_coco_evaluate_ground_truth_and_half_recall(tmp_path):
    pytest.importorskip("pycocotools")
    from vlcore.data.coco import (
        COCO_STAT_NAMES,
        CocoDetection,
        coco_evaluate,
        ground_truth_as_detections,
        predictions_to_coco,
    )

    ann, img_dir = _write_coco(tmp_path, _coco_dict())
    ds = CocoDetection(ann_file=ann, image_dir=img_dir, with_masks=True)
    for iou_type in ("bbox", "segm"):
        r = coco_evaluate(ground_truth_as_detections(ds.coco, iou_type=iou_type), coco_gt=ds.coco, iou_type=iou_type)
        assert tuple(r) == COCO_STAT_NAMES and r["AP"] == 1.0 and r["AP50"] == 1.0
    # Only the first "cat" found: cat AP = 51/101 (101-point interpolation, recall 0.5); dog AP = 0.
    t = ds.target(0)
    dets = predictions_to_coco(
        image_id=1, boxes_xyxy=t["boxes"][:1], scores=torch.tensor([0.9]), labels=t["labels"][:1],
        label_to_cat_id=ds.label_to_cat_id, masks=t["masks"][:1],
    )
    for iou_type in ("bbox", "segm"):
        r = coco_evaluate(dets, coco_gt=ds.coco, iou_type=iou_type)
        assert r["AP"] == pytest.approx((51 / 101 + 0.0) / 2)
    assert coco_evaluate([], coco_gt=ds.coco)["AP"] == 0.0


# --- text -------------------------------------------------------------------------------------


@pytest.mark.unit
def test_non_utf8_text_names_the_file(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("line one\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(TextDecodeError) as e:
        read_text(p)
    msg = str(e.value)
    assert str(p) in msg and "byte 12" in msg and "line 2" in msg
    with pytest.raises(DataNotFoundError):
        read_text(tmp_path / "absent.txt")


@pytest.mark.unit
def test_tokenizers_round_trip():
    text = "to be, or not to be\n"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text)) and tok.decode(tok.encode(text)) == text
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("z")
    tokens = word_tokens("the cat sat\n\nthe cat\n")
    assert tokens == ["the", "cat", "sat", "<eos>", "<eos>", "the", "cat", "<eos>"]
    vocab = WordVocab.from_tokens(tokens)
    assert vocab.words == ("<unk>", "<eos>", "cat", "the", "sat")  # specials, then frequency, ties alphabetical
    assert vocab.encode(["the", "dog"]) == [3, 0] and vocab.decode([2, 4]) == ["cat", "sat"]


@pytest.mark.unit
def test_blocks_and_split():
    ids = torch.arange(100)
    train, val = split_ids(ids, val_fraction=0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    ds = TokenBlockDataset(train, block_size=8)
    assert len(ds) == (90 - 9) // 8 + 1
    x, y = ds[len(ds) - 1]
    assert torch.equal(y, x + 1) and x.shape == (8,)
    assert len(TokenBlockDataset(train, block_size=8, stride=1)) == 90 - 8
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    xa, ya = random_blocks(train, block_size=8, batch_size=4, generator=g1)
    xb, _ = random_blocks(train, block_size=8, batch_size=4, generator=g2)
    assert torch.equal(xa, xb) and torch.equal(ya, xa + 1) and xa.shape == (4, 8)
    with pytest.raises(ValueError, match="cannot fill"):
        TokenBlockDataset(torch.arange(5), block_size=8)
