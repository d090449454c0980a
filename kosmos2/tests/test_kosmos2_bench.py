"""kosmos2.bench: the benchmark case builds both models and they agree on the output shape."""

import pytest
import torch

from kosmos2.bench import cases, generation_speed


@pytest.mark.unit
def test_bench_case_runs_ours_and_the_reference():
    (case,) = cases(quick=True)
    args = case.batch(case.batch_size)
    ours, ref = case.ours().eval(), case.reference().eval()
    with torch.no_grad():
        a, b = ours(*args), ref(*args)
    assert a.shape == b.shape == (*args[1].shape, 2048)
    assert case.loss(a).ndim == 0


@pytest.mark.unit
def test_generation_speed_reports_both_sides():
    r = generation_speed(quick=True, new_tokens=4)
    assert r["ours_tokens_per_s"] > 0 and r["hf_tokens_per_s"] > 0
