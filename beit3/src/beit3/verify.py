"""`python -m beit3.verify --checkpoint NAME_OR_PATH --data ROOT [--limit N]`.

Evaluates an official BEiT-3 checkpoint (a name from ``beit3/RESULTS.yaml`` or a local
file named as one of its entries) and compares with the expected value recorded there.
Only ImageNet-1k classifiers have an evaluation path from official weights here: top-1 on
``ROOT/val/<wnid>/*`` (ImageFolder, sorted), first ``--limit`` images, resize 256 / center
crop 224, ImageNet statistics. VQA / captioning / retrieval headlines need the official
sentencepiece model and server-side evaluation and are refused with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.verify import Headline, verify_main

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.yaml"


def evaluate(entry: Headline | None, path: Path, data: Path, limit: int | None) -> float:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from vlcore.checkpoint import load_state_dict_strict, load_weights

    from beit3.convert import convert_unilm_beit3
    from beit3.data import IMAGENET_MEAN, IMAGENET_STD
    from beit3.models import BASE, LARGE, BEiT3ForImageClassification

    if entry is not None and "imagenet" not in entry.id:
        raise UserError(f"{entry.id}: no evaluation of this headline from official weights here (see RESULTS.yaml)")
    sd = convert_unilm_beit3(load_weights(path))
    if "head.weight" not in sd:
        raise UserError(f"{path.name} has no ImageNet head (head.weight)")
    arch = LARGE if sd["beit3.patch_embed.weight"].shape[0] == LARGE["embed_dim"] else BASE
    model = BEiT3ForImageClassification(num_classes=sd["head.weight"].shape[0], vocab_size=sd["beit3.text_embed.weight"].shape[0],
                                        max_text_len=sd["beit3.pos_embed_text.weight"].shape[0], **arch)
    load_state_dict_strict(model, sd)
    folder = data / "val" if (data / "val").is_dir() else data
    tf = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                             transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = datasets.ImageFolder(str(folder), transform=tf)
    if limit:
        ds = Subset(ds, list(range(min(limit, len(ds)))))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.eval().to(device)
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(ds, batch_size=64, num_workers=4):
            correct += (model(x.to(device)).argmax(-1).cpu() == y).sum().item()
            total += len(y)
    return 100.0 * correct / max(total, 1)


def main(argv: Sequence[str] | None = None) -> int:
    return verify_main("beit3", RESULTS, evaluate, argv)


if __name__ == "__main__":
    run_cli(main)
