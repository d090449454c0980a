"""Benchmark cases of beit3 for `make bench` (`python -m vlcore.bench --papers beit3`).

Two references of the same configuration, each in the same run: torchscale's ``BEiT3`` on an
image-text pair (the Multiway path the vision-language heads use), and timm's ``beit3_*`` on
images only (timm implements the image branch)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from vlcore.bench import BenchCase


class _TorchscalePair(nn.Module):
    """torchscale's BEiT3 behind the (image, text) call of ours, returning the encoder output."""

    def __init__(self, size: int, text_len: int) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchscale.architecture.config import EncoderConfig
            from torchscale.model.BEiT3 import BEiT3 as TorchscaleBEiT3
        cfg = EncoderConfig(
            multiway=True, layernorm_embedding=False, normalize_output=True, no_output_layer=True,
            vocab_size=64010, encoder_embed_dim=768, encoder_attention_heads=12, encoder_ffn_embed_dim=3072,
            encoder_layers=12, img_size=size, patch_size=16, max_source_positions=max(text_len, 64),
            drop_path_rate=0.0, dropout=0.0, checkpoint_activations=False,
        )
        self.model = TorchscaleBEiT3(cfg)

    def forward(self, image, text):
        return self.model(textual_tokens=text, visual_tokens=image)["encoder_out"]


class _TimmFeatures(nn.Module):
    """timm's image-only BEiT-3 up to the final norm, as ours returns it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model("beit3_base_patch16_224", pretrained=False, img_size=size, num_classes=0)

    def forward(self, image):
        return self.model.forward_features(image)


def cases(quick: bool) -> list[BenchCase]:
    from beit3.models import REGISTRY

    size, batch, text_len = (112, 4, 16) if quick else (224, 8, 32)

    def pair(b: int) -> tuple:
        g = torch.Generator().manual_seed(0)
        return torch.randn(b, 3, size, size, generator=g), torch.randint(3, 64010, (b, text_len), generator=g)

    return [
        BenchCase(
            name=f"BEiT-3 base image+text @{size}, {text_len} tokens", batch_size=batch,
            ours=lambda: REGISTRY.build("beit3_base_patch16_224", img_size=size, max_text_len=max(text_len, 64)),
            reference=lambda: _TorchscalePair(size, text_len),
            reference_name="torchscale BEiT3 (base)",
            batch=pair,
        ),
        BenchCase(
            name=f"BEiT-3 base image-only @{size}", batch_size=batch,
            ours=lambda: REGISTRY.build("beit3_base_patch16_224", img_size=size),
            reference=lambda: _TimmFeatures(size),
            reference_name="timm beit3_base_patch16_224 (forward_features)",
            batch=lambda b: (torch.randn(b, 3, size, size),),
        ),
    ]


if __name__ == "__main__":  # python -m beit3.bench [--quick] [--precision fp32,bf16] [--out DIR]
    import sys

    from vlcore.bench import main

    sys.exit(main(["--papers", "beit3", *sys.argv[1:]]))
