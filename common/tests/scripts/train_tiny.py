"""A tiny training run used by the engine tests (in-process, killed with SIGKILL, and under torchrun).

    python common/tests/scripts/train_tiny.py --set out_dir=/tmp/run --set total_steps=12 [--kill-at-call 17]
    torchrun --nproc_per_node 2 common/tests/scripts/train_tiny.py --dropout 0 --set device=cpu ...

Prints the run summary as one JSON line on stdout (main process).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict

import torch
from torch import nn
from torch.utils.data import TensorDataset

from vlcore.config import add_config_args, config_from_args
from vlcore.train import TrainConfig, Trainer

DIM, HIDDEN, NUM_SAMPLES = 8, 16, 40


class TinyBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B, D
        return x + self.fc2(self.drop(torch.nn.functional.gelu(self.fc1(self.norm(x)))))


class TinyNet(nn.Module):
    """timm-like layout (patch_embed, cls-free, blocks.{i}, norm, head) so layer-wise decay applies."""

    def __init__(self, dropout: float = 0.1, depth: int = 2):
        super().__init__()
        self.patch_embed = nn.Linear(DIM, DIM)
        self.blocks = nn.ModuleList(TinyBlock(DIM, HIDDEN, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B, D -> B
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).squeeze(-1)


def build(dropout: float = 0.1, kill_at_call: int | None = None):
    """Model, dataset, step function; the same weights and data on every call."""
    torch.manual_seed(0)
    model = TinyNet(dropout)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(NUM_SAMPLES, DIM, generator=g)
    y = torch.randn(NUM_SAMPLES, generator=g)
    calls = [0]

    def step_fn(m: nn.Module, batch):
        calls[0] += 1
        if kill_at_call is not None and calls[0] == kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)  # a hard kill in the middle of a step
        xb, yb = batch
        pred = m(xb)
        loss = torch.nn.functional.mse_loss(pred.float(), yb)
        return loss, {"pred_std": pred.detach().float().std()}

    return model, TensorDataset(x, y), step_fn


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    add_config_args(p)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--kill-at-call", type=int, default=None, help="SIGKILL this process on the n-th step_fn call")
    args = p.parse_args(argv)
    cfg = config_from_args(TrainConfig, args)
    torch.set_num_threads(1)
    model, data, step_fn = build(args.dropout, args.kill_at_call)
    trainer = Trainer(model, step_fn, data, cfg)
    summary = trainer.fit()
    if trainer.accelerator.is_main_process:
        print(json.dumps(asdict(summary)))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
