"""The MMDetection plug-in: config builds, one training step, rare / common / frequent AP on coco_mini."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

mmdet = pytest.importorskip("mmdet")

from mmengine.config import Config, ConfigDict  # noqa: E402

from lda.mmdet import LDABBoxHead, LongTailCocoMetric, category_counts, frequency_buckets  # noqa: E402
from lda.mmdet.lt_coco_metric import bucket_ap  # noqa: E402
from vlcore.data.paths import shared_data_root  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mmdet"
SMOKE = CONFIGS / "lda_mask-rcnn_r18_fpn_1xb2-smoke_coco-mini.py"
COCO = shared_data_root() / "coco_mini"
needs_coco = pytest.mark.skipif(not (COCO / "annotations" / "instances_train2017.json").is_file(),
                                reason="shared coco_mini not present")


def tiny_head(**kw) -> LDABBoxHead:
    return LDABBoxHead(in_channels=8, fc_out_channels=16, roi_feat_size=2, num_classes=3, class_counts=[30, 6, 1],
                       neck_dim=4, alpha_window=2, **kw)


@pytest.mark.unit
def test_bbox_head_weights_and_lda_loss_terms():
    from mmdet.models.task_modules.samplers import SamplingResult  # noqa: F401

    torch.manual_seed(0)
    head = tiny_head()
    n = torch.tensor([30.0, 6.0, 1.0])
    want = torch.cat([1 / (3 * n), (1 / n.sum()).view(1)])
    assert torch.allclose(head.roi_weights, want)  # fg 1/(C n_c), background 1/N
    x = torch.randn(6, 8, 2, 2)
    cls_b, box, cls_u, emb = head.forward_lda(x)
    assert cls_b.shape == cls_u.shape == (6, 4) and box.shape == (6, 12) and emb.shape == (6, 4)
    assert torch.equal(head(x)[0], cls_b)  # mmdet's predict path uses g_b
    labels = torch.tensor([0, 0, 1, 2, 3, 3])  # 3 = background
    head.alpha.update(90.0, 10.0)  # a previous iteration with a large accuracy gap
    targets = (labels, torch.ones(6), torch.zeros(6, 4), torch.zeros(6, 4))
    head.get_targets = lambda *a, **k: targets  # the sampler's targets, fixed for the test
    losses = head.loss_lda(cls_b, box, cls_u, emb, torch.zeros(6, 5), [], None)
    ce = torch.nn.functional.cross_entropy(cls_b, labels, reduction="none")
    fg = labels < 3
    acc_u = 100 * (cls_u[fg].argmax(1) == labels[fg]).float().mean().item()
    acc_b = 100 * (cls_b[fg].argmax(1) == labels[fg]).float().mean().item()
    alpha = max(0.0, (90 + acc_u) / 2 - (10 + acc_b) / 2) ** 2
    assert losses["alpha"].item() == pytest.approx(alpha)
    assert losses["loss_cls_b"].item() == pytest.approx(2 * alpha * (want[labels] * ce).sum().item(), rel=1e-5)
    assert losses["loss_cls_u"].item() == pytest.approx(torch.nn.functional.cross_entropy(cls_u, labels).item(), rel=1e-5)
    from lda.engine.losses import inter_class_distance, intra_class_distance

    assert losses["loss_intra"].item() == pytest.approx(intra_class_distance(emb[fg], labels[fg]).item())
    assert losses["loss_inter"].item() == pytest.approx(inter_class_distance(emb[fg], labels[fg]).item())
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    assert head.fc_cls_u.weight.grad is not None and head.fc_neck.weight.grad is not None
    assert head.fc_cls.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="3 class counts for num_classes=2"):
        LDABBoxHead(in_channels=8, fc_out_channels=16, roi_feat_size=2, num_classes=2, class_counts=[1, 2, 3])


@pytest.mark.unit
def test_category_counts_and_frequency_buckets(tmp_path):
    doc = {"images": [{"id": i} for i in range(1, 5)],
           "categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}],
           "annotations": [{"image_id": 1, "category_id": 3}, {"image_id": 1, "category_id": 3},
                           {"image_id": 2, "category_id": 3}, {"image_id": 3, "category_id": 7},
                           {"image_id": 4, "category_id": 7, "iscrowd": 1}]}
    f = tmp_path / "train.json"
    f.write_text(json.dumps(doc))
    assert category_counts(str(f)) == [3, 1]  # sorted ids: a (3), b (7); crowd ignored
    assert category_counts(str(f), count_by="image") == [2, 1]
    assert category_counts(str(f), classes=["b", "a"]) == [1, 3]
    assert frequency_buckets(str(f), rare_max=1, common_max=1) == {"a": "f", "b": "r"}
    # LVIS categories carry the official frequency and counts.
    doc["categories"] = [{"id": 3, "name": "a", "frequency": "c", "instance_count": 40, "image_count": 12}]
    f.write_text(json.dumps(doc))
    assert frequency_buckets(str(f)) == {"a": "c"} and category_counts(str(f)) == [40]


@pytest.mark.unit
def test_bucket_ap_averages_categories_with_ground_truth():
    p = -np.ones((10, 101, 3, 4, 3))
    p[:, :, 0, 0, -1] = 0.5  # category x: AP 0.5
    p[:, :, 1, 0, -1] = 1.0  # category y: AP 1.0; category z has no ground truth (-1)
    out = bucket_ap(p, ["x", "y", "z"], {"x": "r", "y": "r", "z": "f"})
    assert out["r"] == pytest.approx(0.75) and np.isnan(out["c"]) and np.isnan(out["f"])


def _dataset_meta():
    from mmdet.datasets import CocoDataset

    return copy.deepcopy(CocoDataset.METAINFO)


@pytest.mark.unit
@needs_coco
def test_metric_gives_ap_1_for_ground_truth_and_0_for_missing_rare_classes():
    """Feed the validation ground truth back as detections: every bucket AP is 1; drop the rare classes: AP_r 0."""
    from pycocotools.coco import COCO as CocoApi

    ann = str(COCO / "annotations" / "instances_val2017.json")
    gt = CocoApi(ann)
    meta = _dataset_meta()
    name_to_label = {n: i for i, n in enumerate(meta["classes"])}
    buckets = frequency_buckets(str(COCO / "annotations" / "instances_train2017.json"), 3, 20)

    def run(keep) -> dict:
        metric = LongTailCocoMetric(ann_file=ann, metric="bbox", train_ann_file=str(COCO / "annotations" /
                                    "instances_train2017.json"), rare_max=3, common_max=20)
        metric.dataset_meta = meta
        for img_id in gt.getImgIds():
            anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=img_id, iscrowd=False))
                    if keep(gt.loadCats(a["category_id"])[0]["name"])]
            boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                                  for a in anns], dtype=torch.float32).reshape(-1, 4)
            labels = torch.tensor([name_to_label[gt.loadCats(a["category_id"])[0]["name"]] for a in anns],
                                  dtype=torch.long)
            info = gt.loadImgs(img_id)[0]
            metric.process({}, [{"img_id": img_id, "ori_shape": (info["height"], info["width"]),
                                 "pred_instances": {"bboxes": boxes, "scores": torch.ones(len(anns)), "labels": labels}}])
        return metric.evaluate(len(gt.getImgIds()))

    perfect = run(lambda name: True)
    assert perfect["coco/bbox_AP_r"] == perfect["coco/bbox_AP_c"] == perfect["coco/bbox_AP_f"] == pytest.approx(1.0)
    no_rare = run(lambda name: buckets[name] != "r")
    assert no_rare["coco/bbox_AP_r"] == 0.0 and no_rare["coco/bbox_AP_f"] == pytest.approx(1.0)
    assert no_rare["coco/bbox_AP_c"] == pytest.approx(1.0)


@pytest.mark.config
def test_paper_config_builds_its_lda_head():
    cfg = Config.fromfile(str(CONFIGS / "lda_mask-rcnn_r50_fpn_8xb2-ms-2x_lvis-v1.py"))
    rh = cfg.model.roi_head
    assert rh.type == "LDARoIHead" and rh.bbox_head.type == "LDABBoxHead" and rh.bbox_head.num_classes == 1203
    assert rh.bbox_head.b_weight == 2.0 and rh.bbox_head.alpha_window == 100
    assert cfg.train_dataloader.dataset.type == "LVISV1Dataset"  # uniform sampling replaces repeat factors
    assert cfg.train_cfg.max_epochs == 24 and "lda.mmdet" in cfg.custom_imports.imports
    # The model builds (counts given directly: the LVIS annotation file is not here).
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    m = copy.deepcopy(cfg.model)
    m.backbone.init_cfg = None
    m.roi_head.bbox_head.pop("count_ann_file")
    m.roi_head.bbox_head.class_counts = list(range(1, 1204))
    with torch.device("meta"):
        model = MODELS.build(m)
    assert isinstance(model.roi_head.bbox_head, LDABBoxHead) and model.roi_head.bbox_head.fc_cls_u.out_features == 1204


@pytest.mark.smoke
@needs_coco
def test_smoke_config_trains_a_step_and_reports_frequency_bucket_ap(tmp_path):
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(SMOKE))
    assert isinstance(cfg.model, ConfigDict)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.indices = 4
    cfg.val_dataloader.dataset.indices = 3
    cfg.visualizer = dict(type="DetLocalVisualizer", vis_backends=[], name="visualizer")
    runner = Runner.from_cfg(cfg)
    head = runner.model.roi_head.bbox_head
    counts = category_counts(str(COCO / "annotations" / "instances_train2017.json"))
    assert torch.allclose(head.roi_weights[:80], 1 / (80 * torch.tensor(counts).clamp_min(1).float()))
    before = head.fc_cls_u.weight.detach().clone()
    runner.train()
    assert runner.iter == 1 and not torch.equal(before, head.fc_cls_u.weight)  # one optimiser step happened
    assert int(head.alpha.n) == 1
    metrics = runner.val()
    for iou in ("bbox", "segm"):
        for b in ("r", "c", "f"):
            v = metrics[f"coco/{iou}_AP_{b}"]
            assert np.isnan(v) or 0.0 <= v <= 1.0
        assert f"coco/{iou}_mAP" in metrics
    assert any(np.isfinite(metrics[f"coco/bbox_AP_{b}"]) for b in ("r", "c", "f"))
