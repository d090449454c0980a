"""The mini reproduction, default configuration (3 seeds, CIFAR-10 subset), against the recorded run.

Recorded (README): VQ-KD MIM 29.60 +- 1.21 vs pixel-code MIM 28.53 +- 1.17 linear-probe top-1,
margin +1.07 (seed margins +1.3, +0.9, +1.0; VQ-KD wins 3 of 3), below the pre-registered 2.0 points,
so the claim does not hold in this miniature; VQ-KD codebook usage 0.51; teacher 46.8, no
pretraining 27.0. The repro runs single-threaded and is deterministic on one machine; the
tolerances cover platforms whose float reduction order differs: the same pipeline with two threads
gave 28.83 vs 28.97 (margin -0.13; seed margins +1.8, +0.2, -2.4), still `holds: false`.
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
    proc = subprocess.run([sys.executable, "-m", "beit2.repro", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=1800)
    r = json.loads((tmp_path / "beit2.json").read_text())
    assert r["seeds"] == [0, 1, 2] and r["data"].startswith("real: CIFAR-10")
    assert r["method"]["mean"] == pytest.approx(29.60, abs=2.0)
    assert r["baseline"]["mean"] == pytest.approx(28.53, abs=2.0)
    assert r["margin"] == pytest.approx(1.07, abs=1.5)
    s = r["summary"]
    assert 40.0 < s["teacher_probe"] < 55.0 and s["no_pretraining_probe"] < r["baseline"]["mean"] + 1.0
    assert s["vqkd_codebook_usage"] == pytest.approx(0.51, abs=0.25)
    # the verdict is the pre-registered criterion applied to these numbers, and the exit code follows it
    assert r["holds"] is (r["margin"] >= 2.0 and r["wins"] == 3 and s["vqkd_codebook_usage"] >= 0.5)
    assert proc.returncode == (0 if r["holds"] else 1), proc.stderr[-2000:]
    assert (tmp_path / "beit2.png").stat().st_size > 1000
