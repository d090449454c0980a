"""Readers for grounding data: RefCOCO/+/g, Flickr30K Entities, and GrIT-style jsonl.

Every reader returns plain dataclasses with boxes as (x1, y1, x2, y2) in pixels of the original
image, and raises `vlcore.errors.UserError` naming the file on missing or corrupt input.

* RefCOCO / RefCOCO+ / RefCOCOg, three layouts:
  - the ``refer`` layout: a folder with ``refs(<split_by>).p`` and ``instances.json``;
  - MDETR's pre-processed ``finetune_refcoco*_<split>.json`` (COCO json whose images carry ``caption``);
  - a flat json ``{"data": [{sentence, bbox_xywh, image, width, height, dataset, split, ...}]}``
    (the sample in ``coco_mini/vl/refexp_subset.json``).
* Flickr30K Entities: ``Sentences/<id>.txt`` (``[/EN#18/people A child] in ...``) and
  ``Annotations/<id>.xml`` (Pascal-VOC boxes whose ``<name>`` is the entity id).
* GrIT jsonl: one object per line with ``caption``, ``width``, ``height``, ``noun_chunks`` and
  ``ref_exps``, each span ``[char_start, char_end, x1, y1, x2, y2, score]`` with normalised coordinates.
"""

from __future__ import annotations

import json
import pickle
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from vlcore.errors import UserError

from kosmos2.grounding import format_entities

__all__ = [
    "RefExample",
    "PhraseGroundingExample",
    "GritSpan",
    "GritExample",
    "load_refexp",
    "load_flickr30k_entities",
    "read_grit_jsonl",
    "write_grit_jsonl",
    "grit_grounded_caption",
]

Box = tuple[float, float, float, float]


def _xywh_to_xyxy(b) -> Box:
    x, y, w, h = (float(v) for v in b)
    return x, y, x + w, y + h


def _read_json(path: Path):
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


@dataclass
class RefExample:
    """One referring expression and its target box (pixels, xyxy)."""

    expression: str
    box: Box
    image: str  # path of the image file (may not exist when only annotations are present)
    width: int
    height: int
    image_id: int = -1
    dataset: str = ""
    split: str = ""
    ref_id: str = ""


def _refexp_flat(path: Path, data, image_root: Path) -> list[RefExample]:
    out = []
    for i, r in enumerate(data.get("data", [])):
        try:
            out.append(
                RefExample(
                    expression=str(r["sentence"]),
                    box=_xywh_to_xyxy(r["bbox_xywh"]),
                    image=str(image_root / r["image"]),
                    width=int(r["width"]),
                    height=int(r["height"]),
                    image_id=int(r.get("image_id", -1)),
                    dataset=str(r.get("dataset", "")),
                    split=str(r.get("split", "")),
                    ref_id=str(r.get("ref_key", i)),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: entry {i} is malformed ({type(e).__name__}: {e})") from None
    return out


def _refexp_mdetr(path: Path, data, image_root: Path) -> list[RefExample]:
    anns = {}
    for a in data.get("annotations", []):
        anns.setdefault(a["image_id"], []).append(a)
    out = []
    for im in data["images"]:
        boxes = anns.get(im["id"], [])
        if not boxes or "caption" not in im:
            raise UserError(f"{path}: image entry {im.get('id')} lacks a caption or a box")
        out.append(
            RefExample(
                expression=im["caption"],
                box=_xywh_to_xyxy(boxes[0]["bbox"]),
                image=str(image_root / im["file_name"]),
                width=int(im["width"]),
                height=int(im["height"]),
                image_id=int(im.get("original_id", im["id"])),
                dataset=str(im.get("dataset_name", "")),
                split=str(im.get("split", "")),
                ref_id=str(im.get("id")),
            )
        )
    return out


class _PlainDataUnpickler(pickle.Unpickler):
    """The refer toolkit ships its annotations as pickles of lists, dicts, strings and numbers. Reading
    them must not run code, so every class or function reference is refused: plain data only."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only plain data (lists, dicts, str, numbers) is read")


def _refexp_refer(folder: Path, image_root: Path, split_by: str | None, split: str | None) -> list[RefExample]:
    cands = sorted(folder.glob("refs(*).p"))
    if split_by:
        cands = [c for c in cands if c.name == f"refs({split_by}).p"]
    if not cands:
        raise UserError(f"{folder}: no refs(<split_by>).p file" + (f" for split_by={split_by}" if split_by else ""))
    refs_path, inst_path = cands[0], folder / "instances.json"
    inst = _read_json(inst_path)
    try:
        with open(refs_path, "rb") as f:
            refs = _PlainDataUnpickler(f).load()
    except Exception as e:
        raise UserError(f"{refs_path}: cannot unpickle ({type(e).__name__}: {e})") from None
    anns = {a["id"]: a for a in inst.get("annotations", [])}
    images = {im["id"]: im for im in inst.get("images", [])}
    out = []
    for r in refs:
        if split and r.get("split") != split:
            continue
        a, im = anns.get(r["ann_id"]), images.get(r["image_id"])
        if a is None or im is None:
            raise UserError(f"{refs_path}: ref {r.get('ref_id')} points to an annotation/image missing from {inst_path}")
        for s in r.get("sentences", []):
            out.append(
                RefExample(
                    expression=s.get("sent", s.get("raw", "")),
                    box=_xywh_to_xyxy(a["bbox"]),
                    image=str(image_root / im["file_name"]),
                    width=int(im["width"]),
                    height=int(im["height"]),
                    image_id=int(r["image_id"]),
                    dataset=folder.name,
                    split=str(r.get("split", "")),
                    ref_id=str(r.get("ref_id")),
                )
            )
    return out


def load_refexp(
    path: str | Path,
    image_root: str | Path | None = None,
    dataset: str | None = None,
    split: str | None = None,
    split_by: str | None = None,
) -> list[RefExample]:
    """Referring expressions from any of the three layouts (module docstring).

    image_root: where image file names are resolved (default: the annotation file's folder, or for
    the flat layout the folder above ``vl/``). dataset / split filter the examples.
    """
    p = Path(path)
    if p.is_dir():
        out = _refexp_refer(p, Path(image_root) if image_root else p, split_by, split)
    else:
        data = _read_json(p)
        if isinstance(data, dict) and "data" in data:
            root = Path(image_root) if image_root else (p.parent.parent if p.parent.name == "vl" else p.parent)
            out = _refexp_flat(p, data, root)
        elif isinstance(data, dict) and "images" in data:
            out = _refexp_mdetr(p, data, Path(image_root) if image_root else p.parent)
        else:
            raise UserError(f"{p}: not a RefCOCO layout (expected a 'data' list or COCO 'images')")
    if dataset:
        out = [e for e in out if e.dataset == dataset]
    if split:
        out = [e for e in out if e.split == split]
    return out


@dataclass
class PhraseGroundingExample:
    """A Flickr30K-Entities sentence: the clean text and its phrases with all their GT boxes (pixels)."""

    image_id: str
    image: str
    width: int
    height: int
    sentence: str
    phrases: list = field(default_factory=list)  # [(phrase, (start, end), entity_id, type, [boxes])]


_FLICKR_PHRASE = re.compile(r"\[/EN#(\d+)/([^\s\]]+)\s+([^\]]*)\]")


def parse_flickr_sentence(line: str) -> tuple[str, list]:
    """``[/EN#18/people A child] in ...`` -> ("A child in ...", [("A child", (0, 7), "18", "people")])."""
    out, phrases, cur, n = [], [], 0, 0
    for m in _FLICKR_PHRASE.finditer(line):
        out.append(line[cur : m.start()])
        n += m.start() - cur
        text = m.group(3)
        phrases.append((text, (n, n + len(text)), m.group(1), m.group(2)))
        out.append(text)
        n += len(text)
        cur = m.end()
    out.append(line[cur:])
    return "".join(out), phrases


def _flickr_boxes(xml_path: Path) -> tuple[int, int, dict]:
    if not xml_path.is_file():
        raise UserError(f"file not found: {xml_path}")
    try:
        root = ET.parse(xml_path).getroot()
        w, h = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (ET.ParseError, TypeError, ValueError) as e:
        raise UserError(f"{xml_path}: not a Flickr30K Entities annotation ({e})") from None
    boxes: dict[str, list] = {}
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue  # scene / no-box entities
        try:
            b = tuple(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise UserError(f"{xml_path}: malformed <bndbox>") from None
        for name in obj.iter("name"):
            boxes.setdefault(name.text.strip(), []).append(b)
    return w, h, boxes


def load_flickr30k_entities(root: str | Path, ids: list[str] | None = None, image_dir: str | Path | None = None, skip_no_box: bool = True) -> list[PhraseGroundingExample]:
    """One example per sentence; phrases whose entity has no box are dropped unless skip_no_box=False."""
    root = Path(root)
    sdir, adir = root / "Sentences", root / "Annotations"
    for d in (sdir, adir):
        if not d.is_dir():
            raise UserError(f"Flickr30K Entities folder missing: {d}")
    if ids is None:
        ids = sorted(p.stem for p in sdir.glob("*.txt"))
    img_dir = Path(image_dir) if image_dir else root / "flickr30k-images"
    out = []
    for i in ids:
        sp = sdir / f"{i}.txt"
        if not sp.is_file():
            raise UserError(f"file not found: {sp}")
        w, h, boxes = _flickr_boxes(adir / f"{i}.xml")
        for line in sp.read_text().splitlines():
            if not line.strip():
                continue
            text, phrases = parse_flickr_sentence(line.strip())
            ph = [(t, span, eid, typ, boxes.get(eid, [])) for t, span, eid, typ in phrases]
            if skip_no_box:
                ph = [p for p in ph if p[4]]
            out.append(PhraseGroundingExample(i, str(img_dir / f"{i}.jpg"), w, h, text, ph))
    return out


@dataclass
class GritSpan:
    start: int
    end: int
    box: Box  # normalised xyxy
    score: float


@dataclass
class GritExample:
    key: str
    caption: str
    width: int
    height: int
    noun_chunks: list[GritSpan]
    ref_exps: list[GritSpan]
    image: str = ""
    extra: dict = field(default_factory=dict)


def _spans(path: Path, lineno: int, rows) -> list[GritSpan]:
    out = []
    for r in rows or []:
        if len(r) != 7:
            raise UserError(f"{path}:{lineno}: a span is [start, end, x1, y1, x2, y2, score], got {r!r}")
        out.append(GritSpan(int(r[0]), int(r[1]), tuple(float(v) for v in r[2:6]), float(r[6])))
    return out


def read_grit_jsonl(path: str | Path) -> Iterator[GritExample]:
    """Stream GrIT-style examples; a bad line raises naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"file not found: {p}")
    with open(p) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                cap = d["caption"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UserError(f"{p}:{lineno}: not a GrIT record ({type(e).__name__}: {e})") from None
            known = {"id", "key", "caption", "width", "height", "noun_chunks", "ref_exps", "image"}
            yield GritExample(
                key=str(d.get("key", d.get("id", lineno))),
                caption=cap,
                width=int(d.get("width", 0)),
                height=int(d.get("height", 0)),
                noun_chunks=_spans(p, lineno, d.get("noun_chunks")),
                ref_exps=_spans(p, lineno, d.get("ref_exps")),
                image=str(d.get("image", "")),
                extra={k: v for k, v in d.items() if k not in known},
            )


def write_grit_jsonl(path: str | Path, examples) -> int:
    """Write examples (GritExample) as GrIT-style jsonl; returns the number written."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(p, "w") as f:
        for e in examples:
            rec = {
                "key": e.key,
                "caption": e.caption,
                "width": e.width,
                "height": e.height,
                "image": e.image,
                "noun_chunks": [[s.start, s.end, *[round(v, 6) for v in s.box], round(s.score, 4)] for s in e.noun_chunks],
                "ref_exps": [[s.start, s.end, *[round(v, 6) for v in s.box], round(s.score, 4)] for s in e.ref_exps],
                **e.extra,
            }
            f.write(json.dumps(rec) + "\n")
            n += 1
    return n


def grit_grounded_caption(
    ex: GritExample, mode: str = "expression", num_bins: int = 32, score_thr: float = 0.65, grounding_prefix: bool = True
) -> str | None:
    """The training text of a GrIT example: spans linked to location tokens, or None if no span survives.

    mode "expression" uses ref_exps, "chunk" noun_chunks. Spans scoring <= score_thr are dropped;
    a span contained in another kept span is dropped; boxes sharing a span become one multi-box link.
    """
    spans = ex.ref_exps if mode == "expression" else ex.noun_chunks
    if mode not in ("expression", "chunk"):
        raise ValueError(f"mode must be 'expression' or 'chunk', got {mode!r}")
    spans = [s for s in spans if s.score > score_thr and 0 <= s.start < s.end <= len(ex.caption)]
    by_span: dict[tuple[int, int], list] = {}
    for s in spans:
        by_span.setdefault((s.start, s.end), []).append(s.box)
    keys = [k for k in by_span if not any(o != k and o[0] <= k[0] and k[1] <= o[1] for o in by_span)]
    # overlapping but not nested spans cannot both be linked: keep the earlier, longer one
    keys.sort(key=lambda k: (k[0], -(k[1] - k[0])))
    kept, last_end = [], -1
    for k in keys:
        if k[0] >= last_end:
            kept.append(k)
            last_end = k[1]
    if not kept:
        return None
    boxes = {k: [b for b in by_span[k] if b[2] > b[0] and b[3] > b[1]] for k in kept}
    ents = [(k, boxes[k]) for k in kept if boxes[k]]
    if not ents:
        return None
    return format_entities(ex.caption, ents, num_bins, grounding_prefix=grounding_prefix)
