"""The mini reproduction's default configuration (3 seeds), as CI runs it (about 4 min on 2 cores).

What is asserted is the claim machinery, not a particular outcome: every seed reports the
three backbones' VQA accuracy and the COCO retrieval recall@1/5, every model learns the VQA
task (beats the majority answer), and ``holds`` is exactly the pre-registered criterion
(mean margin >= 3 points and 3/3 seed wins) applied to the per-seed numbers.
"""

import json

import pytest

from vlcore.repro import evaluate_claim

from beit3.repro import SPEC, main


@pytest.mark.unit
def test_claim_criterion_is_the_registered_one():
    assert (SPEC.min_margin, SPEC.default_seeds, SPEC.min_seed_wins, SPEC.higher_is_better) == (3.0, 3, 3, True)
    assert evaluate_claim(SPEC, [50.0, 51.0, 52.0], [46.0, 47.0, 48.0])["holds"] is True
    assert evaluate_claim(SPEC, [50.0, 51.0, 40.0], [46.0, 47.0, 41.0])["holds"] is False  # 2/3 wins
    assert evaluate_claim(SPEC, [50.0, 51.0, 52.0], [49.0, 50.0, 51.0])["holds"] is False  # margin 1 < 3


@pytest.mark.repro
@pytest.mark.slow
def test_repro_default_configuration(tmp_path):
    try:
        main(["--out", str(tmp_path)])
    except SystemExit:
        pass  # exit 1 when the claim does not hold
    res = json.loads((tmp_path / "beit3.json").read_text())
    assert (tmp_path / "beit3.png").exists()
    m, b = res["method"]["per_seed"], res["baseline"]["per_seed"]
    assert len(m) == 3 and len(b) == 3
    assert res["holds"] == evaluate_claim(SPEC, m, b)["holds"]
    for seed in ("0", "1", "2"):
        ex = res["extra"][seed]
        for name in ("multiway_mdm", "multiway_scratch", "dense_mdm"):
            assert ex[f"vqa_{name}"] > ex["majority_answer_acc"] + 2.0, (seed, name)  # the model learns the task
        for name in ("multiway_mdm", "multiway_scratch"):
            for k in ("tr@1", "tr@5", "ir@1", "ir@5"):
                assert 0.0 <= ex[f"coco_{k}_{name}"] <= 100.0
            assert ex[f"coco_tr@5_{name}"] >= ex[f"coco_tr@1_{name}"]
        assert ex["coco_val_images"] == 283
