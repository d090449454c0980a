"""The entry-point contract every paper follows (models, repro, report, verify, errors)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.papers import PAPERS
from vlcore.registry import ModelRegistry
from vlcore.repro import ReproSpec, SeedResult, repro_main
from vlcore import report, verify

ROOT = Path(__file__).resolve().parents[1]


# One interpreter runs every paper's `models` module as `python -m` would
# (runpy, __main__), from a foreign working directory: one torch import, not ten.
_RUN_ALL_MODELS = """
import contextlib, io, json, runpy, sys
out = {}
for paper in sys.argv[1:]:
    buf = io.StringIO()
    sys.argv = [paper + ".models", "--json"]
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_module(paper + ".models", run_name="__main__", alter_sys=True)
        except SystemExit as e:
            assert not e.code, (paper, e.code)
    out[paper] = json.loads(buf.getvalue())
print(json.dumps(out))
"""


@pytest.mark.smoke
def test_models_json_runs_for_every_paper_from_any_directory(tmp_path):
    papers = [p.package for p in PAPERS]
    out = subprocess.run(
        [sys.executable, "-c", _RUN_ALL_MODELS, *papers], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tables = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(tables) == sorted(papers)
    for paper, rows in tables.items():
        for r in rows:
            assert r["params"] > 0
            if r.get("paper_params_m") is not None:
                assert r["matches_paper"], f"{paper}/{r['name']}: {r['params_m']} M vs paper {r['paper_params_m']} M"


@pytest.mark.unit
def test_registry_counts_on_meta_and_checks_paper_numbers():
    reg = ModelRegistry("toy")

    @reg.register(paper_params_m=0.0012, tolerance=0.01)
    def toy_mlp():
        """Two linear layers."""
        return torch.nn.Sequential(torch.nn.Linear(10, 100), torch.nn.Linear(100, 0 + 1))

    [row] = reg.table()
    assert row["params"] == 10 * 100 + 100 + 100 + 1
    assert row["matches_paper"] and row["description"] == "Two linear layers."
    with pytest.raises(KeyError, match="did you mean 'toy_mlp'"):
        reg.get("toy_mpl")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("toy_mlp")(toy_mlp)


def _spec(margin):
    return ReproSpec(
        paper="toy", claim="method beats baseline", metric="acc", higher_is_better=True,
        method="M", baseline="B", min_margin=margin, default_seeds=3,
    )


def _run_seed(seed, ctx):
    ctx.note_data("generated: nothing")
    return SeedResult(method=0.8 + 0.01 * seed, baseline=0.7, curves={"M": [[0, 0.1], [1, 0.8]], "B": [[0, 0.1], [1, 0.7]]})


@pytest.mark.smoke
def test_repro_writes_result_plot_and_exit_code(tmp_path):
    assert repro_main(_spec(0.05), _run_seed, ["--out", str(tmp_path), "--seeds", "3"]) == 0
    r = json.loads((tmp_path / "toy.json").read_text())
    assert r["holds"] and r["seeds"] == [0, 1, 2] and r["method"]["per_seed"] == pytest.approx([0.8, 0.81, 0.82])
    assert r["margin"] == pytest.approx(0.11) and r["data"] == "generated: nothing"
    assert (tmp_path / "toy.png").stat().st_size > 1000
    # The same numbers against a margin they do not reach: exit 1, holds false.
    assert repro_main(_spec(0.5), _run_seed, ["--out", str(tmp_path), "--seeds", "2"]) == 1
    assert json.loads((tmp_path / "toy.json").read_text())["holds"] is False


@pytest.mark.smoke
def test_report_tabulates_results_and_pending_papers(tmp_path):
    spec = ReproSpec(paper="magneto", claim="c", metric="bpc", higher_is_better=False, method="M", baseline="B", min_margin=0.0)
    run = lambda seed, ctx: SeedResult(method=1.0, baseline=1.5)  # noqa: E731
    assert repro_main(spec, run, ["--out", str(tmp_path), "--seeds", "2"]) == 0
    assert report.main(["--out", str(tmp_path)]) == 0
    md = (tmp_path / "REPRO.md").read_text()
    assert "| magneto | c |" in md and "+0.500" in md
    assert f"not implemented yet (issue #{PAPERS[1].issue})" in md


@pytest.mark.convert
def test_verify_resolves_local_checkpoints_checks_sha_and_fails_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("VLREPRO_CACHE", str(tmp_path / "cache"))
    ck = tmp_path / "tiny.pth"
    torch.save({"w": torch.ones(3)}, ck)
    sha = verify.sha256_file(ck)
    res = tmp_path / "RESULTS.yaml"
    res.write_text(yaml.safe_dump({"paper": "toy", "results": [
        {"id": "toy_head", "metric": "top-1", "benchmark": "toy-val", "paper_value": 80.0,
         "checkpoint": {"name": "toy_ckpt", "url": f"file://{tmp_path}/missing.pth", "sha256": sha, "filename": "toy.pth"},
         "eval_subset": "all", "expected": {"value": 3.0, "tolerance": 1e-6}, "ours": "converted"}]}))
    heads = verify.load_results(res)
    # A named checkpoint that is neither cached nor downloadable: one clear error.
    with pytest.raises(verify.CheckpointUnavailableError, match="cannot download toy_ckpt"):
        verify.resolve_checkpoint("toy_ckpt", heads, "toy")
    # Put it in the cache: found, sha256 checked.
    dest = tmp_path / "cache" / "checkpoints" / "toy" / "toy.pth"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(ck.read_bytes())
    path, entry = verify.resolve_checkpoint("toy_ckpt", heads, "toy")
    assert path == dest and entry.id == "toy_head"
    dest.write_bytes(ck.read_bytes()[:-3] + b"xyz")
    with pytest.raises(verify.CheckpointUnavailableError, match="does not match"):
        verify.resolve_checkpoint("toy_ckpt", heads, "toy")

    def evaluate(entry, path, data, limit):
        return float(torch.load(path, weights_only=True)["w"].sum())

    assert verify.verify_main("toy", res, evaluate, ["--checkpoint", str(ck), "--data", str(tmp_path)]) == 0


@pytest.mark.unit
def test_run_cli_turns_user_errors_into_one_line(capsys):
    def bad(argv):
        raise UserError("config key 'model.dpeth' is unknown\nsecond line")

    with pytest.raises(SystemExit) as e:
        run_cli(bad, [])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: config key 'model.dpeth' is unknown\n"


@pytest.mark.unit
def test_paper_test_folders_import_helpers_from_their_package():
    """Every `<paper>/tests` is collected as the package `tests`: a conftest.py or a relative import of a
    sibling helper resolves to whichever paper's folder pytest met first. Helpers live in `<paper>.testing`."""
    offenders = []
    for tests_dir in sorted(ROOT.glob("*/tests")):
        if (tests_dir / "conftest.py").exists():
            offenders.append(f"{tests_dir / 'conftest.py'}")
        for f in sorted(tests_dir.glob("*.py")):
            if any(line.startswith("from .") for line in f.read_text().splitlines()):
                offenders.append(f"{f}: relative import")
    assert not offenders, "\n".join(offenders)


@pytest.mark.unit
def test_test_module_names_are_unique_across_folders():
    """For the same reason two test files of one name in different folders are one module `tests.<name>`:
    pytest runs the first one it met under both paths and the second file's tests never run. Paper test
    files are named `test_<paper>_*.py`."""
    seen: dict[str, list[str]] = {}
    for tests_dir in [ROOT / "tests", ROOT / "common" / "tests", *sorted(ROOT.glob("*/tests"))]:
        for f in tests_dir.glob("test_*.py"):
            seen.setdefault(f.name, []).append(str(f.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(set(paths)) > 1}
    assert not clashes, clashes
    papers = [p for p in ROOT.glob("*/tests") if (p.parent / "pyproject.toml").is_file() and p.parent.name != "common"]
    unprefixed = [str(f.relative_to(ROOT)) for p in papers for f in p.glob("test_*.py")
                  if not f.name.startswith(f"test_{p.parent.name}_")]
    assert not unprefixed, unprefixed
