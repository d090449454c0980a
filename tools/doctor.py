"""`make doctor`: the versions that matter, checked against the project's pins."""

from __future__ import annotations

import importlib.metadata as md
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = [
    "torch", "torchvision", "timm", "transformers", "diffusers", "accelerate", "safetensors",
    "mmengine", "mmcv", "mmdet", "mmsegmentation", "pycocotools", "sentencepiece", "numpy",
    "wandb", "pytest", "torchscale", "fairscale",
]


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "env" / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def main() -> int:
    want = pins()
    bad = 0
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"{'package':<16} {'installed':<14} {'pinned':<14} ok")
    for name in KEY:
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = "-"
        pin = want.get(name.lower(), "-")
        ok = have == pin or pin == "-"
        bad += not ok
        print(f"{name:<16} {have:<14} {pin:<14} {'yes' if ok else 'NO'}")
    checks = []
    try:
        import torch

        checks.append(("torch threads", str(torch.get_num_threads())))
        checks.append(("cuda available", str(torch.cuda.is_available())))
        checks.append(("cpu capability", torch.backends.cpu.get_cpu_capability()))
    except Exception as e:  # noqa: BLE001 - doctor reports, never crashes
        checks.append(("torch", f"FAILED: {e}"))
        bad += 1
    try:
        from mmcv.ops import nms  # noqa: F401 - compiled ops present

        checks.append(("mmcv compiled ops", "yes"))
    except Exception as e:  # noqa: BLE001
        checks.append(("mmcv compiled ops", f"NO ({e})"))
        bad += 1
    for mod in ("vlcore",) + tuple(p for p in (
        "magneto", "beit2", "maskdistill", "beit3", "g2sd", "imted", "lda", "conformer", "kosmos2", "kosmos_g")):
        try:
            __import__(mod)
            checks.append((f"import {mod}", "yes"))
        except Exception as e:  # noqa: BLE001
            checks.append((f"import {mod}", f"NO ({e})"))
            bad += 1
    for k, v in checks:
        print(f"{k:<20} {v}")
    print("doctor: all good" if not bad else f"doctor: {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
