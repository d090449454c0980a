"""Model configurations of kosmos2, each with the paper's parameter count.

`python -m kosmos2.models [--json]` lists them. Every entry builds a
:class:`kosmos2.models.kosmos2.Kosmos2Model`; keyword arguments override fields of its
:class:`Kosmos2Config` (``REGISTRY.build("kosmos2_tiny_patch8_32", vocab_size=300)``).
"""

from __future__ import annotations

from dataclasses import replace

from vlcore.registry import ModelRegistry

from kosmos2.models.kosmos2 import Kosmos2Config, Kosmos2Model

__all__ = ["REGISTRY", "CONFIGS", "Kosmos2Config", "Kosmos2Model", "build_model"]

REGISTRY = ModelRegistry("kosmos2")

CONFIGS: dict[str, Kosmos2Config] = {
    # released model (card §2): CLIP ViT-L/14 + 64-latent resampler + 24 x 2048 Sub-LN decoder
    "kosmos2_patch14_224": Kosmos2Config(),
    # tiny CLIP-ViT + resampler, same structure (tests, smoke runs, HF parity)
    "kosmos2_tiny_patch8_32": Kosmos2Config(
        vocab_size=1100, embed_dim=64, depth=2, num_heads=4, ffn_dim=128, max_positions=512,
        img_size=32, patch_size=8, vision_dim=32, vision_depth=2, vision_heads=4, num_latents=8,
    ),
    # the mini reproduction (card §11): conv stem, no resampler, 3 pre-LN blocks (as calibrated in card §11), width 96
    "kosmos2_mini_convstem_32": Kosmos2Config(
        vocab_size=300, embed_dim=96, depth=3, num_heads=4, ffn_dim=384, max_positions=256,
        dropout=0.0, attn_drop=0.0, norm_layout="pre", vision="conv_stem", img_size=32, vision_dim=64, vision_depth=2,
        vision_heads=4, connector="identity",
    ),
}


def build_model(name: str, **overrides) -> Kosmos2Model:
    """Registered configuration ``name`` with field overrides."""
    if name not in CONFIGS:
        REGISTRY.get(name)  # raises with the list of names
    return Kosmos2Model(replace(CONFIGS[name], **overrides))


@REGISTRY.register(
    "kosmos2_patch14_224",
    paper_params_m=1664.485376,
    paper_source="card §2.4: 1,664,485,376 (HF Kosmos2ForConditionalGeneration, tied head once); paper ~1.6B",
    tolerance=1e-9,
)
def kosmos2_patch14_224(**kw) -> Kosmos2Model:
    """Kosmos-2: CLIP ViT-L/14 (QuickGELU) + 64-latent resampler + 24-layer 2048-d Sub-LN decoder, 65,037 tokens."""
    return build_model("kosmos2_patch14_224", **kw)


@REGISTRY.register("kosmos2_tiny_patch8_32")
def kosmos2_tiny_patch8_32(**kw) -> Kosmos2Model:
    """Tiny test size: 32 px CLIP-style ViT (patch 8, width 32), 8 latents, 2 x 64-d Sub-LN decoder."""
    return build_model("kosmos2_tiny_patch8_32", **kw)


@REGISTRY.register("kosmos2_mini_convstem_32")
def kosmos2_mini_convstem_32(**kw) -> Kosmos2Model:
    """Mini reproduction: 32 px conv stem (8x8 + CLS tokens), no resampler, 3 x 96-d decoder."""
    return build_model("kosmos2_mini_convstem_32", **kw)
