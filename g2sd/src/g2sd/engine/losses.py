"""The four G2SD losses, written as the paper / official code define them.

* generic distillation: Smooth-L1 (beta 2) between the student's predicted decoder
  features and the teacher's decoder stream after block k, layer-normalised without
  affine (eps 1e-6); mean over every element of every token (class, visible, masked), or
  over the masked tokens only;
* classification specific distillation (hard, DeiT-style, no temperature):
  1/2 soft-target CE of the class head + 1/2 CE of the distillation head against the
  teacher's argmax;
* detection (FRS-style): a feature-richness mask m = max over anchors of sigmoid(teacher
  objectness) weights the squared error of adapted student pyramid features and the BCE
  between student and teacher objectness probabilities, each normalised by sum(m);
* segmentation: channel-wise divergence, a softmax over the H*W positions of each channel of
  the logits (temperature tau), cross-entropy teacher -> student, times tau^2 / (N * C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def generic_distillation_loss(
    pred: torch.Tensor,
    teacher_hidden: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    supervise_all: bool = True,
    beta: float = 2.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """pred, teacher_hidden: (B, 1 + L, C), class token first; mask (B, L), True = masked patch."""
    if pred.shape != teacher_hidden.shape:
        raise ValueError(f"student prediction {tuple(pred.shape)} and teacher target {tuple(teacher_hidden.shape)} "
                         "differ: the predictor width must equal the teacher decoder width")
    target = F.layer_norm(teacher_hidden.float(), teacher_hidden.shape[-1:], eps=eps)  # no affine
    pred = pred.float()
    if not supervise_all:
        if mask is None:
            raise ValueError("supervise_all=False needs the mask")
        pred, target = pred[:, 1:][mask], target[:, 1:][mask]  # M, C
    return F.smooth_l1_loss(pred, target, beta=beta)


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k target_k log softmax(logits)_k; integer targets are one-hot."""
    if target.dim() == 1:
        return F.cross_entropy(logits.float(), target)
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def hard_distillation_loss(
    cls_logits: torch.Tensor, dist_logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``loss = (CE(cls, target) + CE(dist, argmax teacher)) / 2``; target: labels (B,) or soft (B, K)."""
    loss_gt = soft_target_cross_entropy(cls_logits, target)
    loss_dist = F.cross_entropy(dist_logits.float(), teacher_logits.argmax(dim=-1))
    return {"loss": (loss_gt + loss_dist) / 2, "loss_gt": loss_gt.detach(), "loss_dist": loss_dist.detach()}


def feature_richness_mask(teacher_objectness: torch.Tensor) -> torch.Tensor:
    """(N, A, H, W) objectness logits -> (N, H, W) max over anchors of their sigmoid, detached."""
    return teacher_objectness.detach().sigmoid().amax(dim=1)


def frs_distillation_losses(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    student_objectness: Sequence[torch.Tensor],
    teacher_objectness: Sequence[torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Sum over pyramid levels l of
    L_feat,l = sum_{n,c,h,w} m_l (F_T - F_S)^2 / sum m_l     (F: N, C, H, W; features already adapted)
    L_obj,l  = sum_{n,a,h,w} m_l BCE(sigmoid(o_S), sigmoid(o_T)) / sum m_l   (o: N, A, H, W)."""
    if not (len(student_feats) == len(teacher_feats) == len(student_objectness) == len(teacher_objectness)):
        raise ValueError("student / teacher features and objectness maps must have the same number of levels")
    loss_feat = student_feats[0].new_zeros(())
    loss_obj = student_feats[0].new_zeros(())
    for fs, ft, os_, ot in zip(student_feats, teacher_feats, student_objectness, teacher_objectness):
        m = feature_richness_mask(ot)  # N, H, W
        norm = m.sum().clamp_min(1e-12)
        loss_feat = loss_feat + (m[:, None] * (ft.detach() - fs) ** 2).sum() / norm
        bce = F.binary_cross_entropy_with_logits(os_, ot.detach().sigmoid(), reduction="none")  # N, A, H, W
        loss_obj = loss_obj + (m[:, None] * bce).sum() / norm
    return {"loss_feat": loss_feat, "loss_obj": loss_obj}


def channel_wise_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, tau: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) logits -> tau^2 * sum_{n,c,i} -p^T log p^S / (N * C), softmax over the H*W positions."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ")
    N, C, H, W = student_logits.shape
    s = student_logits.float().reshape(N * C, H * W) / tau
    t = teacher_logits.detach().float().reshape(N * C, H * W) / tau
    loss = torch.sum(-F.softmax(t, dim=1) * F.log_softmax(s, dim=1)) * tau**2
    return loss / (N * C)
