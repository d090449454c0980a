"""Kosmos-G's condition encoder: an MLLM followed by AlignerNet M.

Any MLLM with ``forward_hidden(pixel_values, input_ids, image_embeds_position_mask,
attention_mask=None) -> (B, L, D)`` final-LayerNorm hidden states of all positions works (the
Kosmos-2 network of ``kosmos2``, or the mini reproduction's). The condition is
c = M(s) with the MLLM pads masked (card §2.1, §9: all positions, not only text ones); the null
condition is c_null = M(MLLM("<s>")).
"""

from __future__ import annotations

import torch
from torch import nn

from kosmos_g.models.aligner import AlignerNet


class KosmosGEncoder(nn.Module):
    def __init__(self, mllm: nn.Module, aligner: AlignerNet, bos_id: int = 0) -> None:
        super().__init__()
        self.mllm = mllm
        self.aligner = aligner
        self.bos_id = bos_id

    def mllm_states(self, input_ids, pixel_values=None, image_embeds_position_mask=None, attention_mask=None):
        return self.mllm.forward_hidden(pixel_values, input_ids, image_embeds_position_mask, attention_mask)

    def forward(self, input_ids, pixel_values=None, image_embeds_position_mask=None, attention_mask=None):
        s = self.mllm_states(input_ids, pixel_values, image_embeds_position_mask, attention_mask)
        pad = None if attention_mask is None else ~attention_mask.bool()
        return self.aligner(s, pad)

    def null_condition(self, batch: int = 1) -> torch.Tensor:
        dev = next(self.parameters()).device
        ids = torch.full((1, 1), self.bos_id, dtype=torch.long, device=dev)
        c = self(ids, None, torch.zeros_like(ids, dtype=torch.bool), torch.ones_like(ids))
        return c.expand(batch, -1, -1)
