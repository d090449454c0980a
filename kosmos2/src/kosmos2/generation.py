"""Greedy and beam-search decoding for :class:`kosmos2.models.kosmos2.Kosmos2Model` with the KV cache.

The prompt (image slots included) is run once to fill the decoder's cache; every later
step feeds one token per row. Batched prompts must be left-padded (the last prompt
position of every row is a real token). Positions follow fairseq: each row counts its own
non-pad tokens, so left padding does not shift them.

Beam search keeps ``num_beams`` hypotheses per row; a hypothesis that emits ``eos`` among
the top ``num_beams`` candidates is finished with score ``sum log p / len ** length_penalty``
(len = generated tokens, eos included); a row stops once it has ``num_beams`` finished
hypotheses and its best running beam cannot beat the worst of them at its current length.
"""

from __future__ import annotations

import torch

__all__ = ["greedy_search", "beam_search"]


def _restrict(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    if allowed is None:
        return logits
    mask = torch.full_like(logits, float("-inf"))
    mask[..., allowed] = 0.0
    return logits + mask


def _prefill(model, input_ids, image_embeds, image_embeds_position_mask, attention_mask):
    pad = model.cfg.pad_token_id
    if attention_mask is None:
        attention_mask = input_ids.ne(pad).long()
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("generation needs left-padded prompts: the last position of every row must be a token")
    cache = model.decoder.new_cache()
    hidden = model.forward_hidden(
        None, input_ids, image_embeds_position_mask, attention_mask, image_embeds=image_embeds, cache=cache
    )
    past = input_ids.ne(pad).sum(1)  # B
    return cache, model.logits(hidden[:, -1]), attention_mask, past


def greedy_search(
    model,
    *,
    input_ids: torch.Tensor,
    image_embeds: torch.Tensor | None,
    image_embeds_position_mask: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int | None,
    allowed_token_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Arg-max decoding; rows that emitted ``eos`` continue with pad. Returns (B, T + n)."""
    pad = model.cfg.pad_token_id
    cache, logits, attention_mask, past = _prefill(
        model, input_ids, image_embeds, image_embeds_position_mask, attention_mask
    )
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    out = [input_ids]
    for step in range(max_new_tokens):
        nxt = _restrict(logits.float(), allowed_token_ids).argmax(-1)  # B
        nxt = torch.where(finished, torch.full_like(nxt, pad), nxt)
        out.append(nxt[:, None])
        if eos_token_id is not None:
            finished |= nxt == eos_token_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], 1)
        hidden = model.forward_hidden(None, nxt[:, None], None, attention_mask, cache=cache, past=past)
        past = past + nxt.ne(pad).long()
        logits = model.logits(hidden[:, -1])
    return torch.cat(out, dim=1)


def _expand_images(image_embeds, image_embeds_position_mask, num_beams: int, slots: int):
    """Repeat each row's images ``num_beams`` times, keeping the row-major order."""
    if image_embeds is None:
        return None
    counts = (image_embeds_position_mask.bool().sum(1) // slots).tolist()
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    index = [i for r, c in enumerate(counts) for _ in range(num_beams) for i in range(starts[r], starts[r] + c)]
    return image_embeds[torch.tensor(index, dtype=torch.long, device=image_embeds.device)]


def beam_search(
    model,
    *,
    input_ids: torch.Tensor,
    image_embeds: torch.Tensor | None,
    image_embeds_position_mask: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int | None,
    num_beams: int,
    length_penalty: float = 1.0,
    allowed_token_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Beam search; returns the best finished hypothesis of each row (B, T + n), pad-filled."""
    pad = model.cfg.pad_token_id
    B, T = input_ids.shape
    K = num_beams
    dev = input_ids.device
    image_embeds = _expand_images(image_embeds, image_embeds_position_mask, K, model.num_image_tokens)
    rep = lambda t: None if t is None else t.repeat_interleave(K, dim=0)  # noqa: E731
    cache, logits, attention_mask, past = _prefill(
        model, rep(input_ids), image_embeds, rep(image_embeds_position_mask), rep(attention_mask)
    )
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    seqs = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(max_new_tokens):
        logp = torch.log_softmax(_restrict(logits.float(), allowed_token_ids), dim=-1)  # B*K, V
        V = logp.shape[-1]
        cand = (scores.view(-1, 1) + logp).view(B, K * V)
        top, idx = cand.topk(2 * K, dim=1)  # B, 2K
        new_scores = torch.zeros(B, K, device=dev)
        new_beams = torch.zeros(B, K, dtype=torch.long, device=dev)
        new_toks = torch.full((B, K), pad, dtype=torch.long, device=dev)
        length = step + 1
        for b in range(B):
            if done[b]:
                continue
            j = 0
            for rank in range(2 * K):
                s, beam, tok = float(top[b, rank]), int(idx[b, rank]) // V, int(idx[b, rank]) % V
                if s == float("-inf"):
                    break
                if eos_token_id is not None and tok == eos_token_id:
                    if rank < K:
                        hyp = seqs[b * K + beam].tolist() + [tok]
                        finished[b].append((s / length**length_penalty, hyp))
                    continue
                new_scores[b, j], new_beams[b, j], new_toks[b, j] = s, beam, tok
                j += 1
                if j == K:
                    break
            if j < K:
                new_scores[b, j:] = float("-inf")
            if len(finished[b]) >= K:
                worst = sorted(finished[b], key=lambda h: -h[0])[K - 1][0]
                if float(new_scores[b].max()) / length**length_penalty <= worst:
                    done[b] = True
        index = (torch.arange(B, device=dev)[:, None] * K + new_beams).view(-1)
        scores = new_scores
        seqs = torch.cat([seqs[index], new_toks.view(-1, 1)], dim=1)
        if all(done) or step == max_new_tokens - 1:
            break
        cache.reorder(index)
        attention_mask = torch.cat([attention_mask[index], torch.ones(B * K, 1, dtype=attention_mask.dtype, device=dev)], 1)
        past = past[index] + 1
        hidden = model.forward_hidden(None, new_toks.view(-1, 1), None, attention_mask, cache=cache, past=past - 1)
        logits = model.logits(hidden[:, -1])
    rows = []
    for b in range(B):
        hyps = list(finished[b])
        if not done[b]:
            for k in range(K):
                if float(scores[b, k]) > float("-inf"):
                    hyps.append((float(scores[b, k]) / seqs.shape[1] ** length_penalty, seqs[b * K + k].tolist()))
        best = max(hyps, key=lambda h: h[0])[1] if hyps else []
        rows.append(best)
    n = max((len(r) for r in rows), default=0)
    gen = torch.full((B, n), pad, dtype=torch.long, device=dev)
    for b, r in enumerate(rows):
        if r:
            gen[b, : len(r)] = torch.tensor(r, dtype=torch.long, device=dev)
    return torch.cat([input_ids, gen], dim=1)
