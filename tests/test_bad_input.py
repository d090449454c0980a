"""Bad input to the papers' command lines: each case exits 2 with one stderr line naming the cause (and the
file), leaves a good output file untouched, and never runs a pickled payload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vlcore.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _fails(capsys, main, argv, *needles: str) -> str:
    """Run an entry point in-process; assert exit 2 and one stderr line holding every needle."""
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert str(n).lower() in err.lower(), (n, err)
    return err


class _Payload:
    """Unpickling this runs `open(marker, 'w')`: a stand-in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_ckpt(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "evil": _Payload(str(marker))}, path)
    return path


def _truncated(path: Path) -> Path:
    good = path.with_suffix(".full")
    save_file({"w": torch.randn(64, 64)}, str(good))
    path.write_bytes(good.read_bytes()[:200])
    return path


def _good_out(path: Path) -> bytes:
    save_file({"keep": torch.arange(4.0)}, str(path))
    return path.read_bytes()


# --------------------------------------------------------------------------- config
CONFIG_PAPERS = [("lda", "cifar10_lt_smoke"), ("magneto", "gpt_tiny")]


@pytest.mark.unit
@pytest.mark.parametrize("paper,preset", CONFIG_PAPERS)
def test_train_unknown_config_key(capsys, paper, preset):
    torch.manual_seed(0)
    main = __import__(f"{paper}.train", fromlist=["main"]).main
    _fails(capsys, main, ["--config", preset, "--set", "no_such_key=1"], "no_such_key")


@pytest.mark.unit
@pytest.mark.parametrize("paper,preset", CONFIG_PAPERS)
def test_eval_missing_checkpoint(capsys, tmp_path, paper, preset):
    main = __import__(f"{paper}.eval", fromlist=["main"]).main
    _fails(capsys, main, ["--config", preset, "--checkpoint", tmp_path / "gone.safetensors"], "gone.safetensors")


@pytest.mark.unit
def test_train_unknown_key_in_yaml(capsys, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("made_up_section:\n  x: 1\n")
    from lda.train import main
    _fails(capsys, main, ["--config", cfg], "made_up_section")


@pytest.mark.unit
def test_train_missing_config_file(capsys, tmp_path):
    from magneto.train import main
    _fails(capsys, main, ["--config", tmp_path / "absent.yaml"], "absent")


@pytest.mark.unit
def test_config_non_utf8_yaml(capsys, tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("seed: 1  # caf\xe9\n".encode("latin-1"))
    from lda.train import main
    _fails(capsys, main, ["--config", cfg], "latin1.yaml")


# --------------------------------------------------------------------------- checkpoints
def _convert_argv(paper: str, src: Path, out: Path) -> list:
    return {
        "lda": ["--src", src, "--model", "lda_resnet32_cifar10_lt", "--out", out],
        "magneto": ["--src", src, "--kind", "decoder_lm", "--out", out],
        "beit2": ["--input", src, "--output", out],
        "g2sd": ["cls", src, out],
    }[paper]


CONVERTERS = ["lda", "magneto", "beit2", "g2sd"]


@pytest.mark.unit
@pytest.mark.parametrize("paper", CONVERTERS)
def test_convert_pickle_payload_never_runs(capsys, tmp_path, paper):
    marker = tmp_path / "PWNED"
    src = _pickle_ckpt(tmp_path / "evil.pth", marker)
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, _convert_argv(paper, src, out), "evil.pth")
    assert not marker.exists()
    assert out.read_bytes() == good


@pytest.mark.unit
@pytest.mark.parametrize("paper", CONVERTERS)
def test_convert_truncated_safetensors(capsys, tmp_path, paper):
    src = _truncated(tmp_path / "cut.safetensors")
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, _convert_argv(paper, src, out), "cut.safetensors")
    assert out.read_bytes() == good


@pytest.mark.unit
@pytest.mark.parametrize("paper", CONVERTERS)
def test_convert_wrong_model_checkpoint(capsys, tmp_path, paper):
    src = tmp_path / "other.safetensors"
    save_file({"totally.unrelated.weight": torch.randn(3, 3)}, str(src))
    out = tmp_path / "out.safetensors"
    good = _good_out(out)
    main = __import__(f"{paper}.convert", fromlist=["main"]).main
    _fails(capsys, main, _convert_argv(paper, src, out))
    assert out.read_bytes() == good
