"""python -m kosmos2.eval: REC / phrase grounding / captioning with a tiny random model and with scripted generations."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kosmos2 import eval as k2eval
from vlcore.cli import run_cli
from kosmos2.grounding import box_to_loc_text
from kosmos2.testing_text import train_tiny_sentencepiece

COCO_MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_mini"
REFEXP = COCO_MINI / "vl" / "refexp_subset.json"
TINY = ["--model", "kosmos2_tiny_patch8_32"]


def _decoded(proc, prompt):
    """The prompt as it comes back from generation (tokenised, then decoded)."""
    return proc.tokenizer.decode(proc.tokenizer.encode(prompt, add_bos=False, add_eos=False))


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    return str(train_tiny_sentencepiece(tmp_path_factory.mktemp("spm")))


def _flickr(root: Path):
    from PIL import Image

    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "flickr30k-images").mkdir()
    Image.new("RGB", (100, 50), (200, 10, 10)).save(root / "flickr30k-images" / "1.jpg")
    (root / "Sentences" / "1.txt").write_text("[/EN#5/people A man] with [/EN#6/animals a dog] .\n")
    (root / "Annotations" / "1.xml").write_text(
        "<annotation><size><width>100</width><height>50</height></size>"
        "<object><name>5</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>6</name><bndbox><xmin>50</xmin><ymin>0</ymin><xmax>100</xmax><ymax>25</ymax></bndbox></object></annotation>"
    )


@pytest.mark.smoke
@pytest.mark.skipif(not REFEXP.is_file(), reason="coco_mini not present")
def test_rec_with_tiny_random_model_writes_outputs(spm_file, tmp_path, capsys):
    torch.manual_seed(0)
    out = tmp_path / "rec"
    assert k2eval.main(["--task", "rec", "--data", str(REFEXP), "--spm", spm_file, *TINY, "--limit", "3", "--max-new-tokens", "4", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "rec" and m["n"] == 3 and 0.0 <= m["acc@0.5"] <= 1.0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("<phrase>" in r["text"] for r in rows)
    assert json.loads(capsys.readouterr().out)["n"] == 3


@pytest.mark.unit
@pytest.mark.skipif(not REFEXP.is_file(), reason="coco_mini not present")
def test_rec_scoring_with_scripted_generations(spm_file, tmp_path, monkeypatch):
    """Generations that name the GT box (within the 32-grid) on every other example give accuracy 0.5."""
    from kosmos2.data import load_refexp

    ex = load_refexp(REFEXP)[:6]
    by_expr = {e.expression.strip(): e for e in ex}
    calls = []

    def fake_generate(model, proc, image, prompt, *a, **k):
        expr = prompt.split("<phrase>")[1].split("</phrase>")[0].strip()
        e = by_expr[expr]
        calls.append(expr)
        x1, y1, x2, y2 = e.box
        box = (x1 / e.width, y1 / e.height, min(x2 / e.width, 1), min(y2 / e.height, 1))
        if len(calls) % 2 == 0:
            box = (0.0, 0.0, 0.05, 0.05)  # wrong place
        return _decoded(proc, prompt) + "<object>" + box_to_loc_text([box], 32) + "</object>"

    monkeypatch.setattr(k2eval, "generate_text", fake_generate)
    out = tmp_path / "rec"
    k2eval.main(["--task", "rec", "--data", str(REFEXP), "--spm", spm_file, *TINY, "--limit", "6", "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    assert len(calls) == 6 and m["acc@0.5"] == pytest.approx(0.5)


@pytest.mark.unit
def test_phrase_grounding_recall_with_scripted_generations(spm_file, tmp_path, monkeypatch):
    _flickr(tmp_path / "f30k")
    prompts = []

    def fake_generate(model, proc, image, prompt, *a, **k):
        prompts.append(prompt)
        if "A man" in prompt and "dog" not in prompt:  # two boxes: wrong first, right second
            return _decoded(proc, prompt) + "<object>" + box_to_loc_text([(0.6, 0.6, 0.9, 0.9), (0.0, 0.0, 0.5, 1.0)], 32) + "</object>"
        return _decoded(proc, prompt) + " is"  # no box for the dog

    monkeypatch.setattr(k2eval, "generate_text", fake_generate)
    out = tmp_path / "pg"
    k2eval.main(["--task", "phrase_grounding", "--data", str(tmp_path / "f30k"), "--spm", spm_file, *TINY, "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    assert prompts == ["<grounding><phrase> A man</phrase>", "<grounding> A man with<phrase> a dog</phrase>"]
    assert (m["n"], m["R@1"], m["R@5"], m["R@10"]) == (2, 0.0, 0.5, 0.5)


@pytest.mark.smoke
def test_caption_task_on_an_image_folder(spm_file, tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.new("RGB", (40, 30), (i * 100, 50, 50)).save(tmp_path / "imgs" / f"{i}.png")
    from vlcore.checkpoint import save_checkpoint

    from kosmos2.models import build_model
    from kosmos2.processor import Kosmos2Processor

    torch.manual_seed(1)
    model = build_model("kosmos2_tiny_patch8_32").eval()
    save_checkpoint(tmp_path / "ckpt", 2, model_state=model.state_dict())  # a training run's checkpoint root
    out = tmp_path / "cap"
    args = ["--task", "caption", "--data", str(tmp_path / "imgs"), "--spm", spm_file, *TINY, "--max-new-tokens", "3", "--prompt", "<grounding> a photo of"]
    assert k2eval.main([*args, "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["0", "1"] and all(r["caption"].startswith("a photo of") for r in rows)
    # the checkpoint's weights were used: same text as generating with the saved model here
    proc = Kosmos2Processor.from_spm(spm_file, image_size=32, num_image_tokens=model.num_image_tokens)
    want = k2eval.generate_text(model, proc, str(tmp_path / "imgs" / "0.png"), "<grounding> a photo of", 3)
    assert rows[0]["text"] == want


@pytest.mark.smoke
def test_bad_inputs_give_one_line_errors(spm_file, tmp_path, capsys):
    def run(*args):
        with pytest.raises(SystemExit) as e:
            run_cli(k2eval.main, list(args))
        return e.value.code, capsys.readouterr().err.strip().splitlines()

    code, err = run("--task", "rec", "--data", str(tmp_path / "missing.json"), "--spm", spm_file, *TINY)
    assert code == 2 and len(err) == 1 and "missing.json" in err[0]
    (tmp_path / "r.json").write_text(json.dumps({"data": [{"sentence": "x", "bbox_xywh": [0, 0, 1, 1], "image": "nope.jpg", "width": 5, "height": 5}]}))
    code, err = run("--task", "rec", "--data", str(tmp_path / "r.json"), "--spm", spm_file, *TINY)
    assert code == 2 and len(err) == 1 and "nope.jpg" in err[0]
    code, err = run("--task", "caption", "--data", str(tmp_path), "--spm", spm_file, *TINY)
    assert code == 2 and len(err) == 1 and "no examples" in err[0]
    code, err = run("--task", "phrase_grounding", "--data", str(tmp_path), "--spm", spm_file, *TINY)
    assert code == 2 and len(err) == 1 and "Sentences" in err[0]
    r = subprocess.run([sys.executable, "-m", "kosmos2.eval", "--task", "rec", "--data", "missing.json", "--spm", spm_file], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "missing.json" in r.stderr
