"""Greedy and beam search with the KV cache."""

import pytest
import torch

from kosmos2.testing import tiny_inputs, tiny_model


def _no_cache_greedy(m, px, ids, mask, n):
    out = ids
    m_ = mask
    for _ in range(n):
        logits = m(px, out, m_)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], 1)
        m_ = torch.cat([m_, torch.zeros_like(nxt)], 1)
    return out


def _seq_logprob(m, px, ids, mask, gen):
    full = torch.cat([ids, gen], 1)
    fmask = torch.cat([mask, torch.zeros_like(gen)], 1)
    logp = torch.log_softmax(m(px, full, fmask).float(), -1)
    T = ids.shape[1]
    return sum(float(logp[0, T - 1 + i, gen[0, i]]) for i in range(gen.shape[1]))


@pytest.mark.unit
def test_greedy_with_cache_equals_recomputing_everything():
    m = tiny_model(vocab_size=300).eval()
    px, ids, mask = tiny_inputs(m, length=14)
    with torch.no_grad():
        a = m.generate(px, ids, mask, max_new_tokens=7, eos_token_id=-1)
        b = _no_cache_greedy(m, px, ids, mask, 7)
    assert torch.equal(a, b)


@pytest.mark.unit
def test_greedy_stops_at_eos_and_pads():
    m = tiny_model(vocab_size=300).eval()
    px, ids, mask = tiny_inputs(m, length=14)
    with torch.no_grad():
        free = m.generate(px, ids, mask, max_new_tokens=6, eos_token_id=-1)
        gen = free[0, ids.shape[1]:].tolist()
        out = m.generate(px, ids, mask, max_new_tokens=6, eos_token_id=gen[0])
    row = out[0, ids.shape[1]:].tolist()
    assert row[0] == gen[0] and row[1:] == [1] * 5  # row 0 ends at once and is padded


@pytest.mark.unit
def test_left_padded_batch_generates_like_single_rows():
    m = tiny_model(vocab_size=300).eval()
    px, ids, mask = tiny_inputs(m, batch=2, length=14)
    short = ids[1:, 2:]  # drop two leading tokens of row 1 -> pad them on the left
    ids_b = torch.cat([ids[:1], torch.cat([torch.ones(1, 2, dtype=torch.long), short], 1)])
    mask_b = torch.cat([mask[:1], torch.cat([torch.zeros(1, 2, dtype=torch.long), mask[1:, 2:]], 1)])
    with torch.no_grad():
        batched = m.generate(px, ids_b, mask_b, ids_b.ne(1).long(), max_new_tokens=5, eos_token_id=-1)
        single = m.generate(px[1:], short, mask[1:, 2:], max_new_tokens=5, eos_token_id=-1)
    assert torch.equal(batched[1, -5:], single[0, -5:])


@pytest.mark.unit
def test_beam_search_one_beam_is_greedy_and_more_beams_score_no_worse():
    torch.manual_seed(0)
    m = tiny_model(vocab_size=50).eval()
    px, ids, mask = tiny_inputs(m, batch=1, length=12, vocab=50)
    with torch.no_grad():
        greedy = m.generate(px, ids, mask, max_new_tokens=5, eos_token_id=-1)
        beam = m.generate(px, ids, mask, max_new_tokens=5, num_beams=4, eos_token_id=-1, length_penalty=0.0)
        T = ids.shape[1]
        s_greedy = _seq_logprob(m, px, ids, mask, greedy[:, T:])
        s_beam = _seq_logprob(m, px, ids, mask, beam[:, T:])
    assert beam.shape == greedy.shape
    assert s_beam >= s_greedy - 1e-4


@pytest.mark.unit
def test_beam_search_batches_rows_independently_and_with_several_images():
    m = tiny_model(vocab_size=60).eval()
    px, ids, mask = tiny_inputs(m, batch=2, length=26, images_per_row=2, vocab=60)
    with torch.no_grad():
        both = m.generate(px, ids, mask, max_new_tokens=4, num_beams=3, eos_token_id=-1)
        row1 = m.generate(px[2:], ids[1:], mask[1:], max_new_tokens=4, num_beams=3, eos_token_id=-1)
    assert torch.equal(both[1], row1[0])


@pytest.mark.unit
def test_allowed_tokens_restrict_the_output():
    m = tiny_model(vocab_size=300).eval()
    px, ids, mask = tiny_inputs(m)
    allowed = torch.arange(100, 110)
    with torch.no_grad():
        out = m.generate(px, ids, mask, max_new_tokens=4, eos_token_id=-1, allowed_token_ids=allowed)
    assert ((out[:, -4:] >= 100) & (out[:, -4:] < 110)).all()
