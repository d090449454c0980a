"""Distributed helpers; ranks come from the environment that torchrun / accelerate launch set.

No `--local_rank` arguments anywhere: `RANK`, `WORLD_SIZE` and `LOCAL_RANK` are read
from the environment, or from the initialised process group when there is one.
Every helper is a no-op (or the identity) in a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist


def _env_int(*names: str, default: int) -> int:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            return int(v)
    return default


def is_initialized() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    if is_initialized():
        return torch_dist.get_rank()
    return _env_int("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", default=0)


def get_world_size() -> int:
    if is_initialized():
        return torch_dist.get_world_size()
    return _env_int("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", default=1)


def get_local_rank() -> int:
    return _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", default=0)


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        torch_dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over processes (a new tensor; `x` is untouched)."""
    if not is_initialized() or torch_dist.get_world_size() == 1:
        return x.detach().clone()
    y = x.detach().clone()
    torch_dist.all_reduce(y, op=torch_dist.ReduceOp.SUM)
    return y / torch_dist.get_world_size()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of `x` over processes (a new tensor)."""
    y = x.detach().clone()
    if is_initialized() and torch_dist.get_world_size() > 1:
        torch_dist.all_reduce(y, op=torch_dist.ReduceOp.SUM)
    return y
