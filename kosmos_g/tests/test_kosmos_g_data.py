import random

import pytest
import torch

from kosmos_g.data import (ColourSegmenter, CompositionalBuilder, VocabularyEntityExtractor, filter_tags,
                           interleave_caption, mask_to_entity)
from kosmos_g.mini import BG_NAMES, COLOUR_NAMES, SHAPES, caption_words, render


def _scene(c=0, s=1, b=1, cx=9.0, cy=7.0, size=8.0):
    t = lambda v: torch.tensor([v])  # noqa: E731
    img = render(t(c), t(s), t(b), t(cx), t(cy), t(size))[0]
    return img, " ".join(caption_words(c, s, b))


@pytest.mark.unit
def test_filter_tags_drops_colours_non_words_and_contained_tags_and_sorts():
    cap = "a dog and a red hot dog stand next to a cat"
    assert filter_tags(cap, ["cat", "red", "dog", "hot dog", "do", "bird", "dog#"]) == ["hot dog", "cat"]
    assert filter_tags("a cat on a mat", ["mat", "cat"]) == ["cat", "mat"]


@pytest.mark.unit
def test_mask_to_entity_square_box_largest_component_and_white_background():
    img = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(20, 20)
    m[4:10, 6:9] = 0.9  # 6 x 3 blob -> square box of side 6
    m[15, 15] = 0.9  # a smaller component is dropped
    m[0, 0] = 0.2  # below the threshold
    crop, white = mask_to_entity(img, m, threshold=0.3, dilation=1)
    assert crop.shape == (3, 6, 6)
    # box centred on the blob: rows 4..9, columns 4.5 -> 4..9
    torch.testing.assert_close(crop, img[:, 4:10, 4:10])
    inside = torch.zeros(6, 6, dtype=torch.bool)
    inside[:, 2:5] = True
    torch.testing.assert_close(white[:, inside], img[:, 4:10, 4:10][:, inside])
    assert torch.all(white[:, ~inside] == 1)
    assert mask_to_entity(img, torch.zeros(20, 20)) is None
    up = mask_to_entity(img, m, dilation=1, out_size=12)
    assert up[0].shape == (3, 12, 12)


@pytest.mark.unit
def test_construction_on_generated_scenes_and_interleaved_prompt():
    nouns = list(SHAPES)
    builder = CompositionalBuilder(VocabularyEntityExtractor(nouns + ["background"]), ColourSegmenter(),
                                   dilation=1)
    for c, s, b in [(0, 1, 1), (3, 0, 2), (5, 3, 0)]:
        img, cap = _scene(c, s, b)
        rec = builder(img, cap)
        # "background" occurs in the caption and is found by the extractor; the segmenter finds the
        # entity for it too: both are kept in caption order
        assert [e.tag for e in rec.entities][0] == SHAPES[s]
        ent = rec.entities[0]
        assert ent.crop.shape[0] == 3 and ent.crop.shape[1] == ent.crop.shape[2] >= 5  # square box
        # the entity's colour dominates the white-background crop's non-white pixels
        nonwhite = (ent.crop_white < 0.99).any(0)
        col = ent.crop_white[:, nonwhite].mean(1)
        from kosmos_g.mini import COLOURS
        torch.testing.assert_close(col, torch.tensor(COLOURS[COLOUR_NAMES[c]]), atol=0.05, rtol=0)
    img, cap = _scene(2, 2, 3)
    rec = CompositionalBuilder(VocabularyEntityExtractor(nouns), ColourSegmenter(), dilation=1)(img, cap)
    keep = interleave_caption(rec, drop_words_prob=0.0, white_prob=0.0, rng=random.Random(0))
    assert keep[0] == f"a {COLOUR_NAMES[2]} triangle" and keep[1] is rec.entities[0].crop
    assert keep[2] == f"on a {BG_NAMES[3]} background"
    dropped = interleave_caption(rec, drop_words_prob=1.0, white_prob=1.0, rng=random.Random(0))
    assert dropped[0] == f"a {COLOUR_NAMES[2]}" and dropped[1] is rec.entities[0].crop_white
    # the drop probability is per sample
    n = sum(isinstance(interleave_caption(rec, rng=random.Random(i))[0], str) and
            interleave_caption(rec, rng=random.Random(i))[0].endswith("triangle") for i in range(200))
    assert 70 < n < 130
    with pytest.raises(ValueError, match="captioner"):
        CompositionalBuilder(VocabularyEntityExtractor(nouns), ColourSegmenter())(img)
    rec2 = CompositionalBuilder(VocabularyEntityExtractor(nouns), ColourSegmenter(), captioner=lambda x: cap,
                                dilation=1)(img)
    assert rec2.caption == cap and len(rec2.entities) == 1
