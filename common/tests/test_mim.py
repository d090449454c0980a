"""vlcore.mim: every preset's loss on a fixed tiny batch equals a hand-written reference of its formula."""

import math

import pytest
import torch
from torch import nn

from vlcore.mim import (
    PRESETS,
    EMATeacherTargets,
    build_objective,
    normalize_targets,
    patchify,
    select_positions,
)
from vlcore.models.beit import Beit
from vlcore.tokenizers.vqkd import VQKD, VQKDConfig

pytestmark = pytest.mark.unit

B, IMG, P = 2, 8, 4  # 2 images of 8x8, patch 4 -> 4 patches each
N = (IMG // P) ** 2


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 3, IMG, IMG, generator=g)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    return images, mask, g


def _masked_rows(mask):
    return [(b, i) for b in range(mask.shape[0]) for i in range(mask.shape[1]) if mask[b, i]]


def _ref_ln(v, eps=1e-6):
    m = sum(v) / len(v)
    var = sum((a - m) ** 2 for a in v) / len(v)
    return [(a - m) / math.sqrt(var + eps) for a in v]


def _ref_smooth_l1(d, beta):
    d = abs(d)
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


class _Feat(nn.Module):
    """A fixed 'teacher': patch pixels times a matrix, with large per-channel offsets."""

    def __init__(self, dim=5):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(3 * P * P, dim, generator=g))
        self.register_buffer("off", torch.linspace(-20, 40, dim))

    def forward(self, x):
        return patchify(x, P) @ self.w + self.off


def test_patchify_order():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)
    t = patchify(x, 2)
    assert t.shape == (2, 4, 12)
    # patch (row 0, col 1) of image 1, pixel (0, 1), channel 2
    assert t[1, 1, (0 * 2 + 1) * 3 + 2] == x[1, 2, 0, 3]


def test_maskdistill_preset_matches_reference():
    images, mask, g = _batch()
    teacher = _Feat()
    for beta in (1.0, 2.0):
        obj = build_objective("maskdistill", teacher=teacher, beta=beta)
        target = obj.targets(images)
        pred = torch.randn(B, N, 5, generator=g)
        loss = obj.loss(pred, target, mask)
        raw = teacher(images).detach()
        terms = []
        for b, i in _masked_rows(mask):
            t = _ref_ln(raw[b, i].tolist())
            terms += [_ref_smooth_l1(pred[b, i, k].item() - t[k], beta) for k in range(5)]
        assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    # the normalisation is an option: "none" regresses the raw features
    obj = build_objective("maskdistill", teacher=teacher, normalize="none")
    assert torch.equal(obj.targets(images), teacher(images).detach())


def test_beitv2_preset_matches_reference():
    images, mask, g = _batch()
    tok = VQKD(VQKDConfig(img_size=IMG, patch_size=P, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=16,
                          decoder_depth=1, decoder_num_heads=2, num_codes=7, code_dim=4, target_dim=5)).eval()
    obj = build_objective("beitv2", tokenizer=tok)
    codes = obj.targets(images)
    assert codes.shape == (B, N) and codes.dtype == torch.long
    assert torch.equal(codes, tok.get_codebook_indices(images))
    logits = torch.randn(B, N, 7, generator=g)
    loss = obj.loss(logits, codes, mask)
    terms = []
    for b, i in _masked_rows(mask):
        row = logits[b, i].tolist()
        lse = math.log(sum(math.exp(v) for v in row))
        terms.append(lse - row[codes[b, i]])
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_mae_and_simmim_presets_match_reference():
    images, mask, g = _batch()
    D = 3 * P * P
    pred = torch.randn(B, N, D, generator=g)
    mae = build_objective("mae", patch_size=P)
    simmim = build_objective("simmim", patch_size=P)
    l_mae = mae.loss(pred, mae.targets(images), mask)
    l_sim = simmim.loss(pred, simmim.targets(images), mask)
    mae_terms, sim_terms = [], []
    for b, i in _masked_rows(mask):
        r, c = divmod(i, IMG // P)
        pix = [images[b, ch, r * P + y, c * P + x].item() for y in range(P) for x in range(P) for ch in range(3)]
        m = sum(pix) / D
        var = sum((v - m) ** 2 for v in pix) / (D - 1)  # MAE: unbiased variance
        t = [(v - m) / math.sqrt(var + 1e-6) for v in pix]
        mae_terms += [(pred[b, i, k].item() - t[k]) ** 2 for k in range(D)]
        sim_terms += [abs(pred[b, i, k].item() - pix[k]) for k in range(D)]
    assert l_mae.item() == pytest.approx(sum(mae_terms) / len(mae_terms), rel=1e-5)
    assert l_sim.item() == pytest.approx(sum(sim_terms) / len(sim_terms), rel=1e-5)


def _ref_hog(img, b, i, cell, bins):
    """HOG of patch i of image b by explicit loops (zero padding, unsigned hard bins, l2 per patch)."""
    r0, c0 = divmod(i, IMG // P)
    r0, c0 = r0 * P, c0 * P
    feat = []
    for ch in range(3):
        px = lambda y, x: img[b, ch, y, x].item() if 0 <= y < IMG and 0 <= x < IMG else 0.0  # noqa: E731
        for cy in range(P // cell):
            for cx in range(P // cell):
                h = [0.0] * bins
                for y in range(r0 + cy * cell, r0 + (cy + 1) * cell):
                    for x in range(c0 + cx * cell, c0 + (cx + 1) * cell):
                        gx, gy = px(y, x + 1) - px(y, x - 1), px(y + 1, x) - px(y - 1, x)
                        ang = math.atan2(gy, gx) % math.pi
                        h[min(int(ang / math.pi * bins), bins - 1)] += math.hypot(gx, gy)
                feat += h
    norm = math.sqrt(sum(v * v for v in feat))
    return [v / max(norm, 1e-6) for v in feat]


def test_maskfeat_preset_matches_reference():
    images, mask, g = _batch()
    obj = build_objective("maskfeat", patch_size=P, cell=2, bins=9)
    target = obj.targets(images)
    D = 3 * 4 * 9
    assert target.shape == (B, N, D)
    pred = torch.randn(B, N, D, generator=g) * 0.1
    loss = obj.loss(pred, target, mask)
    terms = []
    for b, i in _masked_rows(mask):
        ref = _ref_hog(images, b, i, 2, 9)
        assert target[b, i].tolist() == pytest.approx(ref, abs=1e-5)
        terms += [(pred[b, i, k].item() - ref[k]) ** 2 for k in range(D)]
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def _tiny_beit():
    torch.manual_seed(0)
    return Beit(img_size=IMG, patch_size=P, embed_dim=8, depth=3, num_heads=2, num_classes=0, global_pool="",
                use_mask_token=True, rel_pos="shared")


def test_data2vec_preset_matches_reference_and_ema_update():
    images, mask, g = _batch()
    student = _tiny_beit()
    obj = build_objective("data2vec", student=student, top_k=2, beta=2.0)
    target = obj.targets(images)
    # reference: run the blocks by hand, LN each of the last two block outputs, average
    x = student.embed(images)
    outs = []
    with torch.no_grad():
        bias = student.shared_rel_pos_bias()
        for blk in student.blocks:
            x = blk(x, rel_pos_bias=bias)
            outs.append(x[:, 1:])
    ref = (torch.nn.functional.layer_norm(outs[1], (8,), eps=1e-6)
           + torch.nn.functional.layer_norm(outs[2], (8,), eps=1e-6)) / 2
    assert torch.allclose(target, ref, atol=1e-6)
    pred = torch.randn(B, N, 8, generator=g) * 3
    loss = obj.loss(pred, target, mask)
    terms = [_ref_smooth_l1(pred[b, i, k].item() - ref[b, i, k].item(), 2.0)
             for b, i in _masked_rows(mask) for k in range(8)]
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    # EMA: teacher <- m t + (1 - m) s
    ema: EMATeacherTargets = obj.target
    t0 = ema.encoder.cls_token.clone()
    with torch.no_grad():
        student.cls_token.add_(1.0)
    ema.update(student, momentum=0.9)
    assert torch.allclose(ema.encoder.cls_token, 0.9 * t0 + 0.1 * student.cls_token)
    assert not any(p.requires_grad for p in ema.encoder.parameters())


def test_positions_and_normalisations():
    x = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    assert select_positions(x, mask, "masked").shape == (3, 3)
    assert select_positions(x, mask, "visible").shape == (5, 3)
    assert select_positions(x, mask, "all").shape == (8, 3)
    with pytest.raises(ValueError):
        select_positions(x, mask[:, :3], "masked")
    t = torch.randn(5, 7) * 10 + 3
    ln = normalize_targets(t, "layernorm")
    assert torch.allclose(ln.mean(-1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(ln.var(-1, unbiased=False), torch.ones(5), atol=1e-4)
    assert torch.allclose(normalize_targets(t, "patch_biased"), ln, atol=1e-5)
    assert torch.allclose(normalize_targets(t, "l2").norm(dim=-1), torch.ones(5))
    with pytest.raises(ValueError):
        normalize_targets(torch.ones(3, dtype=torch.long), "layernorm")


def test_all_positions_change_the_loss_and_presets_are_registered():
    assert {"maskdistill", "beitv2", "mae", "simmim", "maskfeat", "data2vec"} <= set(PRESETS)
    images, mask, g = _batch()
    teacher = _Feat()
    pred = torch.randn(B, N, 5, generator=g)
    masked = build_objective("maskdistill", teacher=teacher)
    dense = build_objective("maskdistill", teacher=teacher, positions="all")
    t = masked.targets(images)
    assert masked.loss(pred, t, mask).item() != pytest.approx(dense.loss(pred, t, mask).item(), rel=1e-3)
    with pytest.raises(KeyError):
        build_objective("nope")
