"""`python -m beit2.verify --checkpoint NAME_OR_PATH --data ROOT [--limit N]`.

Evaluates an official BEiT v2 checkpoint (a name from ``beit2/RESULTS.yaml`` or a local
file) on the fixed subset recorded there and compares with the expected value:

* fine-tuned classifiers: top-1 on ImageNet-1k val in ImageFolder layout
  (``ROOT/val/<wnid>/*`` or ``ROOT/<wnid>/*``), images sorted by path, first ``--limit``;
* the VQ-KD tokenizer: codebook usage (%) on the same images.

Segmentation and linear-probe headlines are listed in RESULTS.yaml but have no
evaluation path from official weights yet (``ours: pending``); asking for them is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.verify import Headline, verify_main

from beit2.convert import convert, detect_layout, read_checkpoint
from beit2.data import ImageFolderDataset, classification_transform
from beit2.eval import evaluate_classifier

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.yaml"


def _images(data: Path) -> Path:
    return data / "val" if (data / "val").is_dir() else data


def evaluate(entry: Headline | None, path: Path, data: Path, limit: int | None) -> float:
    task = entry.raw.get("task", "classification") if entry else None
    sd = read_checkpoint(path)
    layout = detect_layout(sd)
    if task is None:
        task = "codebook_usage" if layout == "vqkd" else "classification"
    if task not in ("classification", "codebook_usage"):
        raise UserError(f"{entry.id}: no evaluation of '{task}' headlines from official weights yet (see RESULTS.yaml)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if task == "codebook_usage":
        _, tok, _ = convert(sd, layout="vqkd")
        tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor()])
        ds = ImageFolderDataset(_images(data), transform=tf, limit=limit)
        tok.eval().to(device).quantize.reset_usage()
        with torch.no_grad():
            for x, _ in DataLoader(ds, batch_size=64):
                tok.get_codebook_indices(x.to(device))
        return 100.0 * tok.quantize.usage()["usage"]
    if layout != "finetune":
        raise UserError(f"{path.name}: a {layout} checkpoint has no classifier; use a fine-tuned one")
    _, model, _ = convert(sd, layout="finetune", model_name=entry.raw.get("model") if entry else None)
    ds = ImageFolderDataset(_images(data), transform=classification_transform(train=False), limit=limit)
    if model.num_classes != len(ds.classes):
        raise UserError(f"the classifier has {model.num_classes} classes, {data} has {len(ds.classes)} class folders")
    return evaluate_classifier(model, ds, device=device)["top1"]


def main(argv: Sequence[str] | None = None) -> int:
    return verify_main("beit2", RESULTS, evaluate, argv)


if __name__ == "__main__":
    run_cli(main)
