"""Tiny Conformers and the shared-data fixture used by conformer/tests (here, not in a conftest.py:
every paper's tests folder is the package ``tests``, so conftest modules would collide)."""

from pathlib import Path

import pytest
import torch

from vlcore.data import shared_data_root

from conformer.models import Conformer


DATA = shared_data_root()

# A small Conformer with the official stem (7x7/2 + max-pool): 64 x 64 inputs give a 4 x 4 token grid.
TINY = dict(patch_size=16, channel_ratio=0.25, embed_dim=32, depth=6, num_heads=2, num_classes=7, qkv_bias=True)


def tiny_conformer(**overrides) -> Conformer:
    return Conformer(**{**TINY, **overrides})


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values in every parameter and BatchNorm statistic, so that parity tests see every tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model


@pytest.fixture
def shared_data() -> Path:
    if not (DATA / "cifar10" / "cifar10_subset.npz").is_file():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread while a test module runs (import it to apply): these models are small, and on a
    shared CPU two OpenMP threads that wait on each other can make a 0.3 s step take 20 s."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
