"""The mini reproduction at its CI configuration (3 seeds, 30 epochs, ce / reweight / lda).

Expected values come from the recorded runs (lda/README.md): LDA beats cross-entropy by
+5.5 points overall and +27 on few-shot classes, and ties class re-weighting (-0.7 with a
2x pooled std of 3.3), so the pre-registered claim does not hold in this miniature.
Tolerances cover the seed spread seen (std <= 1.7 points per arm).
"""

import json

import pytest

from vlcore.data.paths import shared_data_root


@pytest.mark.repro
@pytest.mark.slow
@pytest.mark.skipif(not (shared_data_root() / "cifar10" / "cifar10_subset.npz").is_file(),
                    reason="shared CIFAR-10 subset not present")
def test_mini_reproduction(tmp_path):
    from lda.repro import main

    code = main(["--out", str(tmp_path)])
    r = json.loads((tmp_path / "lda.json").read_text())
    s = r["summary"]
    a = {arm: {g: v["mean"] for g, v in s["arms"][arm].items()} for arm in ("ce", "reweight", "lda")}
    assert r["seeds"] == [0, 1, 2] and r["data"].startswith("real: CIFAR-10 subset")
    # LDA over plain cross-entropy: measured +5.5 overall, +27.4 few-shot, +24.4 medium.
    assert a["lda"]["overall"] - a["ce"]["overall"] > 3.0
    assert a["lda"]["few"] - a["ce"]["few"] > 15.0 and a["lda"]["medium"] - a["ce"]["medium"] > 15.0
    # LDA vs class re-weighting: measured -0.7 (a tie within the seed spread).
    assert abs(a["lda"]["overall"] - a["reweight"]["overall"]) < 4.0
    # The verdict is the pre-registered criterion applied to these numbers, and the exit code follows it.
    want = bool(s["margin_exceeds_2x_pooled_std"] and s["few_highest"] and r["wins"] >= 2)
    assert r["holds"] == want and code == (0 if want else 1)
