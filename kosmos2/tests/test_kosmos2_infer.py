"""python -m kosmos2.infer: boxes drawn on the user's image, JSON printed, one-line errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from kosmos2 import infer
from kosmos2.grounding import box_to_loc_text
from kosmos2.testing_text import train_tiny_sentencepiece
from vlcore.checkpoint import save_weights
from vlcore.cli import run_cli

TINY = ["--model", "kosmos2_tiny_patch8_32"]


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    return str(train_tiny_sentencepiece(tmp_path_factory.mktemp("spm")))


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "in.png"
    Image.new("RGB", (200, 100), (255, 255, 255)).save(p)
    return p


@pytest.mark.unit
def test_draw_entities_puts_rectangles_at_scaled_boxes(image, tmp_path):
    out = tmp_path / "o.png"
    n = infer.draw_entities(image, [("a dog", (0, 5), [(0.1, 0.2, 0.5, 0.8), (0.6, 0.1, 0.9, 0.9)])], out, line_width=2)
    assert n == 2
    a = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert a.shape == (100, 200, 3)
    colour = np.array(infer.PALETTE[0])
    # left edge of the first box at x = 0.1 * 200 = 20, rows 20..80; inside stays white
    assert (np.abs(a[50, 20] - colour).sum() < 10) and (a[50, 60] == 255).all()
    assert np.abs(a[50, 180] - colour).sum() < 10  # right edge of the second box at x = 0.9 * 200


@pytest.mark.smoke
def test_cli_with_tiny_random_model_and_checkpoint(spm_file, image, tmp_path, capsys):
    from kosmos2.models import build_model

    torch.manual_seed(0)
    ck = tmp_path / "w.safetensors"
    save_weights(build_model("kosmos2_tiny_patch8_32").state_dict(), ck)
    out = tmp_path / "out.png"
    assert infer.main(["--image", str(image), "--prompt", "<grounding> a photo of", "--spm", spm_file, *TINY, "--checkpoint", str(ck), "--max-new-tokens", "4", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert out.is_file() and Image.open(out).size == (200, 100)
    assert res["text"].startswith("<grounding> a photo of") and res["boxes_drawn"] == sum(len(e["boxes"]) for e in res["entities"])


@pytest.mark.unit
def test_cli_draws_the_generated_boxes(spm_file, image, tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_generate(model, proc, img, prompt, *a, bboxes=None, **k):
        seen["bboxes"] = bboxes
        return "<s><image></image>" + prompt + " a<phrase> red ball</phrase><object>" + box_to_loc_text([(0.25, 0.25, 0.75, 0.75)], 32) + "</object>."

    monkeypatch.setattr(infer, "generate_text", fake_generate)
    out = tmp_path / "o.png"
    infer.main(["--image", str(image), "--prompt", "<grounding><phrase> It</phrase> is", "--bbox", "0.1,0.1,0.4,0.4", "--spm", spm_file, *TINY, "--out", str(out)])
    res = json.loads(capsys.readouterr().out)
    assert seen["bboxes"] == [(0.1, 0.1, 0.4, 0.4)]
    assert [e["phrase"] for e in res["entities"]] == ["red ball"] and res["boxes_drawn"] == 1
    # original rule: cells 8 and 24 of 32 (0.75 * 32 = 24 exactly); centre decode -> 8.5/32 .. 24.5/32 of the width
    assert res["entities"][0]["boxes_px"][0] == pytest.approx([8.5 / 32 * 200, 8.5 / 32 * 100, 24.5 / 32 * 200, 24.5 / 32 * 100])
    a = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert not (a == 255).all()


@pytest.mark.smoke
def test_bad_inputs_give_one_line_errors(spm_file, image, tmp_path, capsys):
    def run(*args):
        with pytest.raises(SystemExit) as e:
            run_cli(infer.main, list(args))
        return e.value.code, capsys.readouterr().err.strip().splitlines()

    base = ["--spm", spm_file, *TINY, "--out", str(tmp_path / "o.png")]
    code, err = run("--image", str(tmp_path / "nope.png"), *base)
    assert code == 2 and len(err) == 1 and "nope.png" in err[0]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code, err = run("--image", str(tmp_path / "bad.png"), *base)
    assert code == 2 and len(err) == 1 and "bad.png" in err[0]
    code, err = run("--image", str(image), "--bbox", "0.5,0.5,0.1", *base)
    assert code == 2 and len(err) == 1 and "--bbox" in err[0]
    code, err = run("--image", str(image), "--prompt", "<phrase> a</phrase>", "--bbox", "0.1,0.1,0.2,0.2", "--bbox", "0.1,0.1,0.2,0.2", *base)
    assert code == 2 and len(err) == 1 and "2 --bbox for 1" in err[0]
    code, err = run("--image", str(image), "--spm", str(tmp_path / "x.model"), *TINY, "--out", str(tmp_path / "o.png"))
    assert code == 2 and len(err) == 1 and "x.model" in err[0]
    code, err = run("--image", str(image), *base, "--checkpoint", str(tmp_path / "none.safetensors"))
    assert code == 2 and len(err) == 1 and "none.safetensors" in err[0]
    code, err = run("--image", str(image), *base[:-1], str(tmp_path / "o.txt"))
    assert code == 2 and len(err) == 1 and "--out" in err[0]
    # and from a shell, in another working directory
    r = subprocess.run([sys.executable, "-m", "kosmos2.infer", "--image", str(tmp_path / "nope.png"), *base], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: image not found: {tmp_path / 'nope.png'}"]
