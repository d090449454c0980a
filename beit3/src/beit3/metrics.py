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


# ---------------------------------------------------------------------- COCO caption scorers
# Re-statements of pycocoevalcap's BLEU and CIDEr-D scorers (the captions are expected
# already tokenised: lower-case words separated by spaces, as the PTB tokenizer leaves them).
def _counts(tokens: Sequence[str], max_n: int) -> Counter:
    out: Counter = Counter()
    for n in range(1, max_n + 1):
        out.update(_ngrams(tokens, n))
    return out


def coco_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1..max_n as COCO computes it (``option='closest'``), each in [0, 1].

    Per n: p_n = (matches + 1e-15) / (guesses + 1e-9), clipped by the largest count in any
    reference; BLEU-n = (prod_{k<=n} p_k)^(1/n), times exp(1 - r/c) when the total hypothesis
    length c is below r, the sum over sentences of the reference length closest to the
    hypothesis' (the shorter one on a tie)."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis")
    tiny, small = 1e-15, 1e-9
    correct, guess = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        h = hyp.split()
        rs = [r.split() for r in refs]
        if not rs:
            raise ValueError("every hypothesis needs at least one reference")
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        maxref: Counter = Counter()
        for r in rs:
            maxref |= _counts(r, max_n)
        for g, c in _counts(h, max_n).items():
            correct[len(g) - 1] += min(c, maxref[g])
        for n in range(1, max_n + 1):
            guess[n - 1] += max(len(h) - n + 1, 0)
    ratio = (hyp_len + tiny) / (ref_len + small)
    bp = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    out, prod = [], 1.0
    for k in range(max_n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        out.append(bp * prod ** (1.0 / (k + 1)))
    return out


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, sigma: float = 6.0,
            max_n: int = 4) -> float:
    """CIDEr-D of a corpus (pycocoevalcap's ``CiderD`` definition), e.g. 1.0 -> "100 CIDEr".

    Each caption is a vector of n-gram (n = 1..4) TF-IDF weights: term count x (log N - log df),
    N = number of images, df = number of images whose references contain the n-gram. For each
    n and reference: sum over hypothesis n-grams of min(h, r) x r (clipping), divided by both
    vector norms, times the Gaussian length penalty exp(-(l_h - l_r)^2 / (2 sigma^2)); averaged
    over n and references, times 10, averaged over images. As in pycocoevalcap, the "length"
    of a caption is its number of bigrams."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis")
    refs = [[_counts(r.split(), max_n) for r in rs] for rs in references]
    if any(not rs for rs in refs):
        raise ValueError("every hypothesis needs at least one reference")
    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for g in r})
    log_n = math.log(float(len(refs)))

    def vec(counts: Counter):
        v = [dict() for _ in range(max_n)]
        norm = [0.0] * max_n
        length = 0
        for g, tf in counts.items():
            n = len(g) - 1
            v[n][g] = w = float(tf) * (log_n - math.log(max(1.0, df[g])))
            norm[n] += w * w
            if n == 1:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    scores = []
    for hyp, rs in zip(hypotheses, refs):
        vh, nh, lh = vec(_counts(hyp.split(), max_n))
        total = 0.0
        for r in rs:
            vr, nr, lr = vec(r)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
            per_n = 0.0
            for n in range(max_n):
                val = sum(min(w, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, w in vh[n].items())
                if nh[n] != 0 and nr[n] != 0:
                    val /= nh[n] * nr[n]
                per_n += val * penalty
            total += per_n / max_n
        scores.append(10.0 * total / len(rs))
    return sum(scores) / len(scores)
