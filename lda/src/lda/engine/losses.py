"""The LDA objective and the long-tailed baselines it is compared with.

LDA (Peng et al., ACM MM 2021) reads long-tailed recognition as domain
adaptation from the unbalanced training distribution (source) to the
class-uniform test distribution (target). With two linear heads on one feature
z -- g_u for the unbalanced domain and g_b for the balanced one -- and a neck
e = q(z) for the divergence terms, one training step minimises

    L = 1.0 * L_u + 2.0 * alpha * L_b + 1.0 * (L_intra + L_inter)

    L_u     = (1/B) sum_i CE(g_u(z_i), y_i)
    L_b     = sum_i w_{y_i} CE(g_b(z_i), y_i),   w_c = 1 / (C n_c)      (a sum, not a mean)
    alpha   = max(0, mean(acc_u) - mean(acc_b)) ** gamma,  gamma = 2,
              accuracies in percent of the last `window` training batches
    L_intra = mean over in-batch classes with >= 2 samples of mean_i (1 - cos(mu_c, e_i))
    L_inter = sum_{c != c'} max(0, m - (1 - cos(mu_c, mu_c'))) / (K^2 - K),  m = 1

and predicts with g_b. `w_c` are importance weights of the balanced domain:
summed over the training set every class gets mass 1/C, so L_b's expectation is
the class-balanced risk scaled by B/N. Every constant above is the one of the
official code (`lib/core/combiner.py`, `lib/config/default.py`).

Baselines, all single-head: plain cross-entropy, class re-weighted
cross-entropy (inverse frequency), class-balanced loss with effective numbers
(Cui et al. 2019, optionally focal), focal loss, LDAM with deferred
re-weighting (Cao et al. 2019) and balanced softmax / logit adjustment
(Ren et al. 2020, Menon et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --- the balanced domain -------------------------------------------------------


def lda_sample_weights(class_counts: Sequence[int] | Tensor) -> Tensor:
    """Importance weight of each class in the balanced domain: w_c = 1 / (C n_c)."""
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    if n.ndim != 1 or n.numel() == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D list, got shape {tuple(n.shape)}")
    if (n <= 0).any():
        bad = torch.nonzero(n <= 0).flatten().tolist()[:5]
        raise ValueError(f"class_counts must be positive (classes {bad} have no training samples)")
    return (1.0 / (n.numel() * n)).float()


def unbalanced_risk(logits_u: Tensor, target: Tensor) -> Tensor:
    """L_u: the mean cross-entropy of the unbalanced head."""
    return F.cross_entropy(logits_u, target)


def balanced_risk(logits_b: Tensor, target: Tensor, class_weights: Tensor) -> Tensor:
    """L_b: sum_i w_{y_i} CE(g_b(z_i), y_i) -- summed, so its scale is B/N times the balanced risk."""
    ce = F.cross_entropy(logits_b, target, reduction="none")  # B
    return (class_weights.to(ce.dtype)[target] * ce).sum()


# --- the divergence surrogate ---------------------------------------------------


def class_centres(embed: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """In-batch class centres mu_c (K, D), the classes (K,) and their sample counts (K,)."""
    classes, inverse, counts = torch.unique(target, return_inverse=True, return_counts=True)  # K, B, K
    sums = embed.new_zeros(classes.numel(), embed.shape[1]).index_add_(0, inverse, embed)  # K, D
    return sums / counts[:, None].to(embed.dtype), classes, counts


def intra_class_distance(embed: Tensor, target: Tensor) -> Tensor:
    """L_intra: mean over classes with >= 2 batch samples of mean_i (1 - cos(mu_c, e_i)); 0 if none."""
    centres, _, counts = class_centres(embed, target)
    _, inverse = torch.unique(target, return_inverse=True)
    dist = 1.0 - F.cosine_similarity(centres[inverse], embed, dim=1)  # B
    per_class = embed.new_zeros(counts.numel()).index_add_(0, inverse, dist) / counts.to(embed.dtype)  # K
    keep = counts > 1
    if not bool(keep.any()):
        return (per_class * 0.0).sum()  # keeps the graph, as the official code does
    return per_class[keep].mean()


def inter_class_distance(embed: Tensor, target: Tensor, margin: float = 1.0) -> Tensor:
    """L_inter: hinge max(0, m - D_cc') on the cosine distances between class centres, mean over c != c'."""
    centres, _, _ = class_centres(embed, target)
    k = centres.shape[0]
    if k < 2:
        # The official code divides 0 by K^2 - K = 0 here (NaN); one class has no pairs to separate.
        return (centres * 0.0).sum()
    unit = centres / centres.norm(dim=1, keepdim=True)
    distance = 1.0 - unit @ unit.t()  # K, K
    hinge = (margin - distance).clamp_min(0.0)
    off_diagonal = 1.0 - torch.eye(k, dtype=hinge.dtype, device=hinge.device)
    return (hinge * off_diagonal).sum() / (k * k - k)


# --- the adaptive balance factor -----------------------------------------------


class AdaptiveAlpha(nn.Module):
    """alpha = max(0, mean(acc_u) - mean(acc_b)) ** gamma over a window of training batches.

    Accuracies are in-batch top-1 in percent. As in the official `Adaptive_Alpha`,
    the window starts filled with zeros, so during the first `window` updates the
    means are sums over the steps seen so far divided by `window`. A fixed value
    (`fixed`) replaces the rule for the fixed-weight ablation. The window lives in
    buffers, so it is saved and restored with the model.
    """

    def __init__(self, window: int = 100, gamma: float = 2.0, fixed: float | None = None):
        super().__init__()
        if window < 1:
            raise ValueError(f"alpha window must be >= 1, got {window}")
        self.window, self.gamma, self.fixed = int(window), float(gamma), fixed
        self.register_buffer("acc_u", torch.zeros(self.window, dtype=torch.float64))
        self.register_buffer("acc_b", torch.zeros(self.window, dtype=torch.float64))
        self.register_buffer("n", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, acc_u: float | Tensor, acc_b: float | Tensor) -> None:
        i = int(self.n) % self.window
        self.acc_u[i] = float(acc_u)
        self.acc_b[i] = float(acc_b)
        self.n += 1

    @property
    def acc_gap(self) -> float:
        return float(self.acc_u.mean() - self.acc_b.mean())

    def value(self) -> float:
        if self.fixed is not None:
            return float(self.fixed)
        return max(0.0, self.acc_gap) ** self.gamma


def top1_percent(logits: Tensor, target: Tensor) -> float:
    return 100.0 * float((logits.argmax(dim=1) == target).float().mean())


@dataclass(frozen=True)
class LDALossConfig:
    u_weight: float = 1.0  # AUTO_ALPHA.LOSS0_FACTOR
    b_weight: float = 2.0  # AUTO_ALPHA.LOSS1_FACTOR
    dist_weight: float = 1.0  # NECK.LOSS_FACTOR
    margin: float = 1.0  # NECK.MARGIN
    intra: bool = True
    inter: bool = True
    alpha_window: int = 100  # AUTO_ALPHA.LENGTH
    gamma: float = 2.0  # AUTO_ALPHA.GAMMA
    fixed_alpha: float | None = None  # AUTO_ALPHA.ALPHA > 0: a constant instead of the adaptive rule
    lb_scale: float = 1.0  # extra factor on L_b (1.0 = official); see the README on carrying B/N to small sets


class LDALoss(nn.Module):
    """The full LDA objective; `forward` returns the total and its parts (parts are detached floats)."""

    def __init__(self, class_counts: Sequence[int], cfg: LDALossConfig = LDALossConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("class_weights", lda_sample_weights(class_counts))
        self.alpha = AdaptiveAlpha(cfg.alpha_window, cfg.gamma, cfg.fixed_alpha)

    @property
    def uses_embedding(self) -> bool:
        return self.cfg.dist_weight > 0 and (self.cfg.intra or self.cfg.inter)

    def forward(self, logits_u: Tensor, logits_b: Tensor, target: Tensor,
                embed: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        loss_u = unbalanced_risk(logits_u, target)
        loss_b = balanced_risk(logits_b, target, self.class_weights) * cfg.lb_scale
        acc_u, acc_b = top1_percent(logits_u, target), top1_percent(logits_b, target)
        if self.training:
            # Official order: the window is updated with this batch before alpha is read.
            self.alpha.update(acc_u, acc_b)
        alpha = self.alpha.value()
        total = cfg.u_weight * loss_u + cfg.b_weight * alpha * loss_b
        parts = {"loss_u": loss_u.item(), "loss_b": loss_b.item(), "alpha": alpha, "acc_u": acc_u, "acc_b": acc_b}
        if self.uses_embedding:
            if embed is None:
                raise ValueError("the LDA divergence terms need the neck embedding (model built without a neck?)")
            dist = embed.new_zeros(())
            if cfg.intra:
                intra = intra_class_distance(embed, target)
                dist = dist + intra
                parts["intra"] = intra.item()
            if cfg.inter:
                inter = inter_class_distance(embed, target, cfg.margin)
                dist = dist + inter
                parts["inter"] = inter.item()
            total = total + cfg.dist_weight * dist
        return total, parts


# --- baselines ---------------------------------------------------------------


def inverse_frequency_weights(class_counts: Sequence[int] | Tensor) -> Tensor:
    """w_c proportional to 1 / n_c, normalised to sum to C (mean weight 1 per class)."""
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    w = 1.0 / n.clamp_min(1)
    return (w * n.numel() / w.sum()).float()


def effective_number_weights(class_counts: Sequence[int] | Tensor, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights of Cui et al.: (1 - beta) / (1 - beta^n_c), normalised to sum to C."""
    n = torch.as_tensor(class_counts, dtype=torch.float64).clamp_min(1)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.as_tensor(beta, dtype=torch.float64), n))
    return (w * n.numel() / w.sum()).float()


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 1.0, weight: Tensor | None = None) -> Tensor:
    """mean_i w_{y_i} (1 - p_i)^gamma CE_i (the per-sample weights are not renormalised, as in CB-focal)."""
    ce = F.cross_entropy(logits, target, reduction="none")
    p = torch.exp(-ce)
    loss = (1.0 - p) ** gamma * ce
    if weight is not None:
        loss = weight.to(loss.dtype)[target] * loss
    return loss.mean()


def ldam_margins(class_counts: Sequence[int] | Tensor, max_margin: float = 0.5) -> Tensor:
    """LDAM margins m_c proportional to n_c^(-1/4), the largest equal to `max_margin`."""
    n = torch.as_tensor(class_counts, dtype=torch.float64).clamp_min(1)
    m = 1.0 / n.pow(0.25)
    return (m * (max_margin / m.max())).float()


def ldam_loss(logits: Tensor, target: Tensor, margins: Tensor, scale: float = 30.0,
              weight: Tensor | None = None) -> Tensor:
    """CE on s * (z - m_y one_hot(y)); `weight` gives the deferred re-weighting stage."""
    adjusted = logits - F.one_hot(target, logits.shape[1]).to(logits.dtype) * margins.to(logits.dtype)[target, None]
    return F.cross_entropy(scale * adjusted, target, weight=weight)


def logit_adjusted_loss(logits: Tensor, target: Tensor, class_counts: Tensor, tau: float = 1.0) -> Tensor:
    """Balanced softmax / logit adjustment: CE on z + tau * log prior."""
    prior = class_counts.to(logits.dtype) / class_counts.sum()
    return F.cross_entropy(logits + tau * prior.log(), target)


Method = Literal["ce", "reweight", "cb", "cb_focal", "focal", "ldam_drw", "balanced_softmax", "lda"]
METHODS: tuple[str, ...] = ("ce", "reweight", "cb", "cb_focal", "focal", "ldam_drw", "balanced_softmax", "lda")


@dataclass(frozen=True)
class BaselineConfig:
    cb_beta: float = 0.9999  # Cui et al.'s default for CIFAR
    focal_gamma: float = 1.0
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_epoch: int = 160  # LDAM-DRW switches to re-weighting here (200-epoch CIFAR schedule)
    logit_tau: float = 1.0


class BaselineLoss(nn.Module):
    """One single-head long-tailed loss, chosen by name; `set_epoch` drives LDAM's deferred re-weighting."""

    def __init__(self, method: str, class_counts: Sequence[int], cfg: BaselineConfig = BaselineConfig()):
        super().__init__()
        if method not in METHODS or method == "lda":
            raise ValueError(f"unknown baseline '{method}'; choose one of {', '.join(m for m in METHODS if m != 'lda')}")
        self.method, self.cfg, self.epoch = method, cfg, 0
        counts = torch.as_tensor(list(class_counts), dtype=torch.float32)
        self.register_buffer("counts", counts)
        self.register_buffer("inv_freq", inverse_frequency_weights(counts))
        self.register_buffer("cb_weights", effective_number_weights(counts, cfg.cb_beta))
        self.register_buffer("margins", ldam_margins(counts, cfg.ldam_max_margin))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def forward(self, logits: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        m, cfg = self.method, self.cfg
        if m == "ce":
            loss = F.cross_entropy(logits, target)
        elif m == "reweight":
            loss = F.cross_entropy(logits, target, weight=self.inv_freq)
        elif m == "cb":
            loss = F.cross_entropy(logits, target, weight=self.cb_weights)
        elif m == "cb_focal":
            loss = focal_loss(logits, target, cfg.focal_gamma, self.cb_weights)
        elif m == "focal":
            loss = focal_loss(logits, target, cfg.focal_gamma)
        elif m == "ldam_drw":
            w = effective_number_weights(self.counts, 0.9999).to(logits) if self.epoch >= cfg.drw_epoch else None
            loss = ldam_loss(logits, target, self.margins, cfg.ldam_scale, w)
        else:  # balanced_softmax
            loss = logit_adjusted_loss(logits, target, self.counts, cfg.logit_tau)
        return loss, {"acc": top1_percent(logits, target)}


