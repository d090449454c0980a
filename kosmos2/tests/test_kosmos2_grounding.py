"""Location tokens, grounded-caption serialisation and entity parsing (agreement with transformers' Kosmos-2 processor)."""

import random
import types

import pytest
from transformers.models.kosmos2 import processing_kosmos2 as hf

from kosmos2.grounding import (
    DELIM,
    box_to_loc_text,
    box_to_tokens,
    format_entities,
    loc_index,
    loc_token,
    parse_entities,
    tokens_to_box,
)
from kosmos2.testing_text import random_box, random_generation, random_grounded_caption


def hf_post_process(text):
    # the real HF method; it only reads `eoi_token` from the processor
    return hf.Kosmos2Processor.post_process_generation(types.SimpleNamespace(eoi_token="</image>"), text)


@pytest.mark.unit
def test_token_index_is_row_major_and_text_round_trips():
    assert box_to_tokens((0.0, 0.0, 1.0, 1.0), 32) == (0, 1023)
    # x1 = 0.1 -> col 3, y1 = 0.2 -> row 6 -> 6*32+3 = 195; x2 = 0.5 -> col 16 (original rule), y2 = 0.9 -> row 28
    assert box_to_tokens((0.1, 0.2, 0.5, 0.9), 32, rule="original") == (195, 28 * 32 + 16)
    assert box_to_tokens((0.1, 0.2, 0.5, 0.9), 32, rule="hf") == (195, 911)  # card §4: HF gives (195, 911)
    assert loc_token(44) == "<patch_index_0044>" and loc_index("<patch_index_0863>") == 863
    assert box_to_loc_text([(44, 863), (5, 911)]) == "<patch_index_0044><patch_index_0863>" + DELIM + "<patch_index_0005><patch_index_0911>"
    # decode: centre rule when row and column differ, full cells otherwise
    assert tokens_to_box(44, 863, 32) == (12.5 / 32, 1.5 / 32, 31.5 / 32, 26.5 / 32)
    assert tokens_to_box(33, 33, 32) == (1 / 32, 1 / 32, 2 / 32, 2 / 32)
    assert tokens_to_box(33, 40, 32) == (1 / 32, 1 / 32, 9 / 32, 2 / 32)  # same row
    assert box_to_tokens((0.1, 0.1, 0.3, 0.3), 16) == (1 * 16 + 1, 4 * 16 + 4)
    for bad in [(0.5, 0.1, 0.4, 0.3), (0.1, 0.1, 0.1, 0.3), (0, 0, float("nan"), 1), (1, 2, 3)]:
        with pytest.raises(ValueError):
            box_to_tokens(bad, 32)
    with pytest.raises(ValueError):
        tokens_to_box(0, 1024, 32)
    with pytest.raises(ValueError):
        box_to_tokens((0, 0, 1, 1), 32, rule="nearest")


@pytest.mark.unit
@pytest.mark.parametrize("num_bins", [8, 16, 32])
@pytest.mark.parametrize("rule", ["original", "hf"])
def test_any_box_survives_the_round_trip_within_one_bin(num_bins, rule):
    rng = random.Random(num_bins * 7 + len(rule))
    worst = 0.0
    for _ in range(3000):
        box = random_box(rng, exact_bins=num_bins)
        ul, lr = box_to_tokens(box, num_bins, rule=rule)
        assert 0 <= ul <= lr < num_bins * num_bins
        back = tokens_to_box(ul, lr, num_bins)
        worst = max(worst, max(abs(a - b) for a, b in zip(box, back)))
        assert back[2] > back[0] and back[3] > back[1]
    assert worst <= 1.0 / num_bins + 1e-9
    assert worst > 0.4 / num_bins  # the bound is not vacuous


@pytest.mark.unit
def test_encode_rules_match_hf_and_differ_only_on_exact_bin_edges():
    rng = random.Random(0)
    n_diff = 0
    for _ in range(3000):
        box = random_box(rng, exact_bins=32)
        ours_hf, ours_orig = box_to_tokens(box, 32, rule="hf"), box_to_tokens(box, 32, rule="original")
        assert ours_hf == hf.coordinate_to_patch_index(box, 32)
        if ours_hf != ours_orig:
            n_diff += 1
            assert (box[2] * 32).is_integer() or (box[3] * 32).is_integer()
    assert n_diff > 100
    for ul in range(0, 1024, 37):
        for lr in range(ul, 1024, 53):
            assert tokens_to_box(ul, lr, 32) == pytest.approx(hf.patch_index_to_coordinate(ul, lr, 32), abs=1e-12)


@pytest.mark.unit
def test_format_token_form_matches_the_training_serialisation_and_hf_insertion():
    text = "An image of a snowman warming himself by a fire."
    ents = [("a snowman", (12, 21), [(44, 863)]), ("a fire", (41, 47), [(5, 911)])]
    s = format_entities(text, ents, 32, grounding_prefix=True)
    assert s == (
        "<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object>"
        " warming himself by<phrase> a fire</phrase><object><patch_index_0005><patch_index_0911></object>."
    )
    clean, parsed = parse_entities(s, 32)
    assert clean == text and [(p, sp) for p, sp, _ in parsed] == [("a snowman", (12, 21)), ("a fire", (41, 47))]
    assert (clean, parsed) == hf_post_process(s)
    assert parsed[0][2] == [pytest.approx(hf.patch_index_to_coordinate(44, 863, 32))]
    md = format_entities(text, ents, 32, style="markdown")
    assert md.startswith("An image of [a snowman](<patch_index_0044><patch_index_0863>) warming")
    assert parse_entities(md, 32, style="markdown") == (clean, parsed)
    # two boxes for one span, floats quantised with the chosen rule
    two = format_entities("two dogs", [((4, 8), [(0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)])], 32, rule="hf")
    assert two == "two<phrase> dogs</phrase><object><patch_index_0000><patch_index_0495>" + DELIM + "<patch_index_0528><patch_index_1023></object>"
    with pytest.raises(ValueError):
        format_entities(text, [((5, 3), [(0, 1)])])
    with pytest.raises(ValueError):
        format_entities(text, [((0, 5), [(0, 1)]), ((3, 8), [(0, 1)])])
    with pytest.raises(ValueError):
        format_entities(text, [((0, 5), [])])


@pytest.mark.unit
@pytest.mark.parametrize("style", ["tokens", "markdown"])
def test_format_parse_round_trip_on_random_captions(style):
    rng = random.Random(1 if style == "tokens" else 2)
    words = ["a", "dog", "the", "red", "ball", "on", "grass", "and", "two", "cats"]
    for _ in range(500):
        toks = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        text = " ".join(toks)
        starts = [0]
        for t in toks[:-1]:
            starts.append(starts[-1] + len(t) + 1)
        chosen = sorted(rng.sample(range(len(toks)), rng.randint(0, min(3, len(toks)))))
        ents = [((starts[i], starts[i] + len(toks[i])), [random_box(rng) for _ in range(rng.randint(1, 3))]) for i in chosen]
        s = format_entities(text, ents, 16, style=style)
        clean, parsed = parse_entities(s, 16, style=style)
        assert clean == text
        assert [sp for _, sp, _ in parsed] == [sp for sp, _ in ents]
        for (_, (a, b), boxes), (_, gt) in zip(parsed, ents):
            assert len(boxes) == len(gt)
            for p, g in zip(boxes, gt):
                assert max(abs(u - v) for u, v in zip(p, g)) <= 1 / 16 + 1e-9
        if style == "tokens":
            assert (clean, parsed) == hf.clean_text_and_extract_entities_with_bboxes(s, num_patches_per_side=16)


@pytest.mark.unit
def test_parse_agrees_with_hf_post_processing_on_random_and_malformed_strings():
    rng = random.Random(3)
    n_entities = 0
    for i in range(3000):
        s = random_grounded_caption(rng) if i % 2 else random_generation(rng)
        ours = parse_entities(s, 32)
        assert ours == hf_post_process(s), s
        n_entities += len(ours[1])
    assert n_entities > 1500  # the strings do contain entities
    # a phrase-less object gives one entity per box, named after its indices
    clean, ents = parse_entities("a<object><patch_index_0001><patch_index_0040>" + DELIM + "<patch_index_0002><patch_index_0099></object> b")
    assert clean == "a b" and [e[0] for e in ents] == ["<patch_index_1><patch_index_40>", "<patch_index_2><patch_index_99>"]


@pytest.mark.unit
def test_parse_never_raises_on_truncated_shuffled_or_garbage_input():
    rng = random.Random(4)
    for i in range(3000):
        s = random_grounded_caption(rng)
        r = rng.random()
        if r < 0.33:
            s = s[: rng.randint(0, len(s))]  # truncated mid-token
        elif r < 0.66:
            chars = list(s)
            rng.shuffle(chars)
            s = "".join(chars)
        else:
            s = random_generation(rng, num_bins=64)  # indices off a 32-grid
        for style in ("tokens", "markdown"):
            clean, ents = parse_entities(s, 32, style=style)
            assert isinstance(clean, str)
            for phrase, (a, b), boxes in ents:
                assert isinstance(phrase, str) and boxes
                assert all(len(bx) == 4 and all(0.0 <= v <= 1.0 for v in bx) for bx in boxes)
    for junk in [None, 12, "", "</image>", "<object><patch_index_9999><patch_index_0001></object>", "<phrase>x</phrase><object>"]:
        clean, ents = parse_entities(junk, 32)
        assert ents == []
    # only the text after the last </image> is read
    assert parse_entities("<image>x</image><phrase>a</phrase><object><patch_index_0000><patch_index_0001></object>")[0] == "a"
