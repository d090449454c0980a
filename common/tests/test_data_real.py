"""The loaders on the real files in ../shared/data, checked against the counts in each PROVENANCE.md.

Each test skips, naming the folder, when its data folder is absent.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from vlcore.data.paths import shared_data_root

ROOT = shared_data_root()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def need(name: str) -> Path:
    folder = ROOT / name
    if not folder.is_dir():
        pytest.skip(f"real data folder not found: {folder}")
    return folder


# --- CIFAR-10 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_train():
    need("cifar10")
    from vlcore.data.cifar import load_cifar10_arrays

    return load_cifar10_arrays("train")


@pytest.mark.unit
def test_cifar_counts_and_balance(cifar_train):
    from vlcore.data.cifar import CIFAR10_CLASSES, load_cifar10

    a = cifar_train
    assert a.images.shape == (5000, 32, 32, 3) and a.images.dtype == np.uint8
    assert np.bincount(a.labels).tolist() == [500] * 10
    assert a.classes == CIFAR10_CLASSES
    assert a.files[0].startswith("train/airplane/") and a.files[-1].startswith("train/truck/")
    x, y = load_cifar10("test")
    assert x.shape == (1000, 3, 32, 32) and torch.bincount(y).tolist() == [100] * 10


@pytest.mark.unit
def test_cifar_long_tailed_subset(cifar_train):
    from vlcore.data.cifar import CIFAR10Subset, balanced_subset_indices, long_tail_indices

    idx = long_tail_indices(cifar_train.labels, imbalance_factor=100, seed=0)
    ds = CIFAR10Subset(arrays=cifar_train, indices=idx)
    assert ds.class_counts() == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    assert len(ds) == 1236
    img, label = ds[len(ds) - 1]
    assert img.shape == (3, 32, 32) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0 and label == 9
    bal = CIFAR10Subset(arrays=cifar_train, indices=balanced_subset_indices(cifar_train.labels, per_class=20))
    assert bal.class_counts() == [20] * 10


# --- COCO -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_val():
    need("coco_mini")
    pytest.importorskip("pycocotools")
    from vlcore.data.coco import CocoDetection, coco_mini_paths

    ann, img_dir = coco_mini_paths("val2017")
    return CocoDetection(ann_file=ann, image_dir=img_dir)


@pytest.mark.unit
def test_coco_mini_image_counts():
    base = need("coco_mini")
    assert len(list((base / "images" / "train2017").glob("*.jpg"))) == 208
    assert len(list((base / "images" / "val2017").glob("*.jpg"))) == 283


@pytest.mark.unit
def test_coco_train_instances_counts_and_long_tail():
    need("coco_mini")
    pytest.importorskip("pycocotools")
    from vlcore.data.coco import CocoDetection, coco_mini_paths

    ann, img_dir = coco_mini_paths("train2017")
    ds = CocoDetection(ann_file=ann, image_dir=img_dir, include_crowd=True)
    assert len(ds) == 208 and len(ds.coco.dataset["annotations"]) == 1678 and len(ds.classes) == 80
    counts = ds.category_counts()
    assert counts["person"] == 431 and sum(counts.values()) == 1678
    assert sum(1 for v in counts.values() if v == 1) >= 3  # several single-instance classes: a long tail


@pytest.mark.unit
def test_coco_val_targets_are_valid(coco_val):
    ds = coco_val
    assert len(ds) == 79 and len(ds.coco.dataset["annotations"]) == 624
    n = 0
    for i in range(len(ds)):
        t = ds.target(i)
        assert int(t["iscrowd"].sum()) == 0  # crowd regions are left out by default
        H, W = t["orig_size"]
        b = t["boxes"]
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= W).all() and (b[:, 3] <= H).all()
        assert ((t["labels"] >= 0) & (t["labels"] < 80)).all()
        n += len(b)
    assert n == 624 - 5
    # Masks lie inside their boxes (one pixel of slack for polygon rasterisation).
    from vlcore.data.coco import CocoDetection

    x, t = CocoDetection(ann_file=ds.ann_file, image_dir=ds.image_dir, with_masks=True)[0]
    assert x.shape[1:] == t["masks"].shape[1:] == t["orig_size"]
    for m, (x0, y0, x1, y1) in zip(t["masks"], t["boxes"].tolist()):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1 and ys.max() <= y1


@pytest.mark.unit
def test_cocoeval_ground_truth_gives_ap_one(coco_val):
    from vlcore.data.coco import coco_evaluate, ground_truth_as_detections

    r = coco_evaluate(ground_truth_as_detections(coco_val.coco), coco_gt=coco_val.coco)
    assert r["AP"] == 1.0 and r["AP50"] == 1.0 and r["AP75"] == 1.0 and r["AR100"] == 1.0
    # Masks on a third of the images (RLE encoding of every polygon is the slow part).
    ids = set(coco_val.image_ids[::3])
    dets = [d for d in ground_truth_as_detections(coco_val.coco, iou_type="segm") if d["image_id"] in ids]
    r = coco_evaluate(dets, coco_gt=coco_val.coco, iou_type="segm", image_ids=sorted(ids))
    assert r["AP"] == 1.0 and r["AR100"] == 1.0


@pytest.mark.unit
def test_coco_captions_and_vl_files():
    base = need("coco_mini")
    from vlcore.data.coco import coco_mini_paths, load_coco_captions, load_grounded_captions, load_refexp, load_vqa

    val = load_coco_captions(coco_mini_paths("val2017", kind="captions")[0])
    assert len(val) == 283 and sum(map(len, val.values())) == 1416 and all(val.values())
    train = load_coco_captions(coco_mini_paths("train2017", kind="captions")[0])
    assert len(train) == 80 and sum(map(len, train.values())) == 400
    refs = load_refexp(base / "vl" / "refexp_subset.json")
    assert len(refs) == 115 and len({r.image_id for r in refs}) == 9
    assert {r.dataset for r in refs} == {"refcoco", "refcoco+", "refcocog"}
    for r in refs:
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 < x1 <= r.width + 1 and 0 <= y0 < y1 <= r.height + 1 and (base / r.image).is_file()
    grounded = load_grounded_captions(base / "derived" / "grounded_captions_val2017_heuristic.json")
    assert len(grounded) == 790 and len({g.image_id for g in grounded}) == 174
    assert sum(len(g.phrases) for g in grounded) == 1166  # spans are checked against the text on load
    assert [len(load_vqa(base / p)) for p in ("vl/aokvqa_val_subset.json", "vl/okvqa_val_subset.json",
                                              "derived/vqa_template_val2017.json")] == [66, 5, 904]
    aok = load_vqa(base / "vl" / "aokvqa_val_subset.json")[0]
    assert len(aok.choices) == 4 and 0 <= aok.correct_choice < 4 and len(aok.answers) == 10


@pytest.mark.unit
def test_coco_semantic_masks_map_to_133_classes():
    need("coco_mini")
    from vlcore.data.coco import CocoSemanticSegmentation

    ds = CocoSemanticSegmentation(split="val2017")
    assert len(ds) == 100 and ds.num_classes == 133 and sum(ds.isthing) == 80
    seen = set()
    for i in range(0, 100, 20):
        vals = set(np.unique(ds.label(i).numpy()).tolist())
        assert vals <= set(range(133)) | {255}
        seen |= vals
    assert len(seen) > 10
    x, y = ds[0]
    assert x.shape[1:] == y.shape


# --- ADE20K -----------------------------------------------------------------------------------


@pytest.mark.unit
def test_ade20k_sample_and_self_miou():
    base = need("ade20k_sceneparsing_sample")
    from vlcore.data.ade20k import ADE20KSceneParsing, confusion_matrix, mean_iou
    from vlcore.data.images import load_label_map

    ds = ADE20KSceneParsing()
    assert len(ds) == 3 and ds.num_classes == 150 and ds.classes[:3] == ("wall", "building", "sky")
    sizes = []
    labels = []
    for i in range(3):
        x, y = ds[i]
        sizes.append((x.shape[2], x.shape[1]))
        assert set(y.unique().tolist()) <= set(range(150)) | {255}
        labels.append(y)
    assert sizes == [(683, 512), (500, 364), (400, 300)]
    r = mean_iou(labels, labels, num_classes=150)
    assert r["mIoU"] == 1.0 and r["aAcc"] == 1.0
    # reduce_zero_label on the raw PNG gives the same matrix as the dataset's reduced labels.
    raw = load_label_map(base / "annotations" / "ADE_val_00000003.png")
    cm_raw = confusion_matrix(labels[2].clamp(max=149), raw, num_classes=150, reduce_zero_label=True)
    cm_ds = confusion_matrix(labels[2].clamp(max=149), labels[2], num_classes=150)
    assert torch.equal(cm_raw, cm_ds) and int(cm_ds.sum()) == int((raw > 0).sum())


# --- text -------------------------------------------------------------------------------------


@pytest.mark.unit
def test_tiny_shakespeare_counts_and_split():
    need("text_tinyshakespeare")
    from vlcore.data.text import TokenBlockDataset, shakespeare_char_corpus

    c = shakespeare_char_corpus()
    assert c.vocab_size == 65
    assert len(c.train) + len(c.val) == 1_115_394 and len(c.train) == round(0.9 * 1_115_394)
    assert c.tokenizer.decode(c.train[:14].tolist()) == "First Citizen:"
    x, y = TokenBlockDataset(c.val, block_size=128)[3]
    assert torch.equal(x[1:], y[:-1])


@pytest.mark.unit
def test_wikitext2_counts():
    need("wikitext2")
    from vlcore.data.text import EOS, load_wikitext2, wikitext2_word_corpus

    tokens = load_wikitext2()
    assert len(tokens) == 217_646 and tokens.count(EOS) == 3760
    assert len(set(tokens) - {EOS}) == 13_776
    c = wikitext2_word_corpus()
    assert c.vocab_size == 13_777 and len(c.train) + len(c.val) == 217_646
    # The file opens with a blank line, hence the leading <eos>.
    assert c.tokenizer.decode(c.train[:4].tolist()) == [EOS, "=", "Homarus", "gammarus"]
