"""Tiny models for the tests (built from configs in code; nothing is downloaded)."""

from __future__ import annotations

import torch

from kosmos_g.mini import interleave, mini_mllm, tiny_aligner, tiny_unet
from kosmos_g.models.kosmos_g import KosmosGEncoder
from kosmos_g.mini import BOS, TOK


def tiny_encoder(seed: int = 0) -> KosmosGEncoder:
    torch.manual_seed(seed)
    return KosmosGEncoder(mini_mllm(), tiny_aligner(), bos_id=BOS)


def frozen_tiny_unet(seed: int = 0):
    torch.manual_seed(seed)
    u = tiny_unet()
    u.requires_grad_(False)
    u.eval()
    return u


def mini_processor(prompts: list) -> dict:
    """Interleaved prompts (str words of the mini vocabulary / (3, 16, 16) images) -> token batch."""
    segs = []
    for p in prompts:
        row = []
        for s in p:
            if isinstance(s, str):
                words = s.split()
                unknown = [w for w in words if w not in TOK]
                if unknown:
                    raise ValueError(f"words outside the mini vocabulary: {unknown}")
                row.append(words)
            else:
                row.append(s)
        segs.append(row)
    return interleave(segs)
