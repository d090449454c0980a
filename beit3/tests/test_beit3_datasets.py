"""Readers of the official VQAv2, NLVR2 and Karpathy-split files, on tiny files written here
(and the real coco_mini captions), and the fine-tuning tasks trained from them."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vlcore.data import shared_data_root
from vlcore.errors import UserError

from beit3.datasets import normalize_answer, read_karpathy, read_nlvr2, read_vqav2, vqa_answer_vocab
from beit3.engine import Task
from beit3.train import load_beit3_config
from beit3.train import main as train_main


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)


def _vqav2_files(root):
    qs = [(1, 10, "What color is it?"), (2, 10, "Is there a cat?"), (3, 11, "How many dogs?")]
    answers = {1: ["Red"] * 4 + ["red."] + ["blue"] * 2 + ["dark red"] * 3,
               2: ["yes"] * 2 + ["no"] * 8, 3: ["2"] * 10}
    mc = {1: "red", 2: "no", 3: "2"}
    (root / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps({
        "data_subtype": "train2014",
        "questions": [{"question_id": q, "image_id": i, "question": t} for q, i, t in qs]}))
    (root / "v2_mscoco_train2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": q, "image_id": i, "multiple_choice_answer": mc[q],
         "answers": [{"answer": a, "answer_id": k + 1} for k, a in enumerate(answers[q])]} for q, i, _ in qs]}))
    for i in (10, 11):
        _image(root / "train2014" / f"COCO_train2014_{i:012d}.jpg", i)


@pytest.mark.unit
def test_vqav2_reader_soft_scores_and_vocabulary(tmp_path):
    _vqav2_files(tmp_path)
    items = read_vqav2(tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json",
                       tmp_path / "v2_mscoco_train2014_annotations.json")
    assert [x.image for x in items][:1] == ["COCO_train2014_000000000010.jpg"]
    # "Red" x4 + "red." x1 -> "red" given by 5 -> min(1, 5/3) = 1; blue 2/3; dark red 3 -> 1
    assert items[0].scores == pytest.approx({"red": 1.0, "blue": 2 / 3, "dark red": 1.0})
    assert items[1].scores == pytest.approx({"yes": 2 / 3, "no": 1.0}) and items[1].answer == "no"
    assert normalize_answer(" Dark-Red! ") == "darkred" and normalize_answer("2.5") == "2.5"
    assert vqa_answer_vocab(items, top_k=2) == ["2", "no"]  # all counts 1: alphabetical
    test_only = read_vqav2(tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json")
    assert test_only[0].answer is None and test_only[0].scores == {}


@pytest.mark.smoke
def test_vqa_trains_from_vqav2_files(tmp_path):
    _vqav2_files(tmp_path)
    sets = [f"data.root={tmp_path}", "data.dataset=vqav2", "data.train_split=train2014", "data.eval_split=train2014",
            "data.num_train=0", "data.num_eval=0", "finetune.num_answers=4",
            "train.global_batch_size=2", "train.per_device_batch_size=2"]
    task = Task(load_beit3_config("smoke_vqa", sets))
    assert task.answers == ["2", "no", "red"]  # the multiple-choice answers, one each: alphabetical
    first = task.train_set[0]["target"]
    col = {a: j for j, a in enumerate(task.answers)}
    assert first[col["red"]] == 1.0 and first.sum() == 1.0  # blue / dark red are not answer classes
    assert task.train_set[1]["target"][col["no"]] == 1.0
    out = tmp_path / "run"
    assert train_main(["--config", "smoke_vqa", "--set", f"train.out_dir={out}", *[a for s in sets for a in ("--set", s)]]) == 0
    assert 0.0 <= json.loads((out / "eval.json").read_text())["vqa_score"] <= 100.0


def _nlvr2_files(root):
    lines = [{"identifier": "train-10-0-0", "sentence": "two dogs", "label": "True", "directory": 3},
             {"identifier": "train-10-0-1", "sentence": "no dogs", "label": "False", "directory": 3},
             {"identifier": "train-11-1-0", "sentence": "a cat", "label": "True", "directory": 5}]
    (root / "train.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    for d, stem in ((3, "train-10-0"), (5, "train-11-1")):
        for k in (0, 1):
            _image(root / "images" / "train" / str(d) / f"{stem}-img{k}.png", d * 10 + k)


@pytest.mark.smoke
def test_nlvr2_reader_and_training(tmp_path):
    _nlvr2_files(tmp_path)
    items = read_nlvr2(tmp_path / "train.json")
    assert [(x.left, x.right, x.label) for x in items][:2] == [
        ("3/train-10-0-img0.png", "3/train-10-0-img1.png", 1), ("3/train-10-0-img0.png", "3/train-10-0-img1.png", 0)]
    sets = [f"data.root={tmp_path}", "data.dataset=nlvr2", "data.train_split=train", "data.eval_split=train",
            "data.num_train=0", "data.num_eval=0", "train.global_batch_size=2", "train.per_device_batch_size=2"]
    task = Task(load_beit3_config("smoke_nlvr2", sets))
    b = task.train_set[2]
    assert b["label"].item() == 1 and not torch.equal(b["image_a"], b["image_b"])
    out = tmp_path / "run"
    assert train_main(["--config", "smoke_nlvr2", "--set", f"train.out_dir={out}", *[a for s in sets for a in ("--set", s)]]) == 0
    assert 0.0 <= json.loads((out / "eval.json").read_text())["acc"] <= 100.0


@pytest.mark.smoke
def test_karpathy_reader_on_real_coco_mini_captions(tmp_path):
    coco = shared_data_root() / "coco_mini"
    if not coco.is_dir():
        pytest.skip("coco_mini not found")
    caps = json.loads((coco / "annotations" / "captions_val2017.json").read_text())
    by_img = {}
    for a in caps["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a["caption"])
    ims = [im for im in caps["images"] if im["id"] in by_img][:12]
    splits = ["train"] * 6 + ["restval"] * 2 + ["test"] * 4
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": [
        {"filepath": "val2017", "filename": im["file_name"], "cocoid": im["id"], "imgid": k, "split": s,
         "sentences": [{"raw": c, "tokens": c.lower().split()} for c in by_img[im["id"]]]}
        for k, (im, s) in enumerate(zip(ims, splits))]}))
    train = read_karpathy(tmp_path / "dataset_coco.json", "train")
    test = read_karpathy(tmp_path / "dataset_coco.json", "test")
    assert len(train) == 8 and {x.split for x in train} == {"train", "restval"} and len(test) == 4
    assert test[0].captions == [c.strip() for c in by_img[ims[8]["id"]]] and len(test[0].captions) >= 5
    sets = [f"data.root={coco / 'images'}", "data.dataset=karpathy", f"data.karpathy_file={tmp_path / 'dataset_coco.json'}",
            "data.train_split=train", "data.eval_split=test", "data.num_train=0", "data.num_eval=0"]
    task = Task(load_beit3_config("smoke_retrieval", sets))
    assert len(task.train_set) == 8 and len(task.eval_corpus.all_captions) == 4
    out = tmp_path / "run"
    assert train_main(["--config", "smoke_captioning", "--set", f"train.out_dir={out}", "--set",
                       "finetune.num_beams=2", *[a for s in sets for a in ("--set", s)]]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert 0.0 <= res["bleu4"] <= 100.0 and res["cider"] >= 0.0


@pytest.mark.unit
def test_malformed_files_raise_one_line_errors_naming_the_file(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps({"questions": [{"question_id": 1, "question": "x"}]}))
    with pytest.raises(UserError, match=r"q\.json: questions\[0\] has no 'image_id'"):
        read_vqav2(bad)
    with pytest.raises(UserError, match="missing.json"):
        read_vqav2(tmp_path / "missing.json")
    jl = tmp_path / "dev.json"
    jl.write_text('{"identifier": "dev-1-0-0", "sentence": "s", "label": "True"}\n{"identifier": "dev-1-0-1", "sentence": "s", "label": "maybe"}\n')
    with pytest.raises(UserError, match=r"dev\.json:2: label must be"):
        read_nlvr2(jl)
    kp = tmp_path / "dataset_flickr30k.json"
    kp.write_text(json.dumps({"images": [{"filename": "1.jpg", "split": "train", "sentences": [{"raw": "a"}]}]}))
    with pytest.raises(UserError, match=r"dataset_flickr30k\.json: no images in split 'test' \(splits: train\)"):
        read_karpathy(kp, "test")
    # through the CLI: one line on stderr, naming the file
    r = subprocess.run([sys.executable, "-m", "beit3.train", "--config", "smoke_vqa", "--set", "data.dataset=vqav2",
                        "--set", f"data.root={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "v2_OpenEnded_mscoco_train2017_questions.json" in r.stderr
