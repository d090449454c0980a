"""Model configurations of magneto, each with the parameter count its source gives.

`python -m magneto.models [--json]` lists them. Every builder takes the trunk's keyword
arguments as overrides, e.g. ``REGISTRY.build("magneto_bert_base", norm="post")`` for the
Post-LN baseline of the same size, or ``vocab_size=...`` for another tokenizer.

The Magneto paper trains host models of each domain with their usual sizes and does not
tabulate parameter counts, so the reference counts are those of the host models' own
papers (named in ``paper_source``); Magneto adds 10 d parameters per layer to them (two
LayerNorms: d on the merged heads, 4 d on the FFN hidden activation).
"""

from __future__ import annotations

from vlcore.registry import ModelRegistry

from magneto.models.bert import MagnetoBert, MaskedLMHead, mask_tokens
from magneto.models.gpt import MagnetoGPT
from magneto.models.seq2seq import MagnetoSeq2Seq
from magneto.models.trunk import ArchitectureError, norm_from_torchscale_flags, resolve_init
from magneto.models.vit import MagnetoViT, convert_timm_vit, to_timm_vit

REGISTRY = ModelRegistry("magneto")

BERT_VOCAB = 30522  # BERT's uncased WordPiece vocabulary
GPT_VOCAB = 50257  # GPT-2 / GPT-3 byte-level BPE
WMT_VOCAB = 37000  # Transformer (Vaswani et al.) shared BPE for WMT En-De
OPUS_VOCAB = 64000  # OPUS-100 SentencePiece vocabulary (Zhang et al. 2020)


def _merge(defaults: dict, overrides: dict) -> dict:
    return {**defaults, **overrides}


# --- BERT-style encoders (masked language modelling; de facto layout: Post-LN) ---------------


@REGISTRY.register(paper_params_m=110.0, paper_source="BERT-Base, Devlin et al. 2019 (110M)", tolerance=0.01)
def magneto_bert_base(**kw) -> MagnetoBert:
    """BERT-Base-size MLM encoder: 12 layers, d 768, 12 heads, FFN 3072."""
    return MagnetoBert(**_merge(dict(vocab_size=BERT_VOCAB, max_seq_len=512, depth=12, dim=768, num_heads=12), kw))


@REGISTRY.register(
    paper_params_m=340.0, paper_source="BERT-Large, Devlin et al. 2019 (340M, rounded up)", tolerance=0.02
)
def magneto_bert_large(**kw) -> MagnetoBert:
    """BERT-Large-size MLM encoder: 24 layers, d 1024, 16 heads, FFN 4096."""
    return MagnetoBert(**_merge(dict(vocab_size=BERT_VOCAB, max_seq_len=512, depth=24, dim=1024, num_heads=16), kw))


@REGISTRY.register()
def magneto_bert_tiny(**kw) -> MagnetoBert:
    """CPU-size MLM encoder for smoke runs: 4 layers, d 64, 4 heads (SentencePiece vocab 1000)."""
    return MagnetoBert(**_merge(dict(vocab_size=1000, max_seq_len=128, depth=4, dim=64, num_heads=4), kw))


# --- GPT-style decoders (causal language modelling; de facto layout: Pre-LN) -----------------


@REGISTRY.register(paper_params_m=125.0, paper_source="GPT-3 Small, Brown et al. 2020 Table 2.1", tolerance=0.01)
def magneto_gpt_small(**kw) -> MagnetoGPT:
    """GPT decoder: 12 layers, d 768, 12 heads, context 2048."""
    return MagnetoGPT(**_merge(dict(vocab_size=GPT_VOCAB, max_seq_len=2048, depth=12, dim=768, num_heads=12), kw))


@REGISTRY.register(paper_params_m=350.0, paper_source="GPT-3 Medium, Brown et al. 2020 Table 2.1", tolerance=0.02)
def magneto_gpt_medium(**kw) -> MagnetoGPT:
    """GPT decoder: 24 layers, d 1024, 16 heads, context 2048."""
    return MagnetoGPT(**_merge(dict(vocab_size=GPT_VOCAB, max_seq_len=2048, depth=24, dim=1024, num_heads=16), kw))


@REGISTRY.register(paper_params_m=760.0, paper_source="GPT-3 Large, Brown et al. 2020 Table 2.1", tolerance=0.01)
def magneto_gpt_large(**kw) -> MagnetoGPT:
    """GPT decoder: 24 layers, d 1536, 16 heads, context 2048."""
    return MagnetoGPT(**_merge(dict(vocab_size=GPT_VOCAB, max_seq_len=2048, depth=24, dim=1536, num_heads=16), kw))


@REGISTRY.register()
def magneto_gpt_deep_thin(**kw) -> MagnetoGPT:
    """The mini reproduction's decoder: 24 thin layers (d 32, 4 heads), context 64, characters."""
    return MagnetoGPT(**_merge(dict(vocab_size=65, max_seq_len=64, depth=24, dim=32, num_heads=4), kw))


@REGISTRY.register()
def magneto_gpt_tiny(**kw) -> MagnetoGPT:
    """CPU-size decoder for smoke runs: 4 layers, d 64, 4 heads, context 128."""
    return MagnetoGPT(**_merge(dict(vocab_size=65, max_seq_len=128, depth=4, dim=64, num_heads=4), kw))


# --- translation-style encoder-decoders (de facto layout: Post-LN) ---------------------------


@REGISTRY.register(
    paper_params_m=65.0, paper_source="Transformer base, Vaswani et al. 2017 Table 3 (65M)", tolerance=0.03
)
def magneto_nmt_6_6(**kw) -> MagnetoSeq2Seq:
    """6-6 layers, d 512, 8 heads, FFN 2048, shared 37k vocabulary (WMT-17 En-De setting)."""
    return MagnetoSeq2Seq(
        **_merge(dict(vocab_size=WMT_VOCAB, encoder_depth=6, decoder_depth=6, dim=512, num_heads=8), kw)
    )


@REGISTRY.register()
def magneto_nmt_12_12(**kw) -> MagnetoSeq2Seq:
    """12-12 layers, d 512, 8 heads, FFN 2048, shared 64k vocabulary (OPUS-100 setting)."""
    return MagnetoSeq2Seq(
        **_merge(dict(vocab_size=OPUS_VOCAB, encoder_depth=12, decoder_depth=12, dim=512, num_heads=8), kw)
    )


@REGISTRY.register()
def magneto_nmt_18_18(**kw) -> MagnetoSeq2Seq:
    """18-18 layers, d 512, 8 heads, FFN 2048, shared 64k vocabulary (OPUS-100 setting)."""
    return MagnetoSeq2Seq(
        **_merge(dict(vocab_size=OPUS_VOCAB, encoder_depth=18, decoder_depth=18, dim=512, num_heads=8), kw)
    )


@REGISTRY.register()
def magneto_nmt_tiny(**kw) -> MagnetoSeq2Seq:
    """CPU-size encoder-decoder for smoke runs: 2-2 layers, d 64, 4 heads."""
    return MagnetoSeq2Seq(
        **_merge(dict(vocab_size=1000, max_seq_len=128, encoder_depth=2, decoder_depth=2, dim=64, num_heads=4), kw)
    )


# --- vision (BEiT / ViT; de facto layout: Pre-LN) --------------------------------------------


@REGISTRY.register(
    paper_params_m=86.0, paper_source="ViT-Base, Dosovitskiy et al. 2021 Table 1 (86M)", tolerance=0.01
)
def magneto_vit_base_patch16_224(**kw) -> MagnetoViT:
    """ViT-B/16 with Sub-LN blocks, 224 px, 1000 classes."""
    return MagnetoViT(**_merge(dict(img_size=224, patch_size=16, depth=12, dim=768, num_heads=12), kw))


@REGISTRY.register(
    paper_params_m=307.0, paper_source="ViT-Large, Dosovitskiy et al. 2021 Table 1 (307M)", tolerance=0.01
)
def magneto_vit_large_patch16_224(**kw) -> MagnetoViT:
    """ViT-L/16 with Sub-LN blocks, 224 px, 1000 classes."""
    return MagnetoViT(**_merge(dict(img_size=224, patch_size=16, depth=24, dim=1024, num_heads=16), kw))


@REGISTRY.register()
def magneto_vit_tiny_patch4_32(**kw) -> MagnetoViT:
    """CPU-size ViT for CIFAR-10 (32 px, patch 4): 6 layers, d 96, 3 heads, 10 classes."""
    return MagnetoViT(
        **_merge(dict(img_size=32, patch_size=4, num_classes=10, depth=6, dim=96, num_heads=3), kw)
    )


__all__ = [
    "REGISTRY",
    "ArchitectureError",
    "MagnetoBert",
    "MagnetoGPT",
    "MagnetoSeq2Seq",
    "MagnetoViT",
    "MaskedLMHead",
    "convert_timm_vit",
    "mask_tokens",
    "norm_from_torchscale_flags",
    "resolve_init",
    "to_timm_vit",
]
