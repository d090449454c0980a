"""Position embeddings: MAE sin-cos table, resampling, BEiT relative position bias."""

import math

import numpy as np
import pytest
import torch
from timm.models.beit import gen_relative_position_index as beit_index

from vlcore.layers import (
    PatchEmbed,
    RelativePositionBias,
    num_relative_distances,
    relative_position_index,
    resample_pos_embed,
    resize_rel_pos_table,
    sincos_2d_pos_embed,
)

pytestmark = pytest.mark.unit


def _mae_table(dim: int, gh: int, gw: int) -> np.ndarray:
    # MAE's rule written out element by element: x (column) in the first half, y (row) in the second
    q = dim // 4
    out = np.zeros((gh * gw, dim))
    for i in range(gh):
        for j in range(gw):
            for d in range(q):
                w = 1.0 / 10000 ** (d / q)
                out[i * gw + j, d] = math.sin(j * w)
                out[i * gw + j, q + d] = math.cos(j * w)
                out[i * gw + j, 2 * q + d] = math.sin(i * w)
                out[i * gw + j, 3 * q + d] = math.cos(i * w)
    return out


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_sincos_matches_mae_formula(grid):
    table = sincos_2d_pos_embed(16, grid, cls_token=True, dtype=torch.float64)
    assert table.shape == (grid[0] * grid[1] + 1, 16)
    assert torch.equal(table[0], torch.zeros(16))  # class-token row
    assert np.abs(table[1:].numpy() - _mae_table(16, *grid)).max() < 1e-12
    sq = sincos_2d_pos_embed(16, grid)
    # sin^2 + cos^2 = 1 per frequency: every row has squared norm D/2
    assert torch.allclose(sq.square().sum(-1), torch.full((grid[0] * grid[1],), 8.0), atol=1e-5)
    with pytest.raises(ValueError):
        sincos_2d_pos_embed(18, 4)


def test_resample_pos_embed():
    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 4 * 4, 8)
    assert torch.equal(resample_pos_embed(pe, new_grid=(4, 4)), pe)
    bigger = resample_pos_embed(pe, new_grid=(6, 5))
    assert bigger.shape == (1, 1 + 30, 8)
    assert torch.equal(bigger[:, :1], pe[:, :1])  # prefix rows are kept
    const = torch.ones(2 + 9, 8)  # 2-D input and BEiT-3's two extra rows
    out = resample_pos_embed(const, new_grid=(5, 5), num_prefix_tokens=2)
    assert out.shape == (2 + 25, 8) and torch.allclose(out, torch.ones_like(out), atol=1e-5)
    rect = torch.randn(1, 2 * 3, 4)
    assert resample_pos_embed(rect, new_grid=(4, 6), old_grid=(2, 3), num_prefix_tokens=0).shape == (1, 24, 4)


def test_patch_embed_is_timms():
    pe = PatchEmbed(img_size=32, patch_size=8, in_chans=3, embed_dim=16)
    assert pe(torch.randn(2, 3, 32, 32)).shape == (2, 16, 16)
    assert pe.proj.weight.shape == (16, 3, 8, 8)


@pytest.mark.parametrize("window", [(2, 2), (3, 4), (14, 14)])
def test_relative_position_index(window):
    wh, ww = window
    n = wh * ww
    r = num_relative_distances(window)
    assert r == (2 * wh - 1) * (2 * ww - 1) + 3
    idx = relative_position_index(window)
    assert idx.shape == (n + 1, n + 1)
    assert torch.equal(idx, beit_index(window))  # BEiT's own construction
    centre = (wh - 1) * (2 * ww - 1) + (ww - 1)
    p = idx[1:, 1:]
    assert torch.equal(p.diagonal(), torch.full((n,), centre))
    assert torch.equal(p + p.T, torch.full((n, n), 2 * centre))  # offset (dy, dx) mirrors (-dy, -dx)
    ys, xs = torch.arange(n) // ww, torch.arange(n) % ww
    expected = (ys[:, None] - ys[None] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None] + ww - 1)
    assert torch.equal(p, expected)
    assert (idx[0, 1:] == r - 3).all() and (idx[1:, 0] == r - 2).all() and idx[0, 0] == r - 1
    assert int(p.max()) == r - 4 and int(p.min()) == 0


def test_relative_position_bias_module():
    torch.manual_seed(0)
    rpb = RelativePositionBias(window_size=(3, 4), num_heads=5)
    assert rpb.relative_position_bias_table.shape == (num_relative_distances((3, 4)), 5)
    assert "relative_position_index" not in rpb.state_dict()  # rebuilt, not stored
    with torch.no_grad():
        rpb.relative_position_bias_table.normal_()
    bias = rpb()
    assert bias.shape == (5, 13, 13)
    table, idx = rpb.relative_position_bias_table, rpb.relative_position_index
    assert torch.equal(bias[2, 4, 7], table[idx[4, 7], 2])
    assert torch.equal(bias[:, 0, 5], table[-3])
    bias.sum().backward()
    assert rpb.relative_position_bias_table.grad.abs().sum() > 0


def test_resize_rel_pos_table():
    torch.manual_seed(0)
    table = torch.randn(num_relative_distances((4, 4)), 3)
    same = resize_rel_pos_table(table, src_window=(4, 4), dst_window=(4, 4))
    assert torch.equal(same, table)
    for method in ("geometric", "bicubic"):
        big = resize_rel_pos_table(table, src_window=(4, 4), dst_window=(6, 7), method=method)
        assert big.shape == (num_relative_distances((6, 7)), 3)
        assert torch.equal(big[-3:], table[-3:])  # class-token rows copied
        # the zero offset stays the zero offset
        assert torch.allclose(big[5 * 13 + 6], table[3 * 7 + 3], atol=1e-5)
    const = torch.full_like(table, 0.7)
    resized = resize_rel_pos_table(const, src_window=(4, 4), dst_window=(8, 8))
    assert torch.allclose(resized, torch.full_like(resized, 0.7), atol=1e-5)
    small = resize_rel_pos_table(table, src_window=(4, 4), dst_window=(2, 3), method="bicubic")
    assert small.shape == (num_relative_distances((2, 3)), 3)
    with pytest.raises(ValueError):
        resize_rel_pos_table(table, src_window=(4, 4), dst_window=(2, 2), method="geometric")
    with pytest.raises(ValueError):
        resize_rel_pos_table(table, src_window=(5, 5), dst_window=(6, 6))
    # a resized table drives a module at the new window
    rpb = RelativePositionBias(window_size=(6, 7), num_heads=3)
    rpb.load_state_dict({"relative_position_bias_table": big})
    assert rpb().shape == (3, 43, 43)


def _geometric_offsets(src: int, dst: int) -> np.ndarray:
    # BEiT: offsets 1, 1+q, 1+q+q^2, ... with q chosen so the last one reaches dst // 2
    lo, hi = 1.01, 1.5
    while hi - lo > 1e-6:
        q = (lo + hi) / 2
        lo, hi = (lo, q) if (1 - q ** (src // 2)) / (1 - q) > dst // 2 else (q, hi)
    pos = np.cumsum([q**i for i in range(src // 2)])
    return np.concatenate((-pos[::-1], [0.0], pos))


def test_geometric_resize_is_bilinear_on_beit_offsets():
    torch.manual_seed(0)
    src, dst = (7, 7), (12, 12)
    table = torch.randn(num_relative_distances(src), 2)
    out = resize_rel_pos_table(table, src_window=src, dst_window=dst, method="geometric")
    s, d = 2 * src[0] - 1, 2 * dst[0] - 1
    xs, xd = _geometric_offsets(s, d), np.arange(-(d // 2), d // 2 + 1, dtype=float)
    for h in range(2):
        grid = table[:-3, h].reshape(s, s).double().numpy()
        rows = np.stack([np.interp(xd, xs, grid[i]) for i in range(s)])  # along x
        ref = np.stack([np.interp(xd, xs, rows[:, j]) for j in range(d)], axis=1)  # then along y
        assert np.abs(out[:-3, h].reshape(d, d).double().numpy() - ref).max() < 1e-4
