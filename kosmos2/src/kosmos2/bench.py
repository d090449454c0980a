"""Benchmark cases of kosmos2 for `make bench` (`python -m vlcore.bench --papers kosmos2`): our Kosmos-2
against transformers' `Kosmos2ForConditionalGeneration` of the same small configuration (one training
step and one forward each), plus greedy-generation tokens/s with the KV cache
(`python -m kosmos2.bench --generate`)."""

from __future__ import annotations

import time

import torch
from torch import nn

from vlcore.bench import BenchCase

from kosmos2.models.kosmos2 import Kosmos2Config, Kosmos2Model


def _config(quick: bool) -> Kosmos2Config:
    if quick:
        return Kosmos2Config(vocab_size=2048, embed_dim=128, depth=2, num_heads=4, ffn_dim=512, max_positions=512,
                             img_size=56, patch_size=14, vision_dim=128, vision_depth=2, vision_heads=4, num_latents=16)
    return Kosmos2Config(vocab_size=8192, embed_dim=512, depth=6, num_heads=8, ffn_dim=2048, max_positions=1024,
                         img_size=112, patch_size=14, vision_dim=384, vision_depth=6, vision_heads=6, num_latents=64)


def _inputs(cfg: Kosmos2Config, b: int, text: int = 32):
    g = torch.Generator().manual_seed(0)
    slots = cfg.num_image_tokens
    ids = torch.randint(4, cfg.vocab_size, (b, slots + 3 + text), generator=g)
    ids[:, 0] = 0
    mask = torch.zeros_like(ids)
    mask[:, 2 : 2 + slots] = 1
    return torch.randn(b, 3, cfg.img_size, cfg.img_size, generator=g), ids, mask


class _HF(nn.Module):
    def __init__(self, cfg: Kosmos2Config) -> None:
        super().__init__()
        from transformers import Kosmos2ForConditionalGeneration

        from kosmos2.convert import hf_config

        hc = hf_config(cfg)
        hc._attn_implementation = "eager"
        self.m = Kosmos2ForConditionalGeneration(hc)

    def forward(self, px, ids, mask):
        return self.m(pixel_values=px, input_ids=ids, image_embeds_position_mask=mask).logits


def cases(quick: bool) -> list[BenchCase]:
    cfg = _config(quick)
    b = 2 if quick else 8
    return [BenchCase(
        name=f"Kosmos-2 {cfg.depth}x{cfg.embed_dim} LM + ViT {cfg.vision_depth}x{cfg.vision_dim} @{cfg.img_size}",
        batch_size=b,
        ours=lambda: Kosmos2Model(cfg),
        reference=lambda: _HF(cfg),
        reference_name="transformers Kosmos2ForConditionalGeneration (eager)",
        batch=lambda n: _inputs(cfg, n),
    )]


@torch.no_grad()
def generation_speed(quick: bool = True, new_tokens: int = 32) -> dict[str, float]:
    """Greedy tokens/s, ours vs HF, same weights (converted), KV cache on both sides."""
    from kosmos2.convert import to_hf

    cfg = _config(quick)
    ours = Kosmos2Model(cfg).eval()
    hf = to_hf(ours)
    px, ids, mask = _inputs(cfg, 2)
    out = {}
    for name, fn in (
        ("ours", lambda: ours.generate(px, ids, mask, max_new_tokens=new_tokens, eos_token_id=-1)),
        ("hf", lambda: hf.generate(pixel_values=px, input_ids=ids, image_embeds_position_mask=mask,
                                   max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)),
    ):
        fn()
        t = time.perf_counter()
        fn()
        out[f"{name}_tokens_per_s"] = 2 * new_tokens / (time.perf_counter() - t)
    return out


if __name__ == "__main__":  # python -m kosmos2.bench [--generate] [--quick] [vlcore.bench options]
    import sys

    args = sys.argv[1:]
    if "--generate" in args:
        print(generation_speed(quick="--quick" in args))
        sys.exit(0)
    from vlcore.bench import main

    sys.exit(main(["--papers", "kosmos2", *args]))
