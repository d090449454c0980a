"""Masking: BEiT blockwise masks, MAE random masking, plain random masks."""

import numpy as np
import pytest
import torch

from vlcore.masking import BlockwiseMaskGenerator, random_masking, random_patch_mask

pytestmark = pytest.mark.unit


def _boundary(mask: np.ndarray) -> int:
    # edges between a masked and an unmasked neighbour: low for compact blocks
    return int((mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum())


@pytest.mark.parametrize(
    "size,count,min_block",
    [(14, 75, 16), (14, 118, 16), ((6, 8), 19, 2), (6, 14, 2), (5, 0, 4), (4, 16, 4), (14, 1, 16)],
)
def test_blockwise_exact_count(size, count, min_block):
    gen = BlockwiseMaskGenerator(input_size=size, num_masking_patches=count, min_num_patches=min_block, seed=0)
    shape = (size, size) if isinstance(size, int) else size
    for _ in range(30):
        m = gen()
        assert m.shape == shape and m.dtype == bool
        assert int(m.sum()) == count


def test_blockwise_deterministic_and_blocky():
    a = BlockwiseMaskGenerator(input_size=14, num_masking_patches=75, seed=123)
    b = BlockwiseMaskGenerator(input_size=14, num_masking_patches=75, seed=123)
    c = BlockwiseMaskGenerator(input_size=14, num_masking_patches=75, seed=124)
    ma, mb, mc = a.batch(8), b.batch(8), c.batch(8)
    assert ma.shape == (8, 196) and ma.dtype == torch.bool
    assert torch.equal(ma, mb)
    assert not torch.equal(ma, mc)
    # an explicit rng reproduces too, independent of the generator's own stream
    assert np.array_equal(a(np.random.default_rng(7)), c(np.random.default_rng(7)))
    # rectangles leave far fewer masked/unmasked edges than scattered patches
    rng = np.random.default_rng(0)
    block = np.mean([_boundary(a()) for _ in range(50)])
    scattered = []
    for _ in range(50):
        m = np.zeros(196, dtype=bool)
        m[rng.choice(196, 75, replace=False)] = True
        scattered.append(_boundary(m.reshape(14, 14)))
    assert block < 0.6 * np.mean(scattered)


def test_blockwise_rejects_impossible_budget():
    with pytest.raises(ValueError):
        BlockwiseMaskGenerator(input_size=4, num_masking_patches=17)


def test_random_masking_restores_order():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 4)
    g = torch.Generator().manual_seed(5)
    res = random_masking(x, 0.75, generator=g)
    x_kept, mask, ids_restore, ids_keep = res
    assert x_kept.shape == (3, 2, 4) and ids_keep.shape == (3, 2)
    assert mask.dtype == torch.bool and (mask.sum(1) == 8).all()
    # the kept tokens are the unmasked ones, in the shuffled order
    assert torch.equal(x_kept, torch.stack([x[b, ids_keep[b]] for b in range(3)]))
    assert all(not mask[b, ids_keep[b]].any() for b in range(3))
    # MAE's decoder path: kept tokens + placeholders, gathered by ids_restore, are back in order
    placeholder = torch.full((3, 8, 4), float("nan"))
    full = torch.cat((x_kept, placeholder), dim=1)
    unshuffled = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, 4))
    assert torch.equal(unshuffled[~mask], x[~mask])
    assert torch.isnan(unshuffled[mask]).all()
    again = random_masking(x, 0.75, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again.mask, mask) and torch.equal(again.ids_restore, ids_restore)


def test_random_patch_mask():
    g = torch.Generator().manual_seed(0)
    m = random_patch_mask(16, 49, 20, generator=g)
    assert m.shape == (16, 49) and (m.sum(1) == 20).all()
    assert torch.equal(m, random_patch_mask(16, 49, 20, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(m[0], m[1])
    assert random_patch_mask(2, 5, 0).sum() == 0 and random_patch_mask(2, 5, 5).all()
    with pytest.raises(ValueError):
        random_patch_mask(1, 4, 5)
