"""Test helpers for kosmos2 (tiny random models and inputs); imported by the tests."""

from __future__ import annotations

import torch

from kosmos2.models import build_model
from kosmos2.models.kosmos2 import Kosmos2Model

__all__ = ["tiny_hf_model", "tiny_model", "tiny_inputs"]


def tiny_hf_model(seed: int = 0, vocab_size: int = 300):
    """A random ``Kosmos2ForConditionalGeneration`` (32 px, patch 8, 4 latents, 2 x 32-d decoder).

    Eager attention: transformers' SDPA path masks the connector's latent queries causally
    (its attention module is flagged causal), which neither the official model nor the eager
    path does; parity is checked against the eager path."""
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Kosmos2Config(
        text_config=dict(vocab_size=vocab_size, embed_dim=32, layers=2, attention_heads=4, ffn_dim=64,
                         max_position_embeddings=128),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        latent_query_num=4,
    )
    cfg._attn_implementation = "eager"
    return Kosmos2ForConditionalGeneration(cfg).eval()


def tiny_model(seed: int = 0, **overrides) -> Kosmos2Model:
    torch.manual_seed(seed)
    return build_model("kosmos2_tiny_patch8_32", **overrides)


def tiny_inputs(model_or_slots, batch: int = 2, length: int = 16, images_per_row: int = 1, vocab: int = 300, seed: int = 0):
    """Random pixel values, ``<s> <image> [slots] </image> ...`` ids and the slot mask."""
    slots = model_or_slots if isinstance(model_or_slots, int) else model_or_slots.num_image_tokens
    g = torch.Generator().manual_seed(seed)
    need = images_per_row * (slots + 2) + 1
    length = max(length, need + 2)
    ids = torch.randint(4, vocab, (batch, length), generator=g)
    ids[:, 0] = 0
    mask = torch.zeros(batch, length, dtype=torch.long)
    pos = 1
    for _ in range(images_per_row):
        mask[:, pos + 1 : pos + 1 + slots] = 1
        pos += slots + 2
    px = torch.randn(batch * images_per_row, 3, 32, 32, generator=g)
    return px, ids, mask
