"""`make bench`'s cases: every paper's ours / reference pair builds, takes the same batch and
returns outputs of the same shape (so the ratio compares the same computation), and the
benchmark writes BENCH.md. Timing itself is never asserted here."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
import torch

from vlcore import bench
from vlcore.papers import PAPERS

BENCH_PAPERS = [p.package for p in PAPERS if importlib.util.find_spec(f"{p.package}.bench") is not None]


def _shape(out):
    return tuple(out.shape) if torch.is_tensor(out) else tuple(_shape(o) for o in out)


@pytest.mark.smoke
@pytest.mark.parametrize("paper", BENCH_PAPERS)
def test_cases_compare_the_same_computation(paper):
    cases = importlib.import_module(f"{paper}.bench").cases(quick=True)
    assert cases, paper
    for case in cases:
        args = case.batch(1)
        torch.manual_seed(0)
        ours = case.ours().eval()
        with torch.no_grad():
            out = ours(*args)
            assert torch.isfinite(case.loss(out)), case.name
            if case.reference is not None:
                ref = case.reference().eval()
                assert _shape(ref(*args)) == _shape(out), case.name


@pytest.mark.smoke
def test_bench_writes_table(tmp_path):
    assert bench.main(["--quick", "--papers", "none", "--min-time", "0.01", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "BENCH.md").read_text()
    assert "Sub-LN encoder" in text and "| fp32 |" in text and "bf16" not in text.split("\n| owner")[1]
