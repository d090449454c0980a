"""Readers for the official file layouts of the vision-language benchmarks.

* VQAv2: ``v2_OpenEnded_mscoco_{split}_questions.json`` + ``v2_mscoco_{split}_annotations.json``
  (10 annotator answers per question), images ``{split}/COCO_{split}_{image_id:012d}.jpg``;
* NLVR2: one json object per line (``identifier``, ``sentence``, ``label``, ``directory`` for
  train), the two images ``{identifier minus its last field}-img0.png`` / ``-img1.png``;
* Karpathy splits (``dataset_coco.json``, ``dataset_flickr30k.json``) for COCO / Flickr30K
  retrieval and COCO captioning: ``images[]`` with ``filepath`` (COCO only), ``filename``,
  ``split`` (train / restval / val / test) and ``sentences[].raw``.

Every malformed file raises a one-line :class:`DataFormatError` naming it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vlcore.data.coco import read_json
from vlcore.data.paths import DataFormatError, require_file


def vqa_target_score(count: int) -> float:
    """Soft target of an answer given by ``count`` of the annotators: min(1, count / 3)."""
    return min(1.0, count / 3.0)


_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$]")


def normalize_answer(a: str) -> str:
    """Light VQA answer normalisation: lower case, punctuation removed (a '.' only when not
    between digits), whitespace collapsed."""
    a = _PUNCT.sub("", a.lower().replace("\n", " ").replace("\t", " "))
    a = re.sub(r"(?<!\d)\.(?!\d)", "", a)
    return " ".join(a.split())


@dataclass
class VQAQuestion:
    question_id: int
    image_id: int
    question: str
    image: str  # file name relative to the image folder
    answer: str | None = None  # multiple_choice_answer (None without annotations)
    scores: dict[str, float] = field(default_factory=dict)  # answer -> min(1, n / 3)


def _need(obj: dict, keys: tuple[str, ...], path: Path, where: str) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataFormatError(f"{path}: {where} has no {', '.join(repr(k) for k in missing)}")


def read_vqav2(questions: str | Path, annotations: str | Path | None = None) -> list[VQAQuestion]:
    """Questions (and, for train / val, their annotator answers with soft scores)."""
    qpath = require_file(questions, "VQAv2 questions json")
    q = read_json(qpath, what="VQAv2 questions")
    if not isinstance(q, dict):
        raise DataFormatError(f"{qpath}: expected a json object with 'questions'")
    _need(q, ("questions",), qpath, "the file")
    subtype = q.get("data_subtype", "")
    out = {}
    for i, x in enumerate(q["questions"]):
        _need(x, ("question_id", "image_id", "question"), qpath, f"questions[{i}]")
        name = f"COCO_{subtype}_{int(x['image_id']):012d}.jpg" if subtype else f"{int(x['image_id']):012d}.jpg"
        out[int(x["question_id"])] = VQAQuestion(int(x["question_id"]), int(x["image_id"]), x["question"], name)
    if annotations is None:
        return list(out.values())
    apath = require_file(annotations, "VQAv2 annotations json")
    a = read_json(apath, what="VQAv2 annotations")
    if not isinstance(a, dict):
        raise DataFormatError(f"{apath}: expected a json object with 'annotations'")
    _need(a, ("annotations",), apath, "the file")
    for i, x in enumerate(a["annotations"]):
        _need(x, ("question_id", "answers", "multiple_choice_answer"), apath, f"annotations[{i}]")
        item = out.get(int(x["question_id"]))
        if item is None:
            raise DataFormatError(f"{apath}: annotations[{i}] refers to question {x['question_id']}, "
                                  f"not in {qpath.name}")
        if not all(isinstance(y, dict) and "answer" in y for y in x["answers"]):
            raise DataFormatError(f"{apath}: annotations[{i}].answers must be objects with an 'answer'")
        counts = Counter(normalize_answer(y["answer"]) for y in x["answers"])
        item.answer = normalize_answer(x["multiple_choice_answer"])
        item.scores = {ans: vqa_target_score(n) for ans, n in counts.items()}
    return list(out.values())


def vqa_answer_vocab(items: list[VQAQuestion], top_k: int = 3129) -> list[str]:
    """The ``top_k`` most frequent ``multiple_choice_answer`` (ties broken alphabetically)."""
    c = Counter(x.answer for x in items if x.answer is not None)
    return [a for a, _ in sorted(c.items(), key=lambda t: (-t[1], t[0]))[:top_k]]


@dataclass
class NLVR2Item:
    identifier: str
    sentence: str
    label: int  # 1 = True
    left: str  # image paths relative to the split's image folder
    right: str


def read_nlvr2(jsonl: str | Path) -> list[NLVR2Item]:
    path = require_file(jsonl, "NLVR2 jsonl")
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                x = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{n}: not valid json ({e.msg})") from e
            _need(x, ("identifier", "sentence", "label"), path, f"line {n}")
            if str(x["label"]) not in ("True", "False"):
                raise DataFormatError(f"{path}:{n}: label must be 'True' or 'False', got {x['label']!r}")
            stem = x["identifier"].rsplit("-", 1)[0]
            folder = f"{x['directory']}/" if "directory" in x else ""
            items.append(NLVR2Item(x["identifier"], x["sentence"], int(str(x["label"]) == "True"),
                                   f"{folder}{stem}-img0.png", f"{folder}{stem}-img1.png"))
    if not items:
        raise DataFormatError(f"{path}: no examples")
    return items


@dataclass
class KarpathyImage:
    image: str  # path relative to the image root ({filepath}/{filename}, or filename)
    captions: list[str]
    split: str
    image_id: int


def read_karpathy(path: str | Path, split: str) -> list[KarpathyImage]:
    """Images of one Karpathy split; ``train`` includes ``restval`` (as the official code does)."""
    p = require_file(path, "Karpathy split json")
    d = read_json(p, what="Karpathy split")
    if not isinstance(d, dict):
        raise DataFormatError(f"{p}: expected a json object with 'images'")
    _need(d, ("images",), p, "the file")
    want = {"train", "restval"} if split == "train" else {split}
    out = []
    for i, im in enumerate(d["images"]):
        _need(im, ("filename", "split", "sentences"), p, f"images[{i}]")
        if im["split"] not in want:
            continue
        name = f"{im['filepath']}/{im['filename']}" if im.get("filepath") else im["filename"]
        caps = [s["raw"].strip() if "raw" in s else " ".join(s["tokens"]) for s in im["sentences"]]
        out.append(KarpathyImage(name, caps, im["split"], int(im.get("cocoid", im.get("imgid", i)))))
    if not out:
        splits = sorted({im["split"] for im in d["images"]})
        raise DataFormatError(f"{p}: no images in split '{split}' (splits: {', '.join(splits)})")
    return out
