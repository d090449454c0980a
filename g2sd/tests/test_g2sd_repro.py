"""The mini reproduction (CI configuration): three seeds on the real CIFAR-10 subset, about 4-5 minutes.

Expected values come from the recorded run in ../README.md (2 single-threaded workers; every task seeds
itself, so the numbers do not depend on the schedule). That run did NOT reproduce the claim: GD + SD was
within noise of SD alone, so the test checks the measured outcome, not the paper's.
"""

import json
from pathlib import Path

import pytest

from g2sd import repro

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10" / "cifar10_subset.npz"

MEASURED = {"teacher": 39.7, "A": 29.93, "B": 30.90, "C": 28.97, "D": 30.47, "margin": -0.43}
TOL = 1.5  # points of top-1; the seed spread of single arms reached 2.3 on this set


@pytest.mark.repro
@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_file(), reason="needs ../shared/data/cifar10")
def test_default_mini_reproduction(tmp_path):
    rc = repro.main(["--out", str(tmp_path)])
    r = json.loads((tmp_path / "g2sd.json").read_text())
    assert r["seeds"] == [0, 1, 2] and r["data"].startswith("real: CIFAR-10")
    assert r["teacher_top1"] == pytest.approx(MEASURED["teacher"], abs=TOL)
    for arm in "ABCD":
        assert len(r["arms"][arm]["per_seed"]) == 3
        assert r["arms"][arm]["mean"] == pytest.approx(MEASURED[arm], abs=TOL), arm
    # The teacher is clearly stronger than every student arm (the precondition of distillation).
    assert all(r["teacher_top1"] > r["arms"][a]["mean"] + 5 for a in "ABCD")
    assert r["margin"] == pytest.approx(MEASURED["margin"], abs=TOL)
    assert r["holds"] is (r["margin"] > r["min_margin"]) and rc == (0 if r["holds"] else 1)
    assert r["holds"] is False  # the recorded outcome: the claim does not hold in this miniature
    assert (tmp_path / "g2sd.png").stat().st_size > 1000
