"""Benchmark cases of conformer for `make bench` (`python -m vlcore.bench --papers conformer`).

Conformer-S/16 as a classifier. No reference row: our model already uses the official module and
parameter names (official checkpoints load into it directly), and the official repository's code is
not an installable package, so there is no second implementation to time. The row reports our
throughput, memory and FLOP rate."""

from __future__ import annotations

import torch

from vlcore.bench import BenchCase


def cases(quick: bool) -> list[BenchCase]:
    from conformer.models import REGISTRY

    size, batch = (112, 4) if quick else (224, 16)
    return [BenchCase(
        name=f"Conformer-S/16 classifier @{size}", batch_size=batch,
        ours=lambda: REGISTRY.build("conformer_small_patch16_224"),
        reference=None, reference_name="-",
        batch=lambda b: (torch.randn(b, 3, size, size),),
    )]


if __name__ == "__main__":  # python -m conformer.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "conformer", *sys.argv[1:]]))
