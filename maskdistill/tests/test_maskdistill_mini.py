"""The mini-reproduction pipeline at toy size: every variant trains, probes and fine-tunes."""

import pytest
import torch

from maskdistill.mini import VARIANTS, MiniConfig, build_objective_for, load_data, run_seed


@pytest.mark.smoke
def test_mini_pipeline_runs_every_variant():
    torch.set_num_threads(1)
    cfg = MiniConfig(max_pretrain_images=256, max_probe_images=300, teacher_epochs=1, mim_epochs=1, ft_epochs=1,
                     probe_steps=5, probe_wds=(1e-3,), dim=32, depth=2, heads=2, teacher_width=16)
    data = load_data(cfg)
    r = run_seed(cfg, data, 0, log=lambda s: None)
    for v in (*VARIANTS, "random"):
        assert 0.0 <= r[v]["probe"] <= 100.0 and 0.0 <= r[v]["finetune"] <= 100.0
    for v in VARIANTS:
        assert r[v]["steps"] == 2 and r[v]["loss_first"] > 0
    assert set(r["curves"]) == {f"{v} MIM loss" for v in VARIANTS}


@pytest.mark.unit
def test_variants_differ_only_in_the_objective():
    cfg = MiniConfig()
    teacher = torch.nn.Identity()
    a, b, c = (build_objective_for(v, cfg, teacher) for v in VARIANTS)
    assert (a.normalize, a.loss_kind, a.positions, a.beta) == ("layernorm", "smooth_l1", "masked", 1.0)
    assert (b.normalize, b.loss_kind, b.positions, b.beta) == ("none", "smooth_l1", "masked", 1.0)
    assert (c.normalize, c.loss_kind, c.positions, c.beta) == ("patch", "smooth_l1", "masked", 1.0)
    with pytest.raises(ValueError):
        build_objective_for("nope", cfg, teacher)
