"""Every model in these tests is tiny: per-op overhead, not arithmetic, sets their speed, so one
intra-op thread is as fast as two and does not stall when the CPU is shared.

Each test module imports ``one_torch_thread`` (an autouse fixture applies where it is imported); a
conftest.py would collide with the other papers' under the shared ``tests`` package name."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
