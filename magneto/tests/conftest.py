"""Every model in these tests is tiny: per-op overhead, not arithmetic, sets their speed, so one
intra-op thread is as fast as two and does not stall when the CPU is shared."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
