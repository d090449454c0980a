"""Official checkpoints on a fixed subset of the paper's benchmarks: ``python -m g2sd.verify``.

    python -m g2sd.verify --checkpoint G2SD_ViT_S_SD --data /data/imagenet [--limit N]
    python -m g2sd.verify --checkpoint ViT_S_det.pth --data /data/coco       # detectron2 file, converted
    python -m g2sd.verify --checkpoint ViT_S_seg.pth --data /data/ade/ADEChallengeData2016

The checkpoint is a name from ``g2sd/RESULTS.yaml`` (looked up in the cache, or downloaded
where a URL is recorded) or a local file named as one of its entries. Classification:
top-1 on the first N images of ``val/`` in sorted order; detection: box AP with the entry's
MMDetection config on the first N val2017 images; segmentation: mIoU with its MMSegmentation
config on the first N validation images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.verify import Headline, verify_main

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.yaml"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def evaluate_classification(model_name: str, ckpt: Path, data: Path, limit: int | None) -> float:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from g2sd.convert import read_any_state_dict
    from g2sd.data import IMAGENET_MEAN, IMAGENET_STD
    from g2sd.engine.stages import load_classifier
    from g2sd.models import REGISTRY

    model = REGISTRY.build(model_name)
    load_classifier(model, read_any_state_dict(ckpt))
    folder = data / "val" if (data / "val").is_dir() else data
    tf = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = datasets.ImageFolder(str(folder), transform=tf)
    if limit:
        ds = Subset(ds, list(range(min(limit, len(ds)))))
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(ds, batch_size=64, num_workers=4):
            correct += (model(x).argmax(-1) == y).sum().item()
            total += y.numel()
    return 100.0 * correct / max(total, 1)


def evaluate_mm(config: str, ckpt: Path, data: Path, limit: int | None, kind: str) -> float:
    import tempfile

    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(PACKAGE_ROOT / config))
    cfg.work_dir = tempfile.mkdtemp(prefix="g2sd-verify-")
    cfg.load_from = None
    ds = cfg.test_dataloader.dataset
    ds.data_root = str(data) + "/"
    if limit:
        ds.indices = limit
    if kind == "det":
        cfg.test_evaluator.ann_file = str(data / ds.ann_file)
    # The teacher is not needed to evaluate the student; its weights stay random.
    cfg.model.teacher.checkpoint = None
    runner = Runner.from_cfg(cfg)
    if kind == "det":
        from g2sd.convert import detector_state_dict

        sd = detector_state_dict(ckpt)
    else:
        from g2sd.convert import mmseg0_to_mmseg1, read_any_state_dict

        sd = read_any_state_dict(ckpt)
        sd = mmseg0_to_mmseg1(sd) if any(k.startswith(("student.", "backbone.blocks.")) for k in sd) else sd
    model = runner.model
    missing = model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("teacher.")}, strict=False)
    student_missing = [k for k in missing.missing_keys if not k.startswith("teacher.") and "relative_position_index" not in k]
    if student_missing or missing.unexpected_keys:
        raise UserError(f"{ckpt} does not fit the student: missing {student_missing[:5]}, "
                        f"unexpected {missing.unexpected_keys[:5]}")
    metrics = runner.test()
    key = "coco/bbox_mAP" if kind == "det" else "mIoU"
    value = float(metrics[key])
    return value * 100.0 if kind == "det" else value


def evaluate(entry: Headline | None, path: Path, data: Path, limit: int | None) -> float:
    if entry is None:
        raise UserError(f"{path.name} is not named in g2sd/RESULTS.yaml; pass a checkpoint name or a file named as one")
    raw = entry.raw
    if raw.get("model"):
        return evaluate_classification(raw["model"], path, data, limit)
    if raw.get("config", "").startswith("configs/mmdet"):
        return evaluate_mm(raw["config"], path, data, limit, "det")
    if raw.get("config", "").startswith("configs/mmseg"):
        return evaluate_mm(raw["config"], path, data, limit, "seg")
    raise UserError(f"{entry.id} is a ratio of two results and has no checkpoint of its own")


def main(argv: Sequence[str] | None = None) -> int:
    return verify_main("g2sd", RESULTS, evaluate, argv)


if __name__ == "__main__":
    run_cli(main)
