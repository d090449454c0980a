"""The mini reproduction, in its default (CI) configuration: 3 seeds x 3 models on the CIFAR-10 subset.

Recorded run (conformer/README.md; single-threaded seeded workers, so a rerun on the same stack repeats it):
Conformer-micro summed heads 31.4 / 28.8 / 27.5 (mean 29.23); ResNet-micro 23.9 / 26.6 / 23.6; DeiT-micro
25.8 / 25.4 / 26.1; Conformer CNN head 28.8 / 29.1 / 26.9, transformer head 30.4 / 26.6 / 25.7. Margin over the
best alternative +0.43 < 0.5: the pre-registered criterion does not hold (the summed heads lose to the CNN head
on seed 1), although Conformer beats both equal-size baselines on every seed.
"""

import json

import pytest

from conformer.repro import SPEC, SeedRunner
from conformer.testing import one_torch_thread, shared_data  # noqa: F401  (fixtures)
from vlcore.repro import repro_main

TOL = 2.0  # points of top-1: other CPUs / BLAS builds change the float reduction order


@pytest.mark.repro
@pytest.mark.slow
def test_mini_reproduction_matches_the_recorded_run(tmp_path, shared_data):
    runner = SeedRunner()
    try:
        code = repro_main(SPEC, runner, ["--out", str(tmp_path), "--data-root", str(shared_data)])
    finally:
        runner.close()
    r = json.loads((tmp_path / "conformer.json").read_text())
    assert r["seeds"] == [0, 1, 2] and r["data"].startswith("real: CIFAR-10 subset (5000 train / 1000 test")
    assert (tmp_path / "conformer.png").stat().st_size > 1000
    params = [e["params"] for e in r["extra"].values()][0]
    assert max(params.values()) / min(params.values()) < 1.01  # equal budgets
    top1 = {k: [r["extra"][s]["top1"][k] for s in ("0", "1", "2")] for k in r["extra"]["0"]["top1"]}
    mean = {k: sum(v) / 3 for k, v in top1.items()}
    assert mean["conformer"] == pytest.approx(29.23, abs=TOL)
    assert mean["resnet"] == pytest.approx(24.70, abs=TOL) and mean["deit"] == pytest.approx(25.77, abs=TOL)
    # the part of the claim that holds: Conformer beats both equal-size baselines (recorded: on every seed,
    # by +1.4 to +5.6 points; the mean by +3.5)
    assert mean["conformer"] > max(mean["resnet"], mean["deit"]) + 1.0
    assert r["margin"] == pytest.approx(0.43, abs=TOL)
    assert r["holds"] is (r["margin"] >= SPEC.min_margin and r["wins"] >= 2)
    assert code == (0 if r["holds"] else 1)
