"""Readers: RefCOCO layouts (real sample in coco_mini), Flickr30K Entities (tiny artefact), GrIT jsonl."""

import json
import pickle
from pathlib import Path

import pytest

from kosmos2.data import (
    GritExample,
    GritSpan,
    grit_grounded_caption,
    load_flickr30k_entities,
    load_refexp,
    parse_flickr_sentence,
    read_grit_jsonl,
    write_grit_jsonl,
)
from kosmos2.grounding import parse_entities
from vlcore.errors import UserError

COCO_MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_mini"
REFEXP = COCO_MINI / "vl" / "refexp_subset.json"


@pytest.mark.unit
@pytest.mark.skipif(not REFEXP.is_file(), reason="coco_mini not present")
def test_real_refcoco_sample_reads_with_boxes_inside_images():
    ex = load_refexp(REFEXP)
    assert len(ex) == 115  # PROVENANCE: 115 expressions, 9 images
    assert {e.dataset for e in ex} == {"refcoco", "refcoco+", "refcocog"}
    assert len({e.image for e in ex}) == 9 and all(Path(e.image).is_file() for e in ex)
    for e in ex:
        x1, y1, x2, y2 = e.box
        assert 0 <= x1 < x2 <= e.width + 1 and 0 <= y1 < y2 <= e.height + 1 and e.expression
    assert len(load_refexp(REFEXP, dataset="refcoco", split="testB")) == 20
    first = ex[0]
    assert first.expression == "man in button up shirt" and first.box == pytest.approx((285.84, 1.08, 639.64, 474.61))


@pytest.mark.unit
def test_refer_and_mdetr_layouts(tmp_path):
    inst = {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50}], "annotations": [{"id": 70, "image_id": 7, "bbox": [10, 5, 20, 10], "category_id": 1}]}
    d = tmp_path / "refcoco"
    d.mkdir()
    (d / "instances.json").write_text(json.dumps(inst))
    refs = [{"ref_id": 1, "ann_id": 70, "image_id": 7, "split": "val", "sentences": [{"sent": "left dog"}, {"sent": "small dog"}]},
            {"ref_id": 2, "ann_id": 70, "image_id": 7, "split": "train", "sentences": [{"sent": "dog"}]}]
    with open(d / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    ex = load_refexp(d, image_root=tmp_path / "imgs", split="val")
    assert [e.expression for e in ex] == ["left dog", "small dog"] and ex[0].box == (10, 5, 30, 15)
    assert ex[0].image == str(tmp_path / "imgs" / "a.jpg")
    mdetr = {"images": [{"id": 0, "original_id": 7, "file_name": "a.jpg", "width": 100, "height": 50, "caption": "left dog", "dataset_name": "refcoco", "split": "val"}],
             "annotations": [{"id": 0, "image_id": 0, "bbox": [10, 5, 20, 10]}]}
    (tmp_path / "finetune_refcoco_val.json").write_text(json.dumps(mdetr))
    ex = load_refexp(tmp_path / "finetune_refcoco_val.json")
    assert ex[0].expression == "left dog" and ex[0].box == (10, 5, 30, 15) and ex[0].image_id == 7
    # errors name the file
    with pytest.raises(UserError, match="nope.json"):
        load_refexp(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json"):
        load_refexp(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="odd.json"):
        load_refexp(tmp_path / "odd.json")
    with pytest.raises(UserError, match=r"no refs\(<split_by>\)\.p"):
        load_refexp(tmp_path)


def _flickr_artefact(root: Path):
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Sentences" / "100.txt").write_text(
        "[/EN#18/people A child] in [/EN#19/clothing a pink dress] is climbing [/EN#20/other stairs] .\n"
        "[/EN#18/people A girl] plays in [/EN#0/notvisual the sun] .\n"
    )
    (root / "Annotations" / "100.xml").write_text(
        "<annotation><size><width>500</width><height>375</height><depth>3</depth></size>"
        "<object><name>18</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>110</xmax><ymax>220</ymax></bndbox></object>"
        "<object><name>19</name><bndbox><xmin>30</xmin><ymin>60</ymin><xmax>100</xmax><ymax>200</ymax></bndbox></object>"
        "<object><name>20</name><bndbox><xmin>200</xmin><ymin>100</ymin><xmax>300</xmax><ymax>300</ymax></bndbox></object>"
        "<object><name>20</name><bndbox><xmin>320</xmin><ymin>100</ymin><xmax>400</xmax><ymax>300</ymax></bndbox></object>"
        "<object><name>0</name><nobndbox>1</nobndbox></object></annotation>"
    )


@pytest.mark.unit
def test_flickr30k_entities_layout(tmp_path):
    text, ph = parse_flickr_sentence("[/EN#18/people A child] in [/EN#19/clothing a pink dress] .")
    assert text == "A child in a pink dress ." and ph == [("A child", (0, 7), "18", "people"), ("a pink dress", (11, 23), "19", "clothing")]
    _flickr_artefact(tmp_path / "f30k")
    ex = load_flickr30k_entities(tmp_path / "f30k")
    assert len(ex) == 2 and (ex[0].width, ex[0].height) == (500, 375)
    assert ex[0].sentence == "A child in a pink dress is climbing stairs ."
    assert [p[0] for p in ex[0].phrases] == ["A child", "a pink dress", "stairs"]
    assert ex[0].phrases[2][4] == [(200, 100, 300, 300), (320, 100, 400, 300)]  # two GT boxes for one entity
    assert [p[0] for p in ex[1].phrases] == ["A girl"]  # "the sun" has no box
    assert len(load_flickr30k_entities(tmp_path / "f30k", skip_no_box=False)[1].phrases) == 2
    with pytest.raises(UserError, match="Sentences"):
        load_flickr30k_entities(tmp_path / "missing")
    (tmp_path / "f30k" / "Annotations" / "100.xml").write_text("<annotation><size>")
    with pytest.raises(UserError, match="100.xml"):
        load_flickr30k_entities(tmp_path / "f30k")


@pytest.mark.unit
def test_grit_jsonl_round_trip_and_grounded_caption(tmp_path):
    cap = "a dog in a field of flowers"
    ex = GritExample(
        "k1", cap, 640, 480,
        noun_chunks=[GritSpan(0, 5, (0.1, 0.1, 0.4, 0.5), 0.9), GritSpan(9, 16, (0.0, 0.5, 1.0, 1.0), 0.8), GritSpan(20, 27, (0.2, 0.6, 0.3, 0.7), 0.5)],
        ref_exps=[GritSpan(0, 27, (0.1, 0.1, 0.4, 0.5), 0.9), GritSpan(9, 27, (0.0, 0.5, 1.0, 1.0), 0.8),
                  GritSpan(0, 27, (0.5, 0.1, 0.7, 0.5), 0.7)],
    )
    p = tmp_path / "g.jsonl"
    assert write_grit_jsonl(p, [ex, ex]) == 2
    back = list(read_grit_jsonl(p))
    assert len(back) == 2 and back[0].caption == cap and back[0].ref_exps[1].start == 9 and back[0].noun_chunks[2].score == 0.5
    s = grit_grounded_caption(back[0], mode="expression", num_bins=32)
    clean, ents = parse_entities(s, 32)
    # "a field of flowers" lies inside "a dog in a field of flowers": dropped; two boxes share the kept span
    assert clean == cap and len(ents) == 1 and ents[0][0] == cap and len(ents[0][2]) == 2
    s = grit_grounded_caption(back[0], mode="chunk", num_bins=32)
    assert [e[0] for e in parse_entities(s, 32)[1]] == ["a dog", "a field"]  # "flowers" scores 0.5 <= 0.65
    low = GritExample("k2", cap, 1, 1, [GritSpan(0, 5, (0.1, 0.1, 0.4, 0.5), 0.6)], [])
    assert grit_grounded_caption(low, mode="chunk") is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"caption": "x", "ref_exps": [[0, 1, 0.1]]}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl:1"):
        list(read_grit_jsonl(bad))
    bad.write_text("{oops\n")
    with pytest.raises(UserError, match="bad.jsonl:1"):
        list(read_grit_jsonl(bad))
