"""Prompt layout with image slots, box insertion, square resize + CLIP normalisation; agreement with HF's processor."""

import numpy as np
import pytest
import torch
from PIL import Image

from kosmos2.processor import CLIP_MEAN, CLIP_STD, Kosmos2Processor, insert_boxes, square_transform
from kosmos2.testing_text import train_tiny_sentencepiece
from vlcore.errors import UserError


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    return train_tiny_sentencepiece(tmp_path_factory.mktemp("spm"))


def _image(h=50, w=80):
    return Image.fromarray(np.random.RandomState(0).randint(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.unit
def test_prompt_layout_image_slots_and_mask(spm_file):
    proc = Kosmos2Processor.from_spm(spm_file)
    tok = proc.tokenizer
    out = proc(["<grounding> An image of", "<grounding><phrase> a dog</phrase>"], images=[_image(), _image(30, 30)])
    ids, m, a = out["input_ids"], out["image_embeds_position_mask"], out["attention_mask"]
    assert ids.shape == m.shape == a.shape and ids.shape[0] == 2
    row = ids[0].tolist()
    assert row[:2] == [0, tok.special_ids["<image>"]] and row[2:66] == list(range(4, 68))
    assert row[66] == tok.special_ids["</image>"] and row[67] == tok.special_ids["<grounding>"]
    assert m[0].tolist()[:67] == [0, 0] + [1] * 64 + [0] and m.sum(1).tolist() == [64, 64]
    assert out["pixel_values"].shape == (2, 3, 224, 224)
    # padding on the right with <pad>=1 and attention 0
    r = int(a.sum(1).argmin())
    short = int(a[r].sum())
    assert short < ids.shape[1] and ids[r, short:].eq(1).all() and a[1 - r].all()
    left = proc(["a", "a dog with the cat"], padding_side="left")
    assert left["input_ids"][0, 0] == 1 and left["attention_mask"][0, 0] == 0 and left["image_embeds_position_mask"][0].sum() == 64
    with pytest.raises(UserError):
        proc(["a", "b"], images=[_image()])


@pytest.mark.unit
def test_box_insertion_after_phrases():
    t = "<grounding><phrase> a dog</phrase> and<phrase> two cats</phrase>"
    s = insert_boxes(t, [(0.1, 0.2, 0.5, 0.9), [(0, 33), (40, 1023)]])
    assert s == (
        "<grounding><phrase> a dog</phrase><object><patch_index_0195><patch_index_0911></object> and<phrase> two cats</phrase>"
        "<object><patch_index_0000><patch_index_0033></delimiter_of_multi_objects/><patch_index_0040><patch_index_1023></object>"
    )
    assert insert_boxes(t, [None, (1, 2)]).count("<object>") == 1
    with pytest.raises(UserError, match="2 <phrase>"):
        insert_boxes(t, [(1, 2)])
    with pytest.raises(UserError, match="bad box"):
        insert_boxes(t, [(0.5, 0.5, 0.1, 0.1), None])


@pytest.mark.unit
def test_square_resize_and_clip_normalisation():
    im = Image.new("RGB", (100, 40), (255, 0, 128))  # not square: resized without crop
    x = square_transform(im, 32)
    assert x.shape == (3, 32, 32)
    want = [(1.0 - CLIP_MEAN[0]) / CLIP_STD[0], (0.0 - CLIP_MEAN[1]) / CLIP_STD[1], (128 / 255 - CLIP_MEAN[2]) / CLIP_STD[2]]
    torch.testing.assert_close(x.mean((1, 2)), torch.tensor(want), atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="not found"):
        square_transform("/nonexistent/x.png")


@pytest.mark.unit
def test_agrees_with_hf_kosmos2_processor(spm_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    from transformers.models.kosmos2.processing_kosmos2 import Kosmos2Processor as HFProcessor

    d = tmp_path / "hf"
    d.mkdir()
    (d / "sentencepiece.bpe.model").write_bytes(spm_file.read_bytes())
    hf_tok = transformers.XLMRobertaTokenizer.from_pretrained(str(d))
    # the released preprocessor square-resizes (no centre crop), bicubic, CLIP mean/std
    ip = transformers.CLIPImageProcessor(size={"height": 224, "width": 224}, crop_size={"height": 224, "width": 224}, do_center_crop=False)
    hf = HFProcessor(ip, hf_tok)
    ours = Kosmos2Processor.from_spm(spm_file)
    texts = ["<grounding> An image of", "<grounding><phrase> a snowman</phrase> by<phrase> the fire</phrase>."]
    boxes = [None, [(0.1, 0.2, 0.5, 0.9), [(0.0, 0.0, 0.25, 0.5), (0.5, 0.5, 1.0, 1.0)]]]
    for t, b in zip(texts, boxes):
        h = hf(images=_image(), text=t, bboxes=b, return_tensors="pt")
        o = ours(t, images=_image(), bboxes=b)
        assert o["input_ids"].tolist() == h["input_ids"].tolist()
        assert o["image_embeds_position_mask"].tolist() == h["image_embeds_position_mask"].tolist()
        assert o["attention_mask"].tolist() == h["attention_mask"].tolist()
        err = (o["pixel_values"] - h["pixel_values"]).abs()
        assert float(err.mean()) < 0.02 and float(err.max()) < 0.2  # PIL vs HF resize kernels
        gen = hf_tok.decode(h["input_ids"][0]) + "<phrase> a dog</phrase><object><patch_index_0044><patch_index_0863></object>"
        assert ours.post_process_generation(gen) == hf.post_process_generation(gen)
