"""Entry points: convert round trip through files, bad input exits 2 with one line."""

import subprocess
import sys

import pytest
import torch

from vlcore.checkpoint import load_state_dict_strict, load_weights

from beit3.convert import main as convert_main
from beit3.models import BEiT3ForRetrieval
from beit3.testing import TINY, torchscale_beit3


@pytest.mark.smoke
def test_convert_cli_writes_loadable_safetensors(tmp_path):
    ts = torchscale_beit3()
    d = TINY["embed_dim"]
    sd = {"beit3." + k: v for k, v in ts.state_dict().items()}
    sd.update({"vision_head.weight": torch.zeros(d, d), "language_head.weight": torch.zeros(d, d), "logit_scale": torch.tensor(1.0)})
    torch.save({"model": sd}, tmp_path / "official.pth")
    with pytest.raises(SystemExit) as e:
        from vlcore.cli import run_cli

        run_cli(convert_main, ["--src", str(tmp_path / "official.pth"), "--out", str(tmp_path / "ours.safetensors")])
    assert e.value.code == 0
    load_state_dict_strict(BEiT3ForRetrieval(**TINY), load_weights(tmp_path / "ours.safetensors"))


@pytest.mark.smoke
def test_convert_cli_bad_input_one_line(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    out = subprocess.run(
        [sys.executable, "-m", "beit3.convert", "--src", str(tmp_path / "x.pth"), "--out", str(tmp_path / "y.safetensors")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1
