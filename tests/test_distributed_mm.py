"""mmengine plug-in under torchrun: 2 CPU processes (gloo) equal one process on the same global batch.

The beit2 UperNet plug-in, scaled down (``scripts/seg_dist.py``), takes 10 SGD updates with momentum and
weight decay, each over 4 image slots (the 2 ADE20K sample images, twice): 2 processes x 1 image x 2
accumulation steps against 1 process x 1 image x 4 steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlcore.data.paths import shared_data_root

SCRIPT = Path(__file__).parent / "scripts" / "seg_dist.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
UPDATES = 10

pytestmark = [pytest.mark.smoke, pytest.mark.slow]


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def test_two_process_plugin_run_equals_one_process(tmp_path: Path):
    pytest.importorskip("mmseg")
    if not (shared_data_root() / "ade20k_sceneparsing_sample").is_dir():
        pytest.skip("ADE20K sample not available")
    one = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "--batch", "1", "--accum", "4",
                          "--iters", str(4 * UPDATES)], capture_output=True, text=True, env=_env(), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / "two"),
                          "--batch", "1", "--accum", "2", "--iters", str(2 * UPDATES)],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "final.safetensors"))
    b = load_file(str(tmp_path / "two" / "final.safetensors"))
    init = load_file(str(tmp_path / "one" / "init.safetensors"))
    assert a.keys() == b.keys()
    moved = max((a[k].float() - init[k].float()).abs().max().item() for k in a)
    assert moved > 1e-2  # the updates did something
    diff = {k: (a[k].float() - b[k].float()).abs().max().item() for k in a}
    worst = sorted(diff, key=diff.get, reverse=True)[:3]
    assert max(diff.values()) < 1e-6, {k: diff[k] for k in worst}
