"""The mini reproduction in its CI size (`--size ci`: 3 seeds, shared S0 and judge, short stages).

The CI size is too short for the claim to hold (the recorded `full` run is in the README); this test
checks the contract and the parts that hold at any size: results/kosmos_g.json with per-seed rows
and `holds` equal to the pre-registered checks, the exit code following it, the frozen U-Net and
text encoder bit-identical on every seed (one shared hash), the judge reliable on clean renders,
and the sample grid and plot written.
"""

import json
import subprocess
import sys

import pytest


@pytest.mark.repro
@pytest.mark.slow
def test_mini_reproduction_ci_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kosmos_g.repro", "--size", "ci", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    r = json.loads((tmp_path / "kosmos_g.json").read_text())
    assert r["seeds"] == [0, 1, 2] and r["size"] == "ci" and r["data"].startswith("generated")
    ex = [r["extra"][str(s)] for s in r["seeds"]]
    assert all(e["unet_unchanged"] for e in ex)
    assert len({e["unet_hash"] for e in ex}) == 1  # one frozen decoder shared by the seeds
    assert ex[0]["judge_clean_accuracy"]["colour"] >= 0.9 and ex[0]["judge_clean_accuracy"]["background"] >= 0.9
    for e in ex:
        assert set(e["rows"]) == {"A", "B", "C", "D", "D_seen"}
        for row in e["rows"].values():
            assert all(0.0 <= row[k] <= 1.0 for k in ("subject", "colour", "shape", "background"))
    assert set(r["summary"]) == {"A", "B", "C", "D", "D_seen"}
    # method / baseline are D's and B's colour accuracy, and the verdict is the pre-registered checks
    assert r["method"]["per_seed"] == [e["rows"]["D"]["colour"] for e in ex]
    assert r["baseline"]["per_seed"] == [e["rows"]["B"]["colour"] for e in ex]
    c = r["checks"]
    assert c["colour_margin_every_seed"] == all(e["rows"]["D"]["colour"] - e["rows"]["B"]["colour"] >= 0.25 for e in ex)
    assert r["holds"] is bool(r["margin"] >= 0.25 and r["wins"] == 3 and all(c.values()))
    assert proc.returncode == (0 if r["holds"] else 1), proc.stderr[-2000:]
    assert (tmp_path / "kosmos_g_samples.png").stat().st_size > 500
    assert (tmp_path / "kosmos_g.png").stat().st_size > 1000
