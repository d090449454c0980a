"""Numerical parity with torchscale (Sub-LN / DeepNorm Encoder, Decoder, EncoderDecoder) and with
HF transformers' Kosmos-2 text decoder layer, after weight conversion; fp32, max abs diff < 1e-5."""

import warnings

import pytest
import torch

from vlcore.layers import DecoderBlock, convert_torchscale_state_dict, eager_attention
from magneto.convert import (
    convert_torchscale_decoder_lm,
    convert_torchscale_encoder,
    convert_torchscale_encoder_decoder,
)
from magneto.models import MagnetoBert, MagnetoGPT, MagnetoSeq2Seq
from magneto.models.trunk import build_stack

from magneto.testing import one_torch_thread  # noqa: F401  (autouse)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torchscale imports timm's deprecated path
    from torchscale.architecture.config import DecoderConfig, EncoderConfig, EncoderDecoderConfig
    from torchscale.architecture.decoder import Decoder
    from torchscale.architecture.encoder import Encoder
    from torchscale.architecture.encoder_decoder import EncoderDecoder
    from torchscale.component.embedding import PositionalEmbedding, TextEmbedding

pytestmark = pytest.mark.convert

V, D, H, FFN, B, T, DEPTH = 50, 32, 4, 128, 2, 7, 3
TOL = 1e-5


def _perturb(module: torch.nn.Module) -> None:
    # LayerNorms start at (1, 0) and biases at 0 in some inits: perturb them so a swapped
    # or missing norm / bias cannot go unnoticed
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in module.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _ts_decoder_lm(norm: str):
    args = DecoderConfig(
        decoder_layers=DEPTH, decoder_embed_dim=D, decoder_attention_heads=H, decoder_ffn_embed_dim=FFN,
        vocab_size=V, subln=norm == "subln", deepnorm=norm == "deepnorm", share_decoder_input_output_embed=True,
        decoder_normalize_before=norm in ("pre", "subln"),
    )
    ts = Decoder(args, embed_tokens=TextEmbedding(V, D), embed_positions=PositionalEmbedding(16 + 2, D))
    _perturb(ts)
    return ts.eval()


@pytest.mark.parametrize("norm", ["subln", "deepnorm"])
def test_decoder_lm_matches_torchscale_decoder(norm):
    torch.manual_seed(0)
    ts = _ts_decoder_lm(norm)
    ours = MagnetoGPT(vocab_size=V, max_seq_len=16, depth=DEPTH, dim=D, num_heads=H, norm=norm).eval()
    ours.load_state_dict(convert_torchscale_decoder_lm(ts.state_dict()), strict=True)
    ids = torch.randint(0, V, (B, T))
    with torch.no_grad():
        ref = ts(ids)[0]  # B, T, V
        out = ours(ids)
        with eager_attention():
            out_eager = ours(ids)
        # incremental decoding with the KV cache gives the same logits
        cache = ours.new_cache()
        inc = torch.cat([ours(ids[:, :3], cache=cache)] + [ours(ids[:, t : t + 1], cache=cache) for t in range(3, T)], 1)
    assert ref.shape == out.shape == (B, T, V)
    assert _diff(out, ref) < TOL and _diff(out_eager, ref) < TOL and _diff(inc, ref) < TOL


def test_decoder_lm_incremental_matches_torchscale_incremental_state():
    torch.manual_seed(0)
    ts = _ts_decoder_lm("subln")
    ours = MagnetoGPT(vocab_size=V, max_seq_len=16, depth=DEPTH, dim=D, num_heads=H).eval()
    ours.load_state_dict(convert_torchscale_decoder_lm(ts.state_dict()), strict=True)
    ids = torch.randint(0, V, (B, T))
    state: dict = {}
    cache = ours.new_cache()
    with torch.no_grad():
        for t in range(T):
            # torchscale takes the whole prefix and keeps only its last token once the state exists
            ref = ts(ids[:, : t + 1], incremental_state=state)[0][:, -1]
            out = ours(ids[:, t : t + 1], cache=cache)[:, -1]
            assert _diff(out, ref) < TOL, t


@pytest.mark.parametrize("norm", ["subln", "deepnorm"])
def test_encoder_matches_torchscale_encoder(norm):
    torch.manual_seed(0)
    args = EncoderConfig(
        encoder_layers=DEPTH, encoder_embed_dim=D, encoder_attention_heads=H, encoder_ffn_embed_dim=FFN,
        vocab_size=V, subln=norm == "subln", deepnorm=norm == "deepnorm", layernorm_embedding=True,
        no_output_layer=True,
    )
    ts = Encoder(args, embed_tokens=TextEmbedding(V, D), embed_positions=PositionalEmbedding(16 + 2, D))
    _perturb(ts)
    ts.eval()
    ours = MagnetoBert(vocab_size=V, max_seq_len=16, type_vocab_size=0, depth=DEPTH, dim=D, num_heads=H, norm=norm)
    ours.eval()
    sd = {**ours.state_dict(), **convert_torchscale_encoder(ts.state_dict())}
    sd["head.decoder.weight"] = sd["tok_embed.weight"]  # the MLM head is ours (tied to the embeddings)
    ours.load_state_dict(sd, strict=True)
    ids = torch.randint(0, V, (B, T))
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, -2:] = True
    with torch.no_grad():
        ref = ts(src_tokens=ids, encoder_padding_mask=pad, features_only=True)["encoder_out"]
        out = ours.forward_features(ids, padding_mask=pad)
    valid = ~pad  # torchscale zeroes padded inputs; only their own outputs differ
    assert _diff(out[valid], ref[valid]) < TOL
    assert isinstance(ours.encoder.norm, torch.nn.LayerNorm) == (norm == "subln")


@pytest.mark.parametrize("norm", ["subln", "deepnorm"])
def test_encoder_decoder_matches_torchscale(norm):
    torch.manual_seed(0)
    n_e, n_d = 2, 3
    args = EncoderDecoderConfig(
        encoder_layers=n_e, decoder_layers=n_d, encoder_embed_dim=D, decoder_embed_dim=D, encoder_attention_heads=H,
        decoder_attention_heads=H, encoder_ffn_embed_dim=FFN, decoder_ffn_embed_dim=FFN, vocab_size=V,
        subln=norm == "subln", deepnorm=norm == "deepnorm", share_all_embeddings=True,
    )
    emb = TextEmbedding(V, D)
    ts = EncoderDecoder(args, encoder_embed_tokens=emb, decoder_embed_tokens=emb)
    _perturb(ts)
    ts.eval()
    ours = MagnetoSeq2Seq(vocab_size=V, encoder_depth=n_e, decoder_depth=n_d, dim=D, num_heads=H, norm=norm).eval()
    ours.load_state_dict(convert_torchscale_encoder_decoder(ts.state_dict()), strict=True)
    assert ours.encoder.residual_alpha == pytest.approx(ts.encoder.layers[0].alpha)
    assert ours.decoder.residual_alpha == pytest.approx(ts.decoder.layers[0].alpha)
    x, y = torch.randn(B, 9, D), torch.randn(B, T, D)
    pad = torch.zeros(B, 9, dtype=torch.bool)
    pad[0, -3:] = True
    with torch.no_grad():
        enc = ts.encoder(src_tokens=None, token_embeddings=x, encoder_padding_mask=pad)
        ref = ts.decoder(prev_output_tokens=torch.zeros(B, T, dtype=torch.long), token_embeddings=y, encoder_out=enc)[0]
        mem = ours.encoder(x * (~pad)[..., None], key_padding_mask=pad)
        out = ours.head(ours.decoder(y, memory=mem, memory_key_padding_mask=pad))
        cache = ours.decoder.new_cache()
        steps = [ours.decoder(y[:, :2], memory=mem, memory_key_padding_mask=pad, cache=cache)]
        steps += [ours.decoder(y[:, t : t + 1], memory_key_padding_mask=pad, cache=cache) for t in range(2, T)]
        inc = ours.head(torch.cat(steps, 1))
    valid = ~pad
    assert _diff(mem[valid], enc["encoder_out"][valid]) < TOL
    assert _diff(out, ref) < TOL and _diff(inc, ref) < TOL


def test_deepnorm_deep_stacks_match_torchscale():
    # full 8-layer stacks: alpha = (2N)^(1/4) residual weighting at every sublayer
    torch.manual_seed(0)
    n = 8
    enc_args = EncoderConfig(encoder_layers=n, encoder_embed_dim=D, encoder_attention_heads=H,
                             encoder_ffn_embed_dim=FFN, deepnorm=True)
    dec_args = DecoderConfig(decoder_layers=n, decoder_embed_dim=D, decoder_attention_heads=H,
                             decoder_ffn_embed_dim=FFN, deepnorm=True, vocab_size=-1)
    x = torch.randn(B, T, D)
    for kind, ts in (("encoder", Encoder(enc_args)), ("decoder", Decoder(dec_args))):
        _perturb(ts)
        ts.eval()
        ours = build_stack(kind=kind, depth=n, dim=D, num_heads=H, mlp_ratio=FFN / D, norm="deepnorm").eval()
        ours.load_state_dict(convert_torchscale_state_dict(ts.state_dict()), strict=True)
        assert ours.residual_alpha == pytest.approx((2 * n) ** 0.25) == pytest.approx(ts.layers[0].alpha)
        with torch.no_grad():
            if kind == "encoder":
                ref = ts(src_tokens=None, token_embeddings=x)["encoder_out"]
            else:
                ref = ts(prev_output_tokens=torch.zeros(B, T, dtype=torch.long), token_embeddings=x,
                         features_only=True)[0]
            out = ours(x)
        assert _diff(out, ref) < TOL, kind


# --- HF transformers' Kosmos-2 text decoder layer (Sub-LN) -----------------------------------


def _kosmos2_block(cross: bool):
    from transformers import Kosmos2TextConfig
    from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2TextBlock

    cfg = Kosmos2TextConfig(
        vocab_size=V, embed_dim=D, layers=1, ffn_dim=FFN, attention_heads=H, dropout=0.0, attention_dropout=0.0,
        add_cross_attention=cross,
    )
    cfg._attn_implementation = "eager"
    hf = Kosmos2TextBlock(cfg, layer_idx=0)
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(0.0, 0.2) if p.ndim == 2 else p.normal_(1.0 if "norm" in n or "_ln" in n else 0.0, 0.2)
    ours = DecoderBlock(dim=D, num_heads=H, mlp_hidden_dim=FFN, norm_layout="subln", cross_attention=cross,
                        norm_eps=cfg.layer_norm_eps)
    ours.load_state_dict(convert_torchscale_state_dict(hf.state_dict()), strict=True)
    return cfg, hf.eval(), ours.eval()


def _causal(q: int, k: int) -> torch.Tensor:
    m = torch.full((q, k), torch.finfo(torch.float32).min).triu(k - q + 1)
    return m[None, None].expand(B, 1, q, k)


@pytest.mark.parametrize("cross", [False, True])
def test_kosmos2_text_block_matches_hf(cross):
    torch.manual_seed(0)
    cfg, hf, ours = _kosmos2_block(cross)
    x = torch.randn(B, T, D)
    mem = torch.randn(B, 5, D) if cross else None
    with torch.no_grad():
        ref = hf(x, attention_mask=_causal(T, T), encoder_hidden_states=mem)
        ref = ref[0] if isinstance(ref, tuple) else ref
        out = ours(x, mem, is_causal=True)
    assert _diff(out, ref) < TOL
    assert ours.cross_attn is None or not any("norm" in n for n, _ in ours.cross_attn.named_parameters())


def test_kosmos2_text_block_cached_decoding_matches_hf_dynamic_cache():
    from transformers import DynamicCache

    torch.manual_seed(0)
    cfg, hf, ours = _kosmos2_block(False)
    x = torch.randn(B, T, D)
    hf_cache = DynamicCache(config=cfg)
    from vlcore.layers import BlockCache

    cache = BlockCache()
    with torch.no_grad():
        full = ours(x, is_causal=True)
        for start, n in ((0, 3), (3, 1), (4, 1), (5, 2)):
            step = x[:, start : start + n]
            ref = hf(step, attention_mask=_causal(n, start + n), past_key_values=hf_cache)
            ref = ref[0] if isinstance(ref, tuple) else ref
            out = ours(step, is_causal=True, cache=cache)
            assert _diff(out, ref) < TOL
            assert _diff(out, full[:, start : start + n]) < TOL
