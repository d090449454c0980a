"""The GrIT pipeline: chunking, expansion, NMS, thresholds; end to end on coco_mini and on generated scenes."""

import json
import random
from pathlib import Path

import pytest

from kosmos2.data import grit_grounded_caption, read_grit_jsonl, write_grit_jsonl
from kosmos2.grit import (
    Detection,
    GritPipeline,
    MMDetGroundingDetector,
    OracleDetector,
    RuleParser,
    Sample,
    SpacyParser,
    coco_samples,
    default_parser,
    nms,
)
from kosmos2.grounding import parse_entities
from kosmos2.metrics import box_iou
from kosmos2.testing_text import COLOURS, SceneDetector, generated_scene
from vlcore.errors import UserError

COCO_MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_mini"


@pytest.mark.unit
def test_rule_parser_chunks_and_expands_like_the_paper_example():
    p = RuleParser()
    cap = "A dog in a field of flowers."
    ch = p.chunks(cap)
    assert [c.text for c in ch] == ["A dog", "a field", "flowers"] and [c.head for c in ch] == ["dog", "field", "flowers"]
    assert [cap[s:e] for s, e in p.expand(cap, ch)] == ["A dog in a field of flowers", "a field of flowers", "flowers"]
    cap = "Two men and a woman sitting on a bench."
    ch = p.chunks(cap)
    assert [c.text for c in ch] == ["Two men", "a woman", "a bench"]
    # a chunk with a conjunct is not expanded
    assert [cap[s:e] for s, e in p.expand(cap, ch)] == ["Two men", "a woman", "a bench"]
    assert isinstance(default_parser(), RuleParser)  # spaCy is not installed here


class _Tok:
    def __init__(self, text, idx, dep):
        self.text, self.idx, self.dep_, self.children = text, idx, dep, []

    def __len__(self):
        return len(self.text)

    @property
    def subtree(self):
        return sorted([self] + [t for c in self.children for t in c.subtree], key=lambda t: t.idx)


class _Span:
    def __init__(self, toks, root):
        self.start_char, self.end_char, self.root = toks[0].idx, toks[-1].idx + len(toks[-1]), root
        self.text = " ".join(t.text for t in toks)


class _Doc(list):
    """A hand-made dependency parse with spaCy's attribute names (spaCy is not installed here)."""

    def __init__(self, text, words, heads, deps, chunks):
        idx, toks = 0, []
        for w, d in zip(words, deps):
            idx = text.index(w, idx)
            toks.append(_Tok(w, idx, d))
            idx += len(w)
        for t, h in zip(toks, heads):
            if h is not None:
                toks[h].children.append(t)
        super().__init__(toks)
        self.text = text
        self.noun_chunks = [_Span(toks[a:b], toks[b - 1]) for a, b in chunks]


@pytest.mark.unit
def test_spacy_parser_expands_dependency_subtrees_except_conjuncts():
    parses = {
        "a dog in a field of flowers": _Doc("a dog in a field of flowers", "a dog in a field of flowers".split(),
                                            [1, None, 1, 4, 2, 4, 5], ["det", "ROOT", "prep", "det", "pobj", "prep", "pobj"], [(0, 2), (3, 5), (6, 7)]),
        "a dog and a cat": _Doc("a dog and a cat", "a dog and a cat".split(), [1, None, 1, 4, 1], ["det", "ROOT", "cc", "det", "conj"], [(0, 2), (3, 5)]),
    }
    p = SpacyParser.__new__(SpacyParser)
    p.nlp, p._doc = parses.__getitem__, None
    cap = "a dog in a field of flowers"
    ch = p.chunks(cap)
    assert [c.text for c in ch] == ["a dog", "a field", "flowers"] and [c.head for c in ch] == ["dog", "field", "flowers"]
    assert [cap[s:e] for s, e in p.expand(cap, ch)] == ["a dog in a field of flowers", "a field of flowers", "flowers"]
    cap = "a dog and a cat"
    assert [cap[s:e] for s, e in p.expand(cap, p.chunks(cap))] == ["a dog", "a cat"]  # "dog" has a conjunct: not expanded


@pytest.mark.unit
def test_nms_runs_over_all_chunks_and_thresholds_apply():
    dets = [Detection(0, (0, 0, 10, 10), 0.9), Detection(1, (1, 1, 10, 10), 0.8), Detection(1, (20, 20, 30, 30), 0.7), Detection(0, (40, 40, 50, 50), 0.6)]
    kept = nms(dets, 0.5)
    assert kept == [dets[0], dets[2], dets[3]]  # chunk 1's box overlapping chunk 0's is suppressed

    class Fixed:
        def __call__(self, sample, phrases):
            return dets

    pipe = GritPipeline(RuleParser(), Fixed())
    ex = pipe.process(Sample("k", "a cat near a dog", 100, 100))
    # 0.6 <= 0.65 is dropped; the two kept boxes are normalised by W, H
    assert [(s.start, s.end, s.box) for s in ex.noun_chunks] == [(0, 5, (0, 0, 0.1, 0.1)), (11, 16, (0.2, 0.2, 0.3, 0.3))]
    assert [(s.start, s.end) for s in ex.ref_exps] == [(0, 16)]  # "a cat near a dog" contains "a dog"

    class Weak:
        def __call__(self, sample, phrases):
            return [Detection(0, (0, 0, 5, 5), 0.65)]

    assert GritPipeline(RuleParser(), Weak()).process(Sample("k", "a cat", 10, 10)) is None
    # abstract chunks never reach the detector
    seen = []

    class Spy:
        def __call__(self, sample, phrases):
            seen.extend(phrases)
            return []

    GritPipeline(RuleParser(), Spy()).process(Sample("k", "a dog at the time of love", 10, 10))
    assert seen == ["a dog"]


@pytest.mark.unit
def test_generated_scenes_end_to_end(tmp_path):
    rng = random.Random(0)
    samples, objects = [], {}
    for i in range(60):
        img, cap, objs = generated_scene(rng)
        path = tmp_path / f"{i}.png"
        img.save(path)
        samples.append(Sample(str(i), cap, 64, 64, str(path)))
        objects[str(i)] = [({sh}, {c}, box) for c, sh, box in objs]
    pipe = GritPipeline(RuleParser(), OracleDetector(objects, attribute_vocab=COLOURS))
    out = pipe.run(samples)
    assert len(out) == 60 and pipe.stats["grounded_chunks"] == sum(len(v) for v in objects.values())
    n = write_grit_jsonl(tmp_path / "scenes.jsonl", out)
    back = list(read_grit_jsonl(tmp_path / "scenes.jsonl"))
    assert n == 60 == len(back)
    for ex in back:
        objs = objects[ex.key]
        for s in ex.noun_chunks:  # every chunk box is its own object's box (colour and shape both match)
            words = ex.caption[s.start : s.end].split()
            match = [b for names, attrs, b in objs if words[-1] in names and words[-2] in attrs]
            assert len(match) == 1 and box_iou([v * 64 for v in s.box], list(match[0])) > 0.999
        text = grit_grounded_caption(ex, mode="chunk", num_bins=32)
        clean, ents = parse_entities(text, 32)
        assert clean == ex.caption and len(ents) == len(objs)


@pytest.mark.unit
def test_generated_scenes_with_a_detector_that_reads_pixels(tmp_path):
    rng = random.Random(1)
    samples, truth = [], {}
    for i in range(40):
        img, cap, objs = generated_scene(rng)
        img.save(tmp_path / f"{i}.png")
        samples.append(Sample(str(i), cap, 64, 64, str(tmp_path / f"{i}.png")))
        truth[str(i)] = {f"{c} {sh}": b for c, sh, b in objs}
    out = GritPipeline(RuleParser(), SceneDetector()).run(samples)
    n_spans = n_right = 0
    for ex in out:
        for s in ex.noun_chunks:
            n_spans += 1
            gt = truth[ex.key][" ".join(ex.caption[s.start : s.end].split()[-2:])]
            n_right += box_iou([v * 64 for v in s.box], list(gt)) >= 0.5
    n_objects = sum(len(t) for t in truth.values())
    # measured on this seed: all 78 objects found, every box at IoU >= 0.5
    assert len(out) == 40 and n_objects == 78 and n_spans == n_objects and n_right == n_spans


@pytest.mark.unit
@pytest.mark.skipif(not (COCO_MINI / "annotations" / "captions_val2017.json").is_file(), reason="coco_mini not present")
def test_coco_mini_captions_with_oracle_detector(tmp_path):
    ann = COCO_MINI / "annotations"
    samples, oracle = coco_samples(ann / "instances_val2017.json", ann / "captions_val2017.json", COCO_MINI / "images" / "val2017")
    assert len(samples) == 395 and all(Path(s.image).is_file() for s in samples[:20])
    pipe = GritPipeline(RuleParser(), oracle)
    out = pipe.run(samples)
    n_kept = len(out)
    # measured: 326 of 395 pairs keep at least one grounded chunk (RuleParser + oracle)
    assert 0.6 * len(samples) < n_kept < len(samples)
    assert pipe.stats["grounded_chunks"] >= n_kept and pipe.stats["abstract"] > 0
    write_grit_jsonl(tmp_path / "coco_grit.jsonl", out)
    back = list(read_grit_jsonl(tmp_path / "coco_grit.jsonl"))
    assert len(back) == n_kept
    for ex in back:
        assert ex.noun_chunks and ex.ref_exps
        for s in ex.noun_chunks + ex.ref_exps:
            assert 0 <= s.start < s.end <= len(ex.caption) and all(-1e-6 <= v <= 1 + 1e-6 for v in s.box)
        spans = {(s.start, s.end) for s in ex.ref_exps}
        assert not any(a != b and b[0] <= a[0] and a[1] <= b[1] for a in spans for b in spans)  # none inside another
        assert grit_grounded_caption(ex) is not None


@pytest.mark.unit
def test_mmdet_adapter_reports_missing_files(tmp_path):
    with pytest.raises(UserError, match="config not found"):
        MMDetGroundingDetector(tmp_path / "glip.py")
    cfg = tmp_path / "glip.py"
    cfg.write_text("")
    with pytest.raises(UserError, match="checkpoint not found"):
        MMDetGroundingDetector(cfg, tmp_path / "glip.pth")


@pytest.mark.smoke
@pytest.mark.skipif(not (COCO_MINI / "annotations" / "captions_val2017.json").is_file(), reason="coco_mini not present")
def test_grit_cli_on_coco_mini(tmp_path, capsys):
    from kosmos2 import grit
    from vlcore.cli import run_cli

    ann = COCO_MINI / "annotations"
    out = tmp_path / "g.jsonl"
    assert grit.main(["--captions", str(ann / "captions_val2017.json"), "--instances", str(ann / "instances_val2017.json"),
                      "--image-dir", str(COCO_MINI / "images" / "val2017"), "--limit", "40", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    back = list(read_grit_jsonl(out))
    assert res["written"] == len(back) > 20 and res["pairs"] == 40 and res["parser"] == "RuleParser"
    assert all(Path(e.image).is_file() for e in back) and len({e.key for e in back}) == len(back)  # one key per pair
    with pytest.raises(SystemExit) as e:
        run_cli(grit.main, ["--captions", str(ann / "captions_val2017.json"), "--out", str(out)])
    assert e.value.code == 2 and "exactly one of" in capsys.readouterr().err
