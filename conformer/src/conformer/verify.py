"""`python -m conformer.verify --checkpoint NAME_OR_PATH --data ROOT [--limit N]`: an official checkpoint on its benchmark.

NAME is a checkpoint name or an entry id of conformer/RESULTS.yaml; a local file works too
(its entry is found by file name, or it is taken as an ImageNet classifier whose configuration
is read from its shapes).

ImageNet entries: ROOT holds val/<class>/*.JPEG; top-1 (%) of the summed heads at 224
(bicubic resize 256, centre crop), over the first N images in ImageFolder order.
COCO entries: ROOT holds annotations/instances_val2017.json and val2017/; the detector
config named by the entry is run through MMDetection's test loop on the first N images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.verify import Headline, verify_main

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.yaml"
REPO = Path(__file__).resolve().parents[3]


def evaluate_imagenet(model_name: str | None, path: Path, data: Path, limit: int | None) -> float:
    import torch
    from timm.data import create_transform
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import ImageFolder

    from vlcore.checkpoint import load_state_dict_strict

    from conformer.convert import build_and_load, load_state_dict_any
    from conformer.engine import eval_fn
    from conformer.models import REGISTRY

    val = data / "val"
    if not val.is_dir():
        raise UserError(f"{val}: not found (expected the ImageNet val folder in ImageFolder layout)")
    sd = load_state_dict_any(path)
    if model_name:
        model = REGISTRY.build(model_name)
        load_state_dict_strict(model, sd, source=str(path))
    else:
        model = build_and_load(sd, source=str(path))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    ds = ImageFolder(str(val), create_transform(input_size=224, is_training=False, interpolation="bicubic",
                                                crop_pct=0.875))
    if limit:
        ds = Subset(ds, range(min(limit, len(ds))))
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(ds, batch_size=64, num_workers=min(4, os.cpu_count() or 1)):
            m = eval_fn(model, (x.to(device), y.to(device)))
            correct += float(m["acc1"]) * len(y) / 100
            total += len(y)
    return 100.0 * correct / max(total, 1)


def evaluate_coco(config: str, path: Path, data: Path, limit: int | None, segm: bool) -> float:
    from mmengine.config import Config
    from mmengine.runner import Runner

    from vlcore.checkpoint import load_state_dict_strict

    from conformer.convert import read_checkpoint, unwrap

    ann = data / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        raise UserError(f"{ann}: not found (expected COCO's annotations/ and val2017/ under --data)")
    cfg = Config.fromfile(str(REPO / config))
    cfg.model.backbone.init_cfg = None
    cfg.work_dir = str(Path.home() / ".cache" / "vlrepro" / "conformer_verify")
    ds = cfg.test_dataloader.dataset
    ds.data_root, ds.ann_file, ds.data_prefix = str(data) + "/", "annotations/instances_val2017.json", dict(img="val2017/")
    if limit:
        ds.indices = limit
    cfg.test_evaluator.ann_file = str(ann)
    runner = Runner.from_cfg(cfg)
    load_state_dict_strict(runner.model, unwrap(read_checkpoint(path), source=str(path)), source=str(path))
    metrics = runner.test()
    return 100.0 * metrics["coco/segm_mAP" if segm else "coco/bbox_mAP"]


def evaluate(entry: Headline | None, path: Path, data: Path, limit: int | None) -> float:
    kind = entry.raw.get("kind", "imagenet") if entry else "imagenet"
    model = entry.raw.get("model") if entry else None
    if kind == "imagenet":
        return evaluate_imagenet(model, path, data, limit)
    if not model:
        raise UserError(f"{entry.id}: no detector config recorded (the paper's config was not released)")
    return evaluate_coco(model, path, data, limit, segm=kind == "coco_segm")


def main(argv: Sequence[str] | None = None) -> int:
    return verify_main("conformer", RESULTS, evaluate, argv)


if __name__ == "__main__":
    run_cli(main)
