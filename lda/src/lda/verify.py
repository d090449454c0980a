"""`python -m lda.verify --checkpoint NAME_OR_PATH --data ROOT [--limit N]`.

Evaluates a checkpoint's balanced head on a benchmark in its usual layout and
compares with `lda/RESULTS.yaml` when an expected value is recorded. The benchmark
is that of the named RESULTS entry, or found from ROOT's contents:

- `ROOT/ImageNet_LT_test.txt` (+ `ImageNet_LT_train.txt` for shot groups), images under ROOT;
- `ROOT/Places_LT_test.txt` (+ train), Places365 `data_large` layout under ROOT;
- `ROOT/cifar10/cifar10_subset.npz`: CIFAR-10 test images (model lda_bbn_resnet32_cifar10_lt).

The first N test images are used with --limit. No official checkpoint was released,
so only local files (official `best_model.pth` or ours) can be verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vlcore.checkpoint import CheckpointMismatchError
from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.verify import Headline, verify_main

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.yaml"
_SPLITS = {"imagenet_lt": ("ImageNet_LT", "lda_resnext50_32x4d_imagenet_lt", "as_listed"),
           "places_lt": ("Places_LT", "lda_resnet152_places_lt", "places365_large")}


def _benchmark(entry: Headline | None, data: Path) -> str:
    if entry is not None:
        for key in ("imagenet_lt", "places_lt", "cifar10_lt"):
            if entry.id.startswith(key):
                return key
    for key, (prefix, _, _) in _SPLITS.items():
        if (data / f"{prefix}_test.txt").is_file():
            return key
    if (data / "cifar10" / "cifar10_subset.npz").is_file():
        return "cifar10_lt"
    raise UserError(f"{data}: no ImageNet_LT_test.txt, Places_LT_test.txt or cifar10/cifar10_subset.npz inside")


@torch.no_grad()
def evaluate(entry: Headline | None, path: Path, data: Path, limit: int | None) -> float:
    from lda.convert import load_into
    from lda.data.longtail import shot_groups
    from lda.metrics import shot_accuracy
    from lda.models import REGISTRY

    bench = _benchmark(entry, data)
    if bench == "cifar10_lt":
        from lda.data.cifar_lt import normalise
        from vlcore.data.cifar import load_cifar10_arrays, long_tail_counts

        model_name = "lda_bbn_resnet32_cifar10_lt"
        test = load_cifar10_arrays("test", root=data)
        x = torch.from_numpy(np.ascontiguousarray(test.images.transpose(0, 3, 1, 2)))[:limit]
        y = torch.from_numpy(test.labels)[:limit]
        counts = long_tail_counts(n_max=5000, num_classes=10, imbalance_factor=100)
        batches = [(normalise(x[i:i + 256]), y[i:i + 256]) for i in range(0, len(y), 256)]
    else:
        from torch.utils.data import DataLoader, Subset

        from lda.data.build import image_transforms
        from lda.data.splits import SplitImageDataset, read_split
        from lda.config import LDATrainConfig

        prefix, model_name, layout = _SPLITS[bench]
        test_split = read_split(data / f"{prefix}_test.txt", bench)
        train_file = data / f"{prefix}_train.txt"
        counts = read_split(train_file, bench).class_counts() if train_file.is_file() else [0] * test_split.num_classes
        ds = SplitImageDataset(test_split, data, image_transforms(LDATrainConfig(), train=False), layout)
        if limit:
            ds = Subset(ds, range(min(limit, len(ds))))
        batches = DataLoader(ds, batch_size=64, num_workers=4)
    model = REGISTRY.build(model_name)
    ck_keys = None
    try:
        load_into(model, path, strict=True)
    except CheckpointMismatchError:
        model.neck = None  # trained without the neck (Places-LT, CIFAR-LT recipes)
        load_into(model, path, strict=True)
        ck_keys = "no neck"
    model.eval()
    preds, targets = [], []
    for xb, yb in batches:
        preds.append(model(xb).argmax(1))
        targets.append(yb)
    m = shot_accuracy(torch.cat(preds), torch.cat(targets), shot_groups(counts))
    print(f"{bench} ({model_name}{', ' + ck_keys if ck_keys else ''}): all {m['overall']:.2f} many {m['many']:.2f} "
          f"medium {m['medium']:.2f} few {m['few']:.2f} on {len(torch.cat(targets))} images")
    return m["overall"]


def main(argv: Sequence[str] | None = None) -> int:
    return verify_main("lda", RESULTS, evaluate, argv)


if __name__ == "__main__":
    run_cli(main)
