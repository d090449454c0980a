"""The GrIT construction pipeline (Kosmos-2 §2) as exchangeable components.

    caption --parser--> noun chunks --drop abstract--> detector(image, chunks) --NMS over all boxes-->
    keep (chunk, box) with score > 0.65 (drop the pair if none) --parser.expand--> referring expressions
    --drop expressions inside another kept one--> GrIT-style jsonl (`kosmos2.data.write_grit_jsonl`)

Components:

* parsers (`Parser`): `SpacyParser` (noun chunks and dependency-tree expansion, as the paper does;
  needs spaCy and an English model) and `RuleParser`, a dependency-free fallback that finds chunks
  with a small closed-class lexicon and expands a chunk over following ``prep + chunk`` runs;
* detectors (`Detector`): `MMDetGroundingDetector` wraps any MMDetection 3.x grounding model
  (GLIP, Grounding DINO: a config plus a checkpoint) through `mmdet.apis.DetInferencer`;
  `OracleDetector` grounds chunks in known boxes (COCO instances, generated scenes) with score 1.

The NMS IoU threshold and the abstract-noun list are not given in the paper; the defaults here
(0.5, `ABSTRACT_NOUNS`) are our choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from vlcore.errors import UserError

from kosmos2.data import GritExample, GritSpan
from kosmos2.metrics import box_iou

__all__ = [
    "ABSTRACT_NOUNS",
    "Chunk",
    "Detection",
    "Sample",
    "Parser",
    "Detector",
    "RuleParser",
    "SpacyParser",
    "default_parser",
    "OracleDetector",
    "MMDetGroundingDetector",
    "nms",
    "GritPipeline",
    "coco_samples",
]

SCORE_THRESHOLD = 0.65
ABSTRACT_NOUNS = frozenset(
    "time love freedom life idea way thing things fun day night moment kind sort lot type style view "
    "side part top bottom front back middle picture image photo photograph shot scene background".split()
)


@dataclass(frozen=True)
class Chunk:
    """A character span of the caption; (head_start, head_end) is its head noun."""

    start: int
    end: int
    text: str
    head_start: int
    head_end: int

    @property
    def head(self) -> str:
        return self.text[self.head_start - self.start : self.head_end - self.start]


@dataclass(frozen=True)
class Detection:
    chunk: int  # index into the chunk list given to the detector
    box: tuple[float, float, float, float]  # pixels, xyxy
    score: float


@dataclass
class Sample:
    """One image-caption pair entering the pipeline."""

    key: str
    caption: str
    width: int
    height: int
    image: str = ""  # path; detectors that look at pixels need it
    extra: dict = field(default_factory=dict)


class Parser(Protocol):
    def chunks(self, caption: str) -> list[Chunk]: ...

    def expand(self, caption: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
        """For each chunk, the (start, end) span of its referring expression."""
        ...


class Detector(Protocol):
    def __call__(self, sample: Sample, phrases: Sequence[str]) -> list[Detection]: ...


# ---------------------------------------------------------------------------------------------
# parsers

_DETERMINERS = set("a an the this that these those his her its their our my your some several many two three four five six seven eight nine ten one another each every".split())
_PREPOSITIONS = set("in on at of with near by under above behind beside inside outside over into onto from across along against around between through toward towards next atop beneath below".split())
_BREAK = _PREPOSITIONS | set(
    "and or but while as to is are was were be being been has have had do does it he she they we i you there "
    "who which that while where when very not while".split()
)
# frequent caption verbs (a POS tagger would find them; the fallback needs a list)
_VERBS = set(
    "stand stands sit sits lie lies walk walks ride rides hold holds look looks play plays eat eats wait waits fly flies "
    "run runs stood sat lay walked rode held looked played ate waited flew ran parked covered filled topped made "
    "shows show contains contain has have sitting standing laying lying".split()
)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+")


def _is_verbish(w: str) -> bool:
    return w.endswith("ing") and w not in {"ceiling", "building", "clothing", "painting", "ring", "king", "string", "thing", "wing", "swing", "icing", "railing", "awning"} or w.endswith("ly")


class RuleParser:
    """Dependency-free chunker: ``[determiner] modifiers* noun`` runs between closed-class words.

    Expansion follows the paper's rule approximately: a chunk is extended over each following
    ``preposition + chunk`` (recursively, so "a dog in a field of flowers"), a chunk followed by a
    conjunction ("and") is not expanded, and a chunk without such a tail stays as it is.
    """

    def _tokens(self, caption: str):
        return [(m.group(0), m.start(), m.end()) for m in _WORD_RE.finditer(caption)]

    def chunks(self, caption: str) -> list[Chunk]:
        toks = self._tokens(caption)
        out, run = [], []

        def flush():
            words = [t for t in run if t[0].lower() not in _DETERMINERS]
            if words:
                s, e = run[0][1], run[-1][2]
                out.append(Chunk(s, e, caption[s:e], run[-1][1], run[-1][2]))
            run.clear()

        for i, (w, s, e) in enumerate(toks):
            lw = w.lower()
            gap = caption[toks[i - 1][2] : s] if i else ""
            if run and re.search(r"[^\sA-Za-z0-9'\-]", gap):  # punctuation ends a chunk
                flush()
            if lw in _BREAK or lw in _VERBS or _is_verbish(lw):
                flush()
            elif lw in _DETERMINERS:
                flush()
                run.append((w, s, e))
            else:
                run.append((w, s, e))
        flush()
        return out

    def expand(self, caption: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
        spans = []
        for i, c in enumerate(chunks):
            end, j = c.end, i
            follow = caption[c.end :].lstrip().lower()
            if not follow.startswith(("and ", "or ", ", and")):
                while j + 1 < len(chunks):
                    between = caption[chunks[j].end : chunks[j + 1].start].strip().lower()
                    words = between.split()
                    if words and all(w in _PREPOSITIONS for w in words) and len(words) <= 2:
                        j += 1
                        end = chunks[j].end
                    else:
                        break
            spans.append((c.start, end))
        return spans


class SpacyParser:
    """spaCy noun chunks; expansion by collecting each chunk's dependency subtree (the paper's procedure)."""

    def __init__(self, model: str = "en_core_web_sm"):
        try:
            import spacy
        except ImportError:
            raise UserError("SpacyParser needs spaCy (pip install spacy; python -m spacy download en_core_web_sm)") from None
        try:
            self.nlp = spacy.load(model)
        except OSError as e:
            raise UserError(f"spaCy model {model!r} not installed: {e}") from None
        self._doc = None

    def _parse(self, caption: str):
        if self._doc is None or self._doc.text != caption:
            self._doc = self.nlp(caption)
        return self._doc

    def chunks(self, caption: str) -> list[Chunk]:
        doc = self._parse(caption)
        return [Chunk(nc.start_char, nc.end_char, nc.text, nc.root.idx, nc.root.idx + len(nc.root)) for nc in doc.noun_chunks]

    def expand(self, caption: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
        doc = self._parse(caption)
        spans = []
        for c in chunks:
            root = next((t for t in doc if t.idx == c.head_start), None)
            if root is None or any(t.dep_ == "conj" for t in root.children) or not list(root.children):
                spans.append((c.start, c.end))
                continue
            sub = list(root.subtree)
            spans.append((min(c.start, sub[0].idx), max(c.end, sub[-1].idx + len(sub[-1]))))
        return spans


def default_parser() -> Parser:
    """SpacyParser when spaCy and its English model are installed, else RuleParser."""
    try:
        return SpacyParser()
    except UserError:
        return RuleParser()


# ---------------------------------------------------------------------------------------------
# detectors


class OracleDetector:
    """Grounds phrases in known objects: a phrase matches an object when its head noun is one of
    the object's names and every attribute word of the phrase (from `attribute_vocab`) is one of
    the object's attributes. Score 1.0 (or `score`) for each match.

    objects: {image key: [(names, attributes, box_xyxy_pixels), ...]}; the image key of a sample is
    ``sample.extra["image_id"]`` when present (several captions per image), else ``sample.key``.
    """

    def __init__(self, objects: dict, attribute_vocab: Iterable[str] = (), score: float = 1.0):
        self.objects = objects
        self.attribute_vocab = {a.lower() for a in attribute_vocab}
        self.score = score

    def __call__(self, sample: Sample, phrases: Sequence[str]) -> list[Detection]:
        out = []
        for i, ph in enumerate(phrases):
            words = [w.lower() for w in _WORD_RE.findall(ph)]
            if not words:
                continue
            head, attrs = words[-1], {w for w in words[:-1] if w in self.attribute_vocab}
            for names, obj_attrs, box in self.objects.get(sample.extra.get("image_id", sample.key), []):
                if head in names and attrs <= set(obj_attrs):
                    out.append(Detection(i, tuple(float(v) for v in box), self.score))
        return out


class MMDetGroundingDetector:
    """Any MMDetection 3.x phrase-grounding model (GLIP, Grounding DINO) from a config and a checkpoint.

    The chunks are joined as ``"chunk1 . chunk2 ."`` with ``custom_entities=True``, so the
    predicted label i refers to chunk i.
    """

    def __init__(self, config: str | Path, checkpoint: str | Path | None = None, device: str = "cpu", min_score: float = 0.05):
        cfg = Path(config)
        if not cfg.is_file():
            raise UserError(f"mmdet config not found: {cfg}")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise UserError(f"mmdet checkpoint not found: {checkpoint}")
        try:
            from mmdet.apis import DetInferencer
        except ImportError:
            raise UserError("MMDetGroundingDetector needs mmdet>=3 with mmcv ops") from None
        self.inferencer = DetInferencer(model=str(cfg), weights=None if checkpoint is None else str(checkpoint), device=device, show_progress=False)
        self.min_score = min_score

    def __call__(self, sample: Sample, phrases: Sequence[str]) -> list[Detection]:
        if not phrases:
            return []
        if not Path(sample.image).is_file():
            raise UserError(f"image not found: {sample.image}")
        res = self.inferencer(inputs=sample.image, texts=" . ".join(phrases) + " .", custom_entities=True, no_save_pred=True, return_vis=False)
        pred = res["predictions"][0]
        out = []
        for lab, sc, box in zip(pred["labels"], pred["scores"], pred["bboxes"]):
            if sc >= self.min_score and 0 <= int(lab) < len(phrases):
                out.append(Detection(int(lab), tuple(float(v) for v in box), float(sc)))
        return out


def nms(dets: list[Detection], iou_thr: float = 0.5) -> list[Detection]:
    """Greedy NMS over all detections, whatever chunk they belong to (as GrIT does)."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i].score)
    keep: list[int] = []
    if not dets:
        return []
    ious = box_iou(np.array([d.box for d in dets]), np.array([d.box for d in dets]))
    for i in order:
        if all(ious[i, k] <= iou_thr for k in keep):
            keep.append(i)
    return [dets[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------------------------
# pipeline


@dataclass
class GritPipeline:
    parser: Parser
    detector: Detector
    score_threshold: float = SCORE_THRESHOLD
    nms_iou: float = 0.5
    abstract_nouns: frozenset = ABSTRACT_NOUNS
    stats: dict = field(default_factory=lambda: {"pairs": 0, "kept": 0, "chunks": 0, "abstract": 0, "grounded_chunks": 0, "expressions": 0})

    def process(self, sample: Sample) -> GritExample | None:
        """One image-caption pair -> a GrIT example, or None when no chunk is grounded above threshold."""
        self.stats["pairs"] += 1
        cap = sample.caption
        chunks = self.parser.chunks(cap)
        self.stats["chunks"] += len(chunks)
        concrete = [c for c in chunks if c.head.lower() not in self.abstract_nouns]
        self.stats["abstract"] += len(chunks) - len(concrete)
        dets = nms(self.detector(sample, [c.text for c in concrete]), self.nms_iou)
        dets = [d for d in dets if d.score > self.score_threshold]
        if not dets:
            return None
        W, H = float(sample.width), float(sample.height)

        def norm(b):
            return (b[0] / W, b[1] / H, b[2] / W, b[3] / H)

        grounded = sorted({d.chunk for d in dets})
        self.stats["grounded_chunks"] += len(grounded)
        noun_chunks = [GritSpan(concrete[d.chunk].start, concrete[d.chunk].end, norm(d.box), d.score) for d in dets]
        # expressions: expand every grounded chunk, keep those not inside another kept expression
        exp_spans = self.parser.expand(cap, [concrete[i] for i in grounded])
        span_of = dict(zip(grounded, exp_spans))
        uniq = set(exp_spans)
        maximal = {s for s in uniq if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in uniq)}
        ref_exps = [GritSpan(*span_of[d.chunk], norm(d.box), d.score) for d in dets if span_of[d.chunk] in maximal]
        self.stats["expressions"] += len(maximal)
        self.stats["kept"] += 1
        noun_chunks.sort(key=lambda s: (s.start, s.end))
        ref_exps.sort(key=lambda s: (s.start, s.end))
        return GritExample(sample.key, cap, sample.width, sample.height, noun_chunks, ref_exps, image=sample.image, extra=dict(sample.extra))

    def run(self, samples: Iterable[Sample]) -> list[GritExample]:
        return [e for e in (self.process(s) for s in samples) if e is not None]


# COCO category -> head nouns a caption uses for it (a small synonym list; extend as needed)
COCO_SYNONYMS = {
    "person": "person people man men woman women boy boys girl girls child children kid kids guy player players lady skier surfer skateboarder rider",
    "bicycle": "bicycle bicycles bike bikes",
    "car": "car cars",
    "motorcycle": "motorcycle motorcycles motorbike",
    "airplane": "airplane airplanes plane planes jet",
    "bus": "bus buses",
    "train": "train trains",
    "truck": "truck trucks",
    "boat": "boat boats",
    "dining table": "table tables",
    "cell phone": "phone phones cellphone",
    "tv": "tv television",
    "couch": "couch sofa",
    "potted plant": "plant plants",
    "teddy bear": "bear teddy",
    "hot dog": "hotdog hotdogs dog",
    "sports ball": "ball",
    "wine glass": "glass glasses",
    "traffic light": "light lights",
    "fire hydrant": "hydrant",
    "stop sign": "sign",
    "baseball bat": "bat",
    "baseball glove": "glove mitt",
    "tennis racket": "racket racquet",
}


def _names(category: str) -> set[str]:
    base = category.split()[-1]
    names = {base, base + "s", base + "es"}
    names |= set(COCO_SYNONYMS.get(category, "").split())
    return names


def coco_samples(instances_json: str | Path, captions_json: str | Path, image_dir: str | Path | None = None) -> tuple[list[Sample], OracleDetector]:
    """Caption samples of the images that have instance boxes, and an oracle detector over those boxes."""
    from kosmos2.data import _read_json

    inst, caps = _read_json(Path(instances_json)), _read_json(Path(captions_json))
    cats = {c["id"]: c["name"] for c in inst.get("categories", [])}
    objects: dict[str, list] = {}
    for a in inst.get("annotations", []):
        if a.get("iscrowd"):
            continue
        x, y, w, h = a["bbox"]
        objects.setdefault(str(a["image_id"]), []).append((_names(cats[a["category_id"]]), (), (x, y, x + w, y + h)))
    images = {im["id"]: im for im in caps.get("images", []) + inst.get("images", [])}
    img_dir = Path(image_dir) if image_dir else Path(instances_json).parent
    samples = []
    for c in caps.get("annotations", []):
        im = images.get(c["image_id"])
        if im is None or str(c["image_id"]) not in objects:
            continue
        extra = {"image_id": str(c["image_id"]), "caption_id": c["id"]}
        samples.append(Sample(f"{c['image_id']}_{c['id']}", c["caption"].strip(), int(im["width"]), int(im["height"]), str(img_dir / im["file_name"]), extra))
    return samples, OracleDetector(objects)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m kosmos2.grit: build GrIT-style jsonl from COCO captions (+ instances for the oracle,
    or an MMDetection grounding model) or from a jsonl of {key, caption, image, width, height}."""
    import argparse
    import json

    from kosmos2.data import _read_json, write_grit_jsonl

    p = argparse.ArgumentParser(prog="python -m kosmos2.grit", description=main.__doc__)
    p.add_argument("--captions", required=True, help="COCO captions json, or a jsonl with key/caption/image/width/height")
    p.add_argument("--instances", default=None, help="COCO instances json: ground the chunks in its boxes (oracle detector)")
    p.add_argument("--image-dir", default=None, help="folder of the images named in --captions")
    p.add_argument("--mmdet-config", default=None, help="MMDetection 3.x grounding config (GLIP / Grounding DINO)")
    p.add_argument("--mmdet-checkpoint", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--parser", choices=("auto", "rule", "spacy"), default="auto")
    p.add_argument("--score-threshold", type=float, default=SCORE_THRESHOLD)
    p.add_argument("--nms-iou", type=float, default=0.5)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", required=True, help="output .jsonl")
    args = p.parse_args(argv)

    if (args.instances is None) == (args.mmdet_config is None):
        raise UserError("give exactly one of --instances (oracle boxes) or --mmdet-config (a grounding detector)")
    cap = Path(args.captions)
    if args.instances:
        if cap.suffix == ".jsonl":
            raise UserError("--instances works with a COCO captions json, not a jsonl")
        samples, detector = coco_samples(args.instances, cap, args.image_dir)
    else:
        if cap.suffix == ".jsonl":
            if not cap.is_file():
                raise UserError(f"file not found: {cap}")
            samples = []
            for i, line in enumerate(cap.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    img = Path(args.image_dir or cap.parent) / d["image"]
                    samples.append(Sample(str(d.get("key", i)), d["caption"], int(d["width"]), int(d["height"]), str(img)))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise UserError(f"{cap}:{i}: needs key/caption/image/width/height ({type(e).__name__}: {e})") from None
        else:
            d = _read_json(cap)
            ims = {im["id"]: im for im in d.get("images", [])}
            root = Path(args.image_dir) if args.image_dir else cap.parent
            samples = [
                Sample(f"{c['image_id']}_{c['id']}", c["caption"].strip(), int(ims[c["image_id"]]["width"]), int(ims[c["image_id"]]["height"]),
                       str(root / ims[c["image_id"]]["file_name"]), {"image_id": str(c["image_id"]), "caption_id": c["id"]})
                for c in d.get("annotations", []) if c["image_id"] in ims
            ]
        detector = MMDetGroundingDetector(args.mmdet_config, args.mmdet_checkpoint, device=args.device)
    parser = {"auto": default_parser, "rule": RuleParser, "spacy": SpacyParser}[args.parser]()
    if args.limit is not None:
        samples = samples[: args.limit]
    pipe = GritPipeline(parser, detector, score_threshold=args.score_threshold, nms_iou=args.nms_iou)
    n = write_grit_jsonl(args.out, pipe.run(samples))
    print(json.dumps({"out": str(args.out), "written": n, "parser": type(parser).__name__, **pipe.stats}))
    return 0


if __name__ == "__main__":
    from vlcore.cli import run_cli

    run_cli(main)
