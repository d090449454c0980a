"""Every LDA loss term on a fixed tiny batch against a hand-written computation of its formula."""

import math

import pytest
import torch
import torch.nn.functional as F

from lda.engine.losses import (
    AdaptiveAlpha, BaselineConfig, BaselineLoss, LDALoss, LDALossConfig, balanced_risk, effective_number_weights,
    inter_class_distance, intra_class_distance, inverse_frequency_weights, lda_sample_weights, ldam_margins,
    unbalanced_risk,
)
from lda.engine.schedule import epoch_lr

# A fixed batch: B = 5 samples, C = 3 classes, training counts n = (6, 3, 1).
LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0], [0.0, -2.0, 3.0]]
LOGITS_U = [[1.0, 0.0, 0.0], [0.5, 0.4, 0.1], [0.2, 0.1, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.5]]
TARGET = [0, 2, 1, 0, 2]
COUNTS = [6, 3, 1]
# 2-d neck embeddings: class 0 has two samples, class 1 one, class 2 two.
EMBED = [[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, 2.0]]


def ce(row, y):
    return math.log(sum(math.exp(v) for v in row)) - row[y]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def centre(points):
    return [sum(p[d] for p in points) / len(points) for d in range(len(points[0]))]


def hand_intra(embed, target):
    per_class = []
    for c in sorted(set(target)):
        pts = [e for e, t in zip(embed, target) if t == c]
        if len(pts) >= 2:
            mu = centre(pts)
            per_class.append(sum(1 - cos(mu, p) for p in pts) / len(pts))
    return sum(per_class) / len(per_class) if per_class else 0.0


def hand_inter(embed, target, m=1.0):
    classes = sorted(set(target))
    mus = [centre([e for e, t in zip(embed, target) if t == c]) for c in classes]
    k = len(mus)
    total = sum(max(0.0, m - (1 - cos(mus[i], mus[j]))) for i in range(k) for j in range(k) if i != j)
    return total / (k * k - k)


T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


@pytest.mark.unit
def test_balanced_domain_weights_are_one_over_C_n():
    w = lda_sample_weights(COUNTS)
    assert torch.allclose(w.double(), T([1 / 18, 1 / 9, 1 / 3]))
    # Summed over the training set every class carries mass 1/C.
    assert torch.allclose(w.double() * T(COUNTS), T([1 / 3] * 3))
    with pytest.raises(ValueError, match="positive"):
        lda_sample_weights([3, 0, 1])


@pytest.mark.unit
def test_unbalanced_risk_is_the_mean_cross_entropy():
    want = sum(ce(r, y) for r, y in zip(LOGITS_U, TARGET)) / len(TARGET)
    assert unbalanced_risk(T(LOGITS_U), torch.tensor(TARGET)).item() == pytest.approx(want, rel=1e-12)


@pytest.mark.unit
def test_balanced_risk_is_a_weighted_sum_not_a_mean():
    w = [1 / (3 * n) for n in COUNTS]
    want = sum(w[y] * ce(r, y) for r, y in zip(LOGITS, TARGET))
    got = balanced_risk(T(LOGITS), torch.tensor(TARGET), lda_sample_weights(COUNTS).double())
    assert got.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.unit
def test_intra_class_distance_matches_hand_formula_and_skips_singletons():
    got = intra_class_distance(T(EMBED), torch.tensor(TARGET)).item()
    assert got == pytest.approx(hand_intra(EMBED, TARGET), rel=1e-12)
    # Only singleton classes: 0 (and still part of the graph).
    e = T([[1.0, 0.0], [0.0, 1.0]]).requires_grad_()
    z = intra_class_distance(e, torch.tensor([0, 1]))
    assert z.item() == 0.0 and z.requires_grad


@pytest.mark.unit
def test_inter_class_distance_matches_hand_formula_and_official_hinge():
    got = inter_class_distance(T(EMBED), torch.tensor(TARGET), margin=1.0).item()
    assert got == pytest.approx(hand_inter(EMBED, TARGET), rel=1e-12)
    assert got > 0  # centres of classes 0 and 2 are closer than the margin
    # The official form: hinge_embedding_loss(D, target -1, margin) masked off the diagonal, / (K^2 - K).
    mus = T([centre([e for e, t in zip(EMBED, TARGET) if t == c]) for c in (0, 1, 2)])
    u = mus / mus.norm(dim=1, keepdim=True)
    d = 1 - u @ u.t()
    h = F.hinge_embedding_loss(d, -torch.ones_like(d), margin=1.0, reduction="none")
    assert got == pytest.approx(((h * (1 - torch.eye(3, dtype=d.dtype))).sum() / 6).item(), rel=1e-12)
    assert hand_inter(EMBED, TARGET, m=0.3) < got  # a smaller margin asks for less separation
    # One class has no pair to separate: 0, not the official 0/0.
    assert inter_class_distance(T(EMBED[:1]), torch.tensor([0])).item() == 0.0


@pytest.mark.unit
def test_adaptive_alpha_follows_the_official_rule():
    a = AdaptiveAlpha(window=3, gamma=2.0)
    assert a.value() == 0.0
    a.update(80.0, 60.0)  # the window starts filled with zeros: means are (80+0+0)/3 and (60+0+0)/3
    assert a.value() == pytest.approx((20.0 / 3) ** 2)
    a.update(70.0, 70.0)
    a.update(90.0, 60.0)
    assert a.value() == pytest.approx(((80 + 70 + 90) / 3 - (60 + 70 + 60) / 3) ** 2)
    a.update(10.0, 50.0)  # overwrites the oldest entry (80, 60)
    gap = (70 + 90 + 10) / 3 - (70 + 60 + 50) / 3
    assert gap < 0 and a.value() == 0.0  # balanced head ahead: L_b switched off
    assert AdaptiveAlpha(window=3, gamma=1.0).value() == 0.0
    fixed = AdaptiveAlpha(window=3, fixed=7.5)
    fixed.update(90.0, 10.0)
    assert fixed.value() == 7.5
    # The window is state of the module: it survives a state_dict round trip.
    b = AdaptiveAlpha(window=3)
    b.load_state_dict(a.state_dict())
    assert b.value() == a.value() and int(b.n) == 4


@pytest.mark.unit
def test_lda_total_is_u_plus_two_alpha_b_plus_distances():
    y = torch.tensor(TARGET)
    logits_u = T(LOGITS_U).requires_grad_()
    logits_b = T(LOGITS).requires_grad_()
    embed = T(EMBED).requires_grad_()
    loss = LDALoss(COUNTS, LDALossConfig(alpha_window=2)).double()
    loss.alpha.update(100.0, 40.0)  # a previous batch
    total, parts = loss(logits_u, logits_b, y, embed)
    acc_u = 100 * sum(max(range(3), key=lambda c: r[c]) == t for r, t in zip(LOGITS_U, TARGET)) / 5
    acc_b = 100 * sum(max(range(3), key=lambda c: r[c]) == t for r, t in zip(LOGITS, TARGET)) / 5
    alpha = max(0.0, (100 + acc_u) / 2 - (40 + acc_b) / 2) ** 2  # this batch enters the window first
    l_u = sum(ce(r, t) for r, t in zip(LOGITS_U, TARGET)) / 5
    l_b = sum(ce(r, t) / (3 * COUNTS[t]) for r, t in zip(LOGITS, TARGET))
    want = 1.0 * l_u + 2.0 * alpha * l_b + 1.0 * (hand_intra(EMBED, TARGET) + hand_inter(EMBED, TARGET))
    assert parts["alpha"] == pytest.approx(alpha) and alpha > 0
    assert total.item() == pytest.approx(want, rel=1e-6)
    total.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (logits_u, logits_b, embed))
    # Ablations: no distance terms; a fixed alpha; L_b rescaled.
    no_dist = LDALoss(COUNTS, LDALossConfig(intra=False, inter=False)).double()
    no_dist.alpha.update(100.0, 40.0)
    t2, p2 = no_dist(T(LOGITS_U), T(LOGITS), y)
    a2 = max(0.0, (100 + acc_u) / 100 - (40 + acc_b) / 100) ** 2
    assert t2.item() == pytest.approx(l_u + 2 * a2 * l_b, rel=1e-6) and "intra" not in p2
    fixed = LDALoss(COUNTS, LDALossConfig(fixed_alpha=3.0, lb_scale=0.5, dist_weight=0.0)).double()
    t3, _ = fixed(T(LOGITS_U), T(LOGITS), y)
    assert t3.item() == pytest.approx(l_u + 2 * 3.0 * 0.5 * l_b, rel=1e-6)


@pytest.mark.unit
def test_alpha_window_is_not_updated_in_eval_mode():
    loss = LDALoss(COUNTS, LDALossConfig(alpha_window=4, dist_weight=0.0))
    loss.eval()
    loss(torch.tensor(LOGITS_U), torch.tensor(LOGITS), torch.tensor(TARGET))
    assert int(loss.alpha.n) == 0


@pytest.mark.unit
def test_baseline_losses_match_their_formulas():
    x, y = T(LOGITS), torch.tensor(TARGET)
    n = COUNTS
    # class re-weighting: w ~ 1/n normalised to sum C; torch's weighted mean divides by the batch's weights
    inv = [1 / c for c in n]
    w = [v * 3 / sum(inv) for v in inv]
    assert torch.allclose(inverse_frequency_weights(n).double(), T(w))
    want = sum(w[t] * ce(r, t) for r, t in zip(LOGITS, TARGET)) / sum(w[t] for t in TARGET)
    assert BaselineLoss("reweight", n).double()(x, y)[0].item() == pytest.approx(want, rel=1e-6)
    # effective number (Cui et al.), beta = 0.9
    e = [(1 - 0.9) / (1 - 0.9 ** c) for c in n]
    e = [v * 3 / sum(e) for v in e]
    assert torch.allclose(effective_number_weights(n, 0.9).double(), T(e), atol=1e-6)
    want = sum(e[t] * ce(r, t) for r, t in zip(LOGITS, TARGET)) / sum(e[t] for t in TARGET)
    cb = BaselineLoss("cb", n, BaselineConfig(cb_beta=0.9)).double()
    assert cb(x, y)[0].item() == pytest.approx(want, rel=1e-6)
    # focal, gamma 2
    want = sum((1 - math.exp(-ce(r, t))) ** 2 * ce(r, t) for r, t in zip(LOGITS, TARGET)) / 5
    assert BaselineLoss("focal", n, BaselineConfig(focal_gamma=2.0)).double()(x, y)[0].item() == pytest.approx(want)
    # LDAM: m_c = 0.5 * n_c^(-1/4) / max, CE on s (z - m_y e_y)
    m = [c ** -0.25 for c in n]
    m = [v * 0.5 / max(m) for v in m]
    assert torch.allclose(ldam_margins(n).double(), T(m), atol=1e-7)
    want = sum(ce([30 * (v - (m[t] if j == t else 0)) for j, v in enumerate(r)], t) for r, t in zip(LOGITS, TARGET)) / 5
    ldam = BaselineLoss("ldam_drw", n).double()
    assert ldam(x, y)[0].item() == pytest.approx(want, rel=1e-5)
    ldam.set_epoch(10_000)  # deferred re-weighting switched on: the loss changes
    assert ldam(x, y)[0].item() != pytest.approx(want, rel=1e-5)
    # balanced softmax: CE on z + log prior
    prior = [c / sum(n) for c in n]
    want = sum(ce([v + math.log(p) for v, p in zip(r, prior)], t) for r, t in zip(LOGITS, TARGET)) / 5
    assert BaselineLoss("balanced_softmax", n).double()(x, y)[0].item() == pytest.approx(want, rel=1e-6)
    assert BaselineLoss("ce", n).double()(x, y)[0].item() == pytest.approx(
        sum(ce(r, t) for r, t in zip(LOGITS, TARGET)) / 5)
    with pytest.raises(ValueError, match="unknown baseline"):
        BaselineLoss("lda", n)


@pytest.mark.unit
def test_epoch_lr_equals_the_official_recursive_schedules():
    base, eta, total, warm = 0.1, 1e-4, 90, 5
    # WarmupCosineAnnealingLR, stepped once per epoch: the recursion, not its closed form.
    lrs, lr = [], None
    for e in range(total):
        if e < warm:
            a = e / warm
            lr = base * ((1 / 3) * (1 - a) + a)
        elif e == warm:
            lr = base
        else:
            lr = (1 + math.cos(math.pi * e / total)) / (1 + math.cos(math.pi * (e - 1) / total)) * (lr - eta) + eta
        lrs.append(lr)
    got = [epoch_lr(e, lr=base, epochs=total, min_lr=eta) for e in range(total)]
    assert got == pytest.approx(lrs, rel=1e-9)
    assert got[0] == pytest.approx(base / 3) and got[-1] < 2e-4
    # WarmupMultiStepLR of the CIFAR configs: x0.01 at epochs 160 and 180.
    f = lambda e: epoch_lr(e, lr=0.1, epochs=200, schedule="warmup_multistep", milestones=(160, 180))  # noqa: E731
    assert f(4) == pytest.approx(0.1 * (1 / 3 * 0.2 + 0.8))
    assert (f(159), f(160), f(180)) == pytest.approx((0.1, 1e-3, 1e-5))
