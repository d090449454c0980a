"""Task metrics: VQA score, retrieval recall@K, corpus BLEU-n (pure Python)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch


def vqa_soft_score(num_matching_annotators: int) -> float:
    """VQAv2 target of an answer given by k of the 10 annotators (official 0/.3/.6/.9/1 table)."""
    if num_matching_annotators < 0:
        raise ValueError("annotator count must be >= 0")
    return min(1.0, 0.3 * num_matching_annotators) if num_matching_annotators < 3 else (0.9 if num_matching_annotators == 3 else 1.0)


def vqa_accuracy(logits: torch.Tensor, soft_targets: torch.Tensor) -> float:
    """Mean soft score of the arg-max answer (VQA accuracy), in %."""
    pred = logits.argmax(-1)
    return 100.0 * soft_targets.gather(1, pred[:, None]).mean().item()


def recall_at_k(sim: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """sim (N_img, N_txt) with the matching text of image i at column i; both directions, in %."""
    n = min(sim.shape)
    gt = torch.arange(n)
    out = {}
    for name, s in (("tr", sim[:n, :n]), ("ir", sim[:n, :n].t())):
        rank = (s > s[gt, gt][:, None]).sum(1)  # how many candidates beat the true one
        for k in ks:
            out[f"{name}@{k}"] = 100.0 * (rank < k).float().mean().item()
    return out


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU-n (Papineni et al.): clipped n-gram precisions, closest-length brevity penalty."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis")
    match, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        h = hyp.split()
        rs = [r.split() for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            hc = _ngrams(h, n)
            maxref: Counter = Counter()
            for r in rs:
                maxref |= _ngrams(r, n)
            match[n - 1] += sum(min(c, maxref[g]) for g, c in hc.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if min(match) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(match, total)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / max(hyp_len, 1))
    return bp * math.exp(log_p)
