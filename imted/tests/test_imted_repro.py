"""The mini reproduction (paste scenes, frozen MAE encoder, three box heads through the plug-in).

The slow test runs the CI configuration (`python -m imted.repro`, 3 seeds) and checks the recorded
numbers (imted/README.md) within the seed spread, and that `holds` is the pre-registered criterion
applied to them. The unit test checks the scene generator the experiment rests on.
"""

import json

import numpy as np
import pytest


@pytest.mark.unit
def test_cifar_paste_scenes_have_valid_boxes_and_classes():
    from imted.repro import BASE_CLASSES, _shape_bank, _iou, make_scenes, proposal_grid

    rng = np.random.default_rng(0)
    imgs, labels = _shape_bank(rng, per_class=4)
    bank = {c: imgs[labels == c] for c in range(10)}
    sc = make_scenes(bank, BASE_CLASSES, 40, rng)
    assert sc.images.shape == (40, 3, 64, 64)
    for b, l in zip(sc.boxes, sc.labels):
        assert 1 <= len(b) <= 3 and len(b) == len(l)
        assert set(l.tolist()) <= set(BASE_CLASSES)  # base scenes never show a novel class
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 64).all()
        side = b[:, 2] - b[:, 0]
        assert ((side >= 16) & (side <= 32)).all()
        for i in range(len(b)):
            for j in range(i):
                assert _iou(b[i], b[j]) < 0.3
    one = make_scenes(bank, range(10), 10, rng, forced=list(range(10)))
    assert [l.tolist() for l in one.labels] == [[c] for c in range(10)]  # K-shot: exactly one object each
    assert proposal_grid().shape == (256, 4)


@pytest.mark.unit
def test_unknown_object_source_is_rejected(tmp_path):
    from imted.repro import load_objects
    from vlcore.errors import UserError

    class Ctx:
        data_root = tmp_path

    with pytest.raises(UserError, match="objects must be"):
        load_objects(Ctx(), "mnist")
    banks, src = load_objects(Ctx(), "shapes")
    assert src.startswith("generated: procedural shapes") and sorted(banks["train"]) == list(range(10))


@pytest.mark.repro
@pytest.mark.slow
def test_mini_reproduction(tmp_path):
    from imted.repro import main

    code = main(["--out", str(tmp_path)])
    r = json.loads((tmp_path / "imted.json").read_text())
    s = r["summary"]
    assert r["seeds"] == [0, 1, 2] and r["data"].startswith("generated: procedural shapes")
    arms = s["arms"]
    # Randomly initialised share of backbone + RoI head: the pretrained-decoder head leaves the least.
    assert arms["imted"]["random_param_share"] < arms["random"]["random_param_share"] < arms["fc2"]["random_param_share"]
    # Every arm learns at this budget, so the comparison measures something. Recorded run (imted/README.md),
    # means over 3 seeds: base AP50 6.6 / 9.5 / 32.5, 5-shot novel AP50 6.1 / 6.6 / 16.0 (imted / random / fc2).
    recorded = {"imted": (6.6, 6.1), "random": (9.5, 6.6), "fc2": (32.5, 16.0)}
    for a, (base, novel) in recorded.items():
        assert arms[a]["base_ap50"]["mean"] > 3.0 and arms[a]["novel_ap50_5shot"]["mean"] > 1.0
        assert arms[a]["base_ap50"]["mean"] == pytest.approx(base, abs=3.0)
        assert arms[a]["novel_ap50_5shot"]["mean"] == pytest.approx(novel, abs=3.0)
    # The 2-fc head learns fastest at this budget (recorded: best base AP50 on every seed).
    assert all(f > max(i, rr) for f, i, rr in zip(arms["fc2"]["base_ap50"]["per_seed"],
                                                  arms["imted"]["base_ap50"]["per_seed"],
                                                  arms["random"]["base_ap50"]["per_seed"]))
    m, mb = s["margins"]["5shot"], s["margins"]["base"]
    want = bool(m["mean"] > 0 and m["wins"] >= 2 and m["mean"] > 2 * m["pooled_std"] and m["mean"] > mb["mean"])
    assert r["holds"] == want and code == (0 if want else 1)
    # Recorded outcome of the pre-registered criterion: the pretrained-decoder head loses (margin -9.9 AP50,
    # 0 of 3 seeds), so the claim does not hold in this miniature.
    assert r["holds"] is False and m["mean"] < 0
