"""The mini reproduction, default configuration (3 seeds, CIFAR-10 subset), against the recorded run.

Recorded (README, docs/recorded_run.json): linear probe MaskDistill 27.77 +- 0.83 vs pixel-target
28.90 +- 0.35, margin -1.13 (seed margins -2.0, -1.6, +0.2; 1 of 3 wins), so `holds: false`;
no-normalisation 29.30 (normalisation margin -1.53), random init 27.43, teacher 43.7.
Fine-tuning (one epoch on 1,000 images): 16.8 / 17.0 / 18.1 / 17.0.
The repro is single-threaded and deterministic on one machine; the tolerances cover other float
reduction orders (the calibration runs moved per-seed probes by up to ~1.5 points).
"""

import json
import subprocess
import sys

import pytest

from vlcore.data import shared_data_root


@pytest.mark.repro
@pytest.mark.slow
def test_mini_reproduction_matches_the_recorded_run(tmp_path):
    if not (shared_data_root() / "cifar10").is_dir():
        pytest.skip("the recorded run used the shared CIFAR-10 subset")
    proc = subprocess.run([sys.executable, "-m", "maskdistill.repro", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=1800)
    r = json.loads((tmp_path / "maskdistill.json").read_text())
    assert r["seeds"] == [0, 1, 2] and r["data"].startswith("real: CIFAR-10")
    assert r["method"]["mean"] == pytest.approx(27.77, abs=1.5)
    assert r["baseline"]["mean"] == pytest.approx(28.90, abs=1.5)
    assert r["margin"] == pytest.approx(-1.13, abs=1.5)
    s = r["summary"]
    assert 38.0 < s["teacher_probe"] < 50.0
    assert s["random_probe"] == pytest.approx(27.43, abs=1.5)
    assert s["nonorm_probe"] == pytest.approx(29.30, abs=1.5)
    for v in ("maskdistill", "nonorm", "pixel", "random"):
        assert 10.0 < s[f"{v}_finetune"] < 35.0
    for e in r["extra"].values():  # every variant's MIM loss went down
        for v in ("maskdistill", "nonorm", "pixel"):
            assert e[f"{v}_loss"][1] < e[f"{v}_loss"][0]
    # the verdict is the pre-registered criterion applied to these numbers; the exit code follows it
    assert r["holds"] is (r["margin"] >= 1.0 and r["wins"] >= 2 and r["normalisation_margin"] >= 0.5)
    assert proc.returncode == (0 if r["holds"] else 1), proc.stderr[-2000:]
    assert (tmp_path / "maskdistill.png").stat().st_size > 1000
