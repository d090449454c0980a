"""Masked image modelling as one objective: the unified view of MaskDistill.

Every MIM method picks a *target producer* T (run on the uncorrupted image), a *target
normalisation* N, a *loss* L and the *supervised positions* M; the student S sees the
corrupted image and a head H maps its tokens to the target space:

    L_MIM = mean_{i in M} L( H(S(x_masked))_i , N(T(x))_i )

:class:`MIMObjective` holds (T, N, L, M); the student and head stay with the caller, who
passes the head's output either at every patch (``objective.loss(pred, target, mask)``)
or already gathered at the supervised positions (``objective.loss_selected``), which is
how BEiT v2 saves the 8192-way head on visible patches.

Reductions: regression losses average over every feature element of every supervised
token (the same as "mean over features, then over tokens" because every token has the
same width); cross-entropy averages over supervised tokens.

Registered presets (:func:`build_objective`):

==============  =======================================  ==================  ==============  =========
preset          target producer                          normalisation       loss            positions
==============  =======================================  ==================  ==============  =========
maskdistill     frozen teacher patch features            LN without affine   Smooth-L1 (b)   masked
beitv2          VQ-KD code ids (vlcore.tokenizers)       -                   cross-entropy   masked
mae             raw patch pixels                         per-patch mean/var  MSE             masked
simmim          raw patch pixels                         -                   L1              masked
maskfeat        HOG of each patch                        (l2 inside HOG)     MSE             masked
data2vec        EMA teacher: mean of top-K block outputs per-layer LN        Smooth-L1 (b)   masked
==============  =======================================  ==================  ==============  =========

Open choices are arguments: Smooth-L1's ``beta`` (MaskDistill re-implementations use
1.0 and 2.0), the normalisation eps (1e-6), the per-patch variance estimator (MAE uses
the unbiased one), HOG's bins / cell size, data2vec's K and its per-layer normalisation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EMATeacherTargets",
    "HOGTargets",
    "MIMObjective",
    "PRESETS",
    "PatchPixelTargets",
    "TeacherTargets",
    "TokenizerTargets",
    "build_objective",
    "mim_loss",
    "normalize_targets",
    "patchify",
    "register_preset",
    "select_positions",
]

Normalization = Literal["none", "layernorm", "patch", "patch_biased", "l2"]
LossKind = Literal["smooth_l1", "mse", "l1", "cross_entropy", "cosine"]
Positions = Literal["masked", "all", "visible"]


# --- the four ingredients as functions ------------------------------------------------


def normalize_targets(t: torch.Tensor, kind: Normalization, *, eps: float = 1e-6) -> torch.Tensor:
    """Per-token normalisation over the last (feature) dimension.

    ``layernorm``: (t - mean) / sqrt(biased var + eps), no affine (MaskDistill, data2vec);
    ``patch``: (t - mean) / sqrt(unbiased var + eps) (MAE's ``norm_pix_loss``);
    ``patch_biased``: as ``patch`` with the biased variance (numerically LayerNorm);
    ``l2``: unit l2 norm; ``none``: unchanged. Integer targets (code ids) only accept ``none``.
    """
    if kind == "none":
        return t
    if not t.is_floating_point():
        raise ValueError(f"normalisation {kind!r} needs float targets, got {t.dtype}")
    t = t.float()
    if kind == "layernorm":
        return F.layer_norm(t, t.shape[-1:], eps=eps)
    if kind in ("patch", "patch_biased"):
        mean = t.mean(-1, keepdim=True)
        var = t.var(-1, keepdim=True, unbiased=kind == "patch")
        return (t - mean) / (var + eps) ** 0.5
    if kind == "l2":
        return F.normalize(t, dim=-1)
    raise ValueError(f"unknown target normalisation {kind!r}")


def select_positions(x: torch.Tensor, mask: torch.Tensor, positions: Positions) -> torch.Tensor:
    """(B, N, ...) -> (M, ...): the supervised tokens, in row-major (batch, patch) order.
    ``mask`` (B, N) is True at masked patches."""
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    if positions == "masked":
        return x[mask]
    if positions == "visible":
        return x[~mask]
    if positions == "all":
        return x.flatten(0, 1)
    raise ValueError(f"positions must be 'masked', 'all' or 'visible', got {positions!r}")


def mim_loss(pred: torch.Tensor, target: torch.Tensor, kind: LossKind, *, beta: float = 1.0) -> torch.Tensor:
    """Loss between gathered predictions (M, D) and targets (M, D), or logits (M, V) and ids (M,)."""
    if kind == "cross_entropy":
        return F.cross_entropy(pred, target)
    target = target.to(pred.dtype)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=beta)
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    raise ValueError(f"unknown MIM loss {kind!r}")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), row-major patches, pixel order (row, col, channel) as MAE."""
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image {H}x{W} is not divisible by the patch size {p}")
    t = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return t.reshape(B, (H // p) * (W // p), p * p * C)


# --- target producers: images in [0, 1] (B, 3, H, W) -> (B, N, D) float or (B, N) ids ---


class TeacherTargets(nn.Module):
    """A frozen feature extractor (e.g. ``vlcore.tokenizers.vqkd.Teacher``: CLIP, DINO, any
    module) whose (B, N, D) patch features are the targets."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "TeacherTargets":  # noqa: ARG002 - frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher(images)


class TokenizerTargets(nn.Module):
    """Code ids of a visual tokenizer with ``get_codebook_indices`` (``vlcore.tokenizers.VQKD``)."""

    def __init__(self, tokenizer: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "TokenizerTargets":  # noqa: ARG002 - frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.get_codebook_indices(images)


class PatchPixelTargets(nn.Module):
    """Raw pixels of each patch (B, N, p*p*C); normalise them with the objective's ``normalize``."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return patchify(images.float(), self.patch_size)


class HOGTargets(nn.Module):
    """MaskFeat-style HOG per patch: per colour channel, central-difference gradients
    ([-1, 0, 1], zero padding), unsigned orientation in [0, pi) hard-assigned to ``bins``
    bins, magnitudes summed over ``cell`` x ``cell`` cells; the (patch/cell)^2 x bins x C
    histogram of each patch is l2-normalised. (MaskFeat also weights by a Gaussian window;
    that is left out here and is the one known difference.)"""

    def __init__(self, patch_size: int, *, cell: int | None = None, bins: int = 9, eps: float = 1e-6) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.cell = cell or max(1, patch_size // 2)
        if patch_size % self.cell:
            raise ValueError(f"the cell size {self.cell} must divide the patch size {patch_size}")
        self.bins = bins
        self.eps = eps
        self.register_buffer("kx", torch.tensor([[[[-1.0, 0.0, 1.0]]]]), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        B, C, H, W = x.shape
        flat = x.reshape(B * C, 1, H, W)
        gx = F.conv2d(flat, self.kx, padding=(0, 1))
        gy = F.conv2d(flat, self.kx.transpose(2, 3), padding=(1, 0))
        mag = torch.sqrt(gx**2 + gy**2)
        ang = torch.atan2(gy, gx) % math.pi  # [0, pi)
        idx = (ang / math.pi * self.bins).long().clamp_(max=self.bins - 1)
        hist = torch.zeros(B * C, self.bins, H, W, dtype=x.dtype, device=x.device)
        hist.scatter_(1, idx, mag)
        hist = F.avg_pool2d(hist, self.cell) * self.cell**2  # sum over each cell
        k = self.patch_size // self.cell
        hc, wc = hist.shape[-2:]
        hist = hist.reshape(B, C, self.bins, hc // k, k, wc // k, k)
        hist = hist.permute(0, 3, 5, 1, 4, 6, 2).reshape(B, (hc // k) * (wc // k), -1)  # B, N, C*k*k*bins
        return F.normalize(hist, dim=-1, eps=self.eps)


class EMATeacherTargets(nn.Module):
    """data2vec-style targets: an exponential-moving-average copy of the student encoder,
    run on the *unmasked* image; the target of each patch is the mean over the last
    ``top_k`` blocks of the block outputs, each normalised per token (``layer_norm``:
    ``layernorm`` as data2vec's vision setting, or ``none``); the objective's ``normalize``
    is then applied to the average.

    The encoder must follow ``vlcore.models.beit.Beit``'s API (``embed`` and
    ``forward_blocks(collect=...)``); the copy is frozen and updated by :meth:`update`.
    """

    def __init__(self, student: nn.Module, *, top_k: int = 6, layer_norm: Normalization = "layernorm",
                 momentum: float = 0.999) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(student)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        depth = len(self.encoder.blocks)
        if not 1 <= top_k <= depth:
            raise ValueError(f"top_k must be in [1, {depth}], got {top_k}")
        self.top_k = top_k
        self.layer_norm = layer_norm
        self.momentum = momentum
        self.encoder.eval()

    def train(self, mode: bool = True) -> "EMATeacherTargets":  # noqa: ARG002 - the copy never trains
        return super().train(False)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float | None = None) -> None:
        """teacher <- m * teacher + (1 - m) * student, parameter by parameter (same names)."""
        m = self.momentum if momentum is None else momentum
        src = dict(student.named_parameters())
        for name, p in self.encoder.named_parameters():
            p.mul_(m).add_(src[name].detach().to(p.dtype), alpha=1 - m)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        depth = len(self.encoder.blocks)
        layers = tuple(range(depth - self.top_k, depth))
        _, kept = self.encoder.forward_blocks(self.encoder.embed(images), collect=layers)
        outs = [normalize_targets(kept[i][:, 1:].float(), self.layer_norm) for i in layers]
        return torch.stack(outs).mean(0)


# --- the objective ----------------------------------------------------------------------


@dataclass
class MIMObjective:
    """(target producer, normalisation, loss, positions): ``targets`` and ``loss`` compute L_MIM."""

    name: str
    target: Callable[[torch.Tensor], torch.Tensor] | None
    normalize: Normalization = "none"
    loss_kind: LossKind = "smooth_l1"
    positions: Positions = "masked"
    beta: float = 1.0
    eps: float = 1e-6
    info: dict = field(default_factory=dict)

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """N(T(x)) on the uncorrupted images: (B, N, D) float, or (B, N) code ids."""
        if self.target is None:
            raise ValueError(f"objective {self.name!r} has no target producer; pass targets explicitly")
        with torch.no_grad():
            return normalize_targets(self.target(images), self.normalize, eps=self.eps)

    def select(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return select_positions(x, mask, self.positions)

    def loss_selected(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L on already-gathered predictions (M, D | V) and normalised targets (M, D) / ids (M,)."""
        return mim_loss(pred, target, self.loss_kind, beta=self.beta)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L_MIM from dense head outputs (B, N, D) and normalised targets (B, N, D) / ids (B, N)."""
        return self.loss_selected(self.select(pred, mask), self.select(target, mask))

    def __call__(self, pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.loss(pred, self.targets(images), mask)

    def with_options(self, **kw) -> "MIMObjective":
        return replace(self, **kw)


PRESETS: dict[str, Callable[..., MIMObjective]] = {}


def register_preset(name: str) -> Callable[[Callable[..., MIMObjective]], Callable[..., MIMObjective]]:
    def deco(fn: Callable[..., MIMObjective]) -> Callable[..., MIMObjective]:
        if name in PRESETS:
            raise ValueError(f"MIM preset {name!r} is already registered")
        PRESETS[name] = fn
        return fn

    return deco


def build_objective(name: str, **kw) -> MIMObjective:
    """A registered preset with its producer / options, e.g.
    ``build_objective("maskdistill", teacher=clip_teacher, beta=2.0)``."""
    if name not in PRESETS:
        raise KeyError(f"unknown MIM preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name](**kw)


@register_preset("maskdistill")
def _maskdistill(teacher: nn.Module | None = None, *, beta: float = 1.0, normalize: Normalization = "layernorm",
                 positions: Positions = "masked", eps: float = 1e-6) -> MIMObjective:
    """Frozen teacher patch features, LayerNorm without affine, Smooth-L1(beta), masked patches."""
    return MIMObjective("maskdistill", TeacherTargets(teacher) if teacher is not None else None, normalize,
                        "smooth_l1", positions, beta, eps)


@register_preset("beitv2")
def _beitv2(tokenizer: nn.Module | None = None, *, positions: Positions = "masked") -> MIMObjective:
    """VQ-KD code ids, cross-entropy over the codebook, masked patches."""
    return MIMObjective("beitv2", TokenizerTargets(tokenizer) if tokenizer is not None else None, "none",
                        "cross_entropy", positions)


@register_preset("mae")
def _mae(patch_size: int = 16, *, normalize: Normalization = "patch", positions: Positions = "masked",
         eps: float = 1e-6) -> MIMObjective:
    """Per-patch normalised pixels (unbiased variance, eps 1e-6 as MAE's norm_pix_loss), MSE, masked patches."""
    return MIMObjective("mae", PatchPixelTargets(patch_size), normalize, "mse", positions, eps=eps)


@register_preset("simmim")
def _simmim(patch_size: int = 16, *, normalize: Normalization = "none", positions: Positions = "masked"
            ) -> MIMObjective:
    """Raw pixels, L1, masked patches (SimMIM's default)."""
    return MIMObjective("simmim", PatchPixelTargets(patch_size), normalize, "l1", positions)


@register_preset("maskfeat")
def _maskfeat(patch_size: int = 16, *, cell: int | None = None, bins: int = 9, positions: Positions = "masked"
              ) -> MIMObjective:
    """HOG per patch (l2-normalised inside the producer), MSE, masked patches."""
    return MIMObjective("maskfeat", HOGTargets(patch_size, cell=cell, bins=bins), "none", "mse", positions)


@register_preset("data2vec")
def _data2vec(student: nn.Module | None = None, *, top_k: int = 6, layer_norm: Normalization = "layernorm",
              normalize: Normalization = "none", momentum: float = 0.999, beta: float = 2.0,
              positions: Positions = "masked") -> MIMObjective:
    """EMA teacher, mean of the per-token-normalised top-K block outputs, Smooth-L1(beta), masked patches."""
    producer = EMATeacherTargets(student, top_k=top_k, layer_norm=layer_norm, momentum=momentum) \
        if student is not None else None
    return MIMObjective("data2vec", producer, normalize, "smooth_l1", positions, beta)
