"""Each loss against a hand-written computation of its formula."""

import math

import pytest
import torch

from g2sd.config import GDConfig
from g2sd.engine.losses import (
    channel_wise_divergence,
    frs_distillation_losses,
    generic_distillation_loss,
    hard_distillation_loss,
)
from g2sd.engine.stages import gd_step

from g2sd.testing import tiny_batch, tiny_student, tiny_teacher


def smooth_l1(d: float, beta: float) -> float:
    return 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta


def layer_norm_no_affine(v: list[float], eps: float = 1e-6) -> list[float]:
    mu = sum(v) / len(v)
    var = sum((a - mu) ** 2 for a in v) / len(v)
    return [(a - mu) / math.sqrt(var + eps) for a in v]


def hand_gd(pred, hidden, mask=None, beta=2.0):
    """mean over (token, channel) of SmoothL1_beta(pred, LN(hidden)); all tokens, or masked patches only."""
    total, count = 0.0, 0
    B, T, C = pred.shape
    for b in range(B):
        for t in range(T):
            if mask is not None and (t == 0 or not mask[b, t - 1]):
                continue
            y = layer_norm_no_affine(hidden[b, t].tolist())
            for c in range(C):
                total += smooth_l1(pred[b, t, c].item() - y[c], beta)
                count += 1
    return total / count


@pytest.mark.unit
def test_generic_distillation_loss_equals_the_formula():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 6, generator=g) * 2  # large enough for both Smooth-L1 branches
    hidden = torch.randn(2, 5, 6, generator=g) * 3 + 1
    mask = torch.tensor([[True, False, True, True], [False, False, True, False]])
    assert generic_distillation_loss(pred, hidden).item() == pytest.approx(hand_gd(pred, hidden), rel=1e-5)
    got = generic_distillation_loss(pred, hidden, mask=mask, supervise_all=False).item()
    assert got == pytest.approx(hand_gd(pred, hidden, mask), rel=1e-5)
    with pytest.raises(ValueError, match="predictor width"):
        generic_distillation_loss(pred, hidden[..., :4])


@pytest.mark.unit
def test_gd_step_on_a_fixed_batch_uses_one_mask_and_the_teacher_block():
    x, noise = tiny_batch()
    torch.manual_seed(3)
    student, teacher = tiny_student(), tiny_teacher().eval()
    loss, logs = gd_step(student, teacher, x, noise, gd=GDConfig(layer_index=2), mask_ratio=0.75)
    # By hand: the teacher's stream after decoder block 2, the student's prediction, the same noise.
    with torch.no_grad():
        latent, mask_t, ids = teacher.forward_encoder(x, 0.75, noise)
        h = teacher.forward_decoder_hidden(latent, ids, num_blocks=2)
        s = student.forward_distill(x, noise, 0.75)
    assert torch.equal(mask_t, s["mask"])
    assert loss.item() == pytest.approx(hand_gd(s["decoder"], h), rel=1e-5)
    assert logs["loss_decoder"].item() == pytest.approx(loss.item())  # encoder term has weight 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.unit
def test_hard_distillation_loss():
    g = torch.Generator().manual_seed(1)
    cls, dist, teacher = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    soft = torch.softmax(torch.randn(4, 5, generator=g), -1)
    out = hard_distillation_loss(cls, dist, soft, teacher)
    ce_soft = sum(-(soft[i] * torch.log_softmax(cls[i], -1)).sum().item() for i in range(4)) / 4
    ce_hard = sum(-torch.log_softmax(dist[i], -1)[teacher[i].argmax()].item() for i in range(4)) / 4
    assert out["loss"].item() == pytest.approx((ce_soft + ce_hard) / 2, rel=1e-5)
    labels = torch.tensor([0, 1, 2, 3])
    ce_lab = sum(-torch.log_softmax(cls[i], -1)[labels[i]].item() for i in range(4)) / 4
    assert hard_distillation_loss(cls, dist, labels, teacher)["loss_gt"].item() == pytest.approx(ce_lab, rel=1e-5)


@pytest.mark.unit
def test_frs_losses_follow_the_feature_richness_formula():
    g = torch.Generator().manual_seed(2)
    fs = [torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 2, 2, generator=g)]
    ft = [torch.randn_like(f) for f in fs]
    os_ = [torch.randn(2, 3, 3, 3, generator=g), torch.randn(2, 3, 2, 2, generator=g)]
    ot = [torch.randn_like(o) for o in os_]
    out = frs_distillation_losses(fs, ft, os_, ot)
    feat = obj = 0.0
    for l in range(2):
        m = torch.sigmoid(ot[l]).max(dim=1).values  # N, H, W
        z = m.sum().item()
        N, C, H, W = fs[l].shape
        f_sum = o_sum = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    f_sum += m[n, h, w].item() * ((ft[l][n, :, h, w] - fs[l][n, :, h, w]) ** 2).sum().item()
                    for a in range(3):
                        p, q = torch.sigmoid(os_[l][n, a, h, w]).item(), torch.sigmoid(ot[l][n, a, h, w]).item()
                        o_sum += m[n, h, w].item() * -(q * math.log(p) + (1 - q) * math.log(1 - p))
        feat += f_sum / z
        obj += o_sum / z
    assert out["loss_feat"].item() == pytest.approx(feat, rel=1e-5)
    assert out["loss_obj"].item() == pytest.approx(obj, rel=1e-5)


@pytest.mark.unit
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_channel_wise_divergence(tau):
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    total = 0.0
    for n in range(2):
        for c in range(3):
            p_t = torch.softmax(t[n, c].flatten() / tau, 0)
            log_p_s = torch.log_softmax(s[n, c].flatten() / tau, 0)
            total += -(p_t * log_p_s).sum().item()
    want = tau**2 * total / (2 * 3)
    assert channel_wise_divergence(s, t, tau=tau).item() == pytest.approx(want, rel=1e-5)
    # Same logits: the loss is the teacher's entropy, its minimum over student logits.
    assert channel_wise_divergence(t, t, tau=tau) < channel_wise_divergence(s, t, tau=tau)
