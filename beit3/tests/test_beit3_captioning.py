"""Captioning: COCO BLEU / CIDEr-D against hand-computed values, beam search against greedy decoding."""

import math

import pytest
import torch

from beit3.metrics import cider_d, coco_bleu
from beit3.models import BEiT3ForCaptioning
from beit3.testing import TINY


@pytest.mark.unit
def test_coco_bleu_hand_values():
    # closest reference length: |4 - 3| = |2 - 3| -> the shorter (2); c = 3 > 2, no brevity penalty.
    # p1 = p2 = p3 = 1; no 4-gram: p4 = (0 + 1e-15) / (0 + 1e-9) = 1e-6 -> BLEU-4 = 1e-6 ** (1/4)
    b = coco_bleu(["the cat sat"], [["the cat sat down", "a cat"]])
    assert b[:3] == pytest.approx([1.0, 1.0, 1.0]) and b[3] == pytest.approx(10 ** -1.5, rel=1e-6)
    # brevity penalty: c = 2, r = 4 -> exp(1 - 4/2); clipping: "the" x3 against one "the" -> p1 = 1/3
    assert coco_bleu(["the cat"], [["the cat sat down"]], max_n=2)[1] == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert coco_bleu(["the the the"], [["the cat"]], max_n=1)[0] == pytest.approx(1 / 3, rel=1e-6)
    # corpus level: counts and lengths are summed before dividing (not a mean of sentence scores)
    two = coco_bleu(["a b", "c d e f"], [["a b"], ["c x y z"]], max_n=1)[0]
    assert two == pytest.approx((2 + 1) / (2 + 4), rel=1e-6)


@pytest.mark.unit
def test_cider_d_hand_values():
    # N = 2 images, L = log 2; "a" is in both reference sets -> idf 0
    # hypotheses equal to their single reference: n = 1..3 cosine 1, no 4-grams (0), same bigram count
    assert cider_d(["a red circle", "a blue square"], [["a red circle"], ["a blue square"]]) == pytest.approx(7.5)
    # image 1: hyp "a cat a cat" vs "a cat". 1-grams: hyp cat tf 2 (w 2L), ref cat L -> min(2L, L) L / (2L * L) = 1/2
    # 2-grams: hyp {a cat: 2L, cat a: L}, ref {a cat: L} -> L^2 / (sqrt(5) L * L); 3-, 4-grams: ref empty -> 0
    # lengths (bigram counts) 3 vs 1 -> exp(-4 / 72)
    s1 = 10 * (0.5 + 1 / math.sqrt(5)) * math.exp(-4 / 72) / 4
    # image 2: hyp "a dog" vs "a dog runs": 1-grams L^2 / (L * sqrt(2) L); 2-grams the same; lengths 1 vs 2
    s2 = 10 * (2 / math.sqrt(2)) * math.exp(-1 / 72) / 4
    got = cider_d(["a cat a cat", "a dog"], [["a cat"], ["a dog runs"]])
    assert got == pytest.approx((s1 + s2) / 2, rel=1e-9)
    # two references: the per-reference scores are averaged; an unrelated hypothesis scores 0
    assert cider_d(["x y z", "a blue square"], [["a red circle", "red circle"], ["a blue square"]])\
        == pytest.approx(7.5 / 2)


def _tiny_captioner(seed=0):
    torch.manual_seed(seed)
    return BEiT3ForCaptioning(**TINY).eval()


@pytest.mark.unit
def test_beam_of_one_is_greedy():
    model = _tiny_captioner()
    image = torch.randn(3, 3, TINY["img_size"], TINY["img_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        greedy = model.generate(image, max_len=6, bos_id=0, eos_id=2, mask_id=3)
        beam = model.generate_beam(image, num_beams=1, max_len=6, bos_id=0, eos_id=2, mask_id=3)
    assert torch.equal(greedy, beam)


@pytest.mark.unit
def test_beam_search_finds_a_more_likely_caption_than_greedy():
    """Constructed: after <s>, token 5 (p 0.6) leads to a flat distribution, token 6 (p 0.4) to </s> (p 0.9).
    Greedy: 5, then p <= 0.3 -> 0.6 x 0.3 x ...; beam 2 keeps 6 -> </s> with 0.4 x 0.9 = 0.36."""
    V, eos = 10, 2
    model = _tiny_captioner()

    def dist(prefix):
        p = torch.full((V,), 1e-6)
        if len(prefix) == 1:
            p[5], p[6] = 0.6, 0.4
        elif prefix[-1] == 6:
            p[eos], p[7] = 0.9, 0.1
        elif prefix[-1] == 5:
            p[7], p[8], p[9] = 0.3, 0.3, 0.4 - 0.1
            p[eos] = 0.1
        else:
            p[eos] = 1.0
        return (p / p.sum()).log()

    def fake_logits(image, text, text_padding_mask=None):  # B, T + 1 (last = [MASK]), V
        out = torch.zeros(text.shape[0], text.shape[1], V)
        for i, row in enumerate(text.tolist()):
            out[i, -1] = dist(row[:-1])
        return out

    model.logits = fake_logits
    image = torch.zeros(1, 3, TINY["img_size"], TINY["img_size"])

    def logp(seq):
        return sum(dist(seq[:k])[seq[k]].item() for k in range(1, len(seq)))

    greedy = model.generate(image, max_len=4, bos_id=0, eos_id=eos, mask_id=3)[0].tolist()
    beam = model.generate_beam(image, num_beams=2, length_penalty=0.0, max_len=4, bos_id=0, eos_id=eos,
                               mask_id=3)[0].tolist()
    g = greedy[: greedy.index(eos) + 1]
    b = beam[: beam.index(eos) + 1]
    assert g[:2] == [0, 5] and b == [0, 6, eos]
    assert logp(b) == pytest.approx(math.log(0.36), abs=1e-4) and logp(b) > logp(g) + 0.5
