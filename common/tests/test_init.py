"""Initialisation gains: Magneto / DeepNet formulas and what torchscale applies."""

import math
import warnings

import pytest
import torch
from torch import nn

from vlcore.layers import (
    TransformerStack,
    apply_value_path_gain_,
    convert_torchscale_state_dict,
    deepnet_constants,
    layout_constants,
    magneto_gamma,
    rescale_residual_outputs_,
    trunc_normal_init_,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchscale.architecture.config import DecoderConfig, EncoderConfig, EncoderDecoderConfig
    from torchscale.architecture.decoder import Decoder, DecoderLayer
    from torchscale.architecture.encoder import Encoder, EncoderLayer

DIM, HEADS, FFN = 16, 2, 32
TS = dict(encoder_embed_dim=DIM, encoder_attention_heads=HEADS, encoder_ffn_embed_dim=FFN)
TS_DEC = dict(decoder_embed_dim=DIM, decoder_attention_heads=HEADS, decoder_ffn_embed_dim=FFN)


@pytest.mark.unit
@pytest.mark.parametrize("n", [1, 6, 12, 24, 48, 100])
def test_single_stack_formulas(n):
    for arch in ("encoder", "decoder"):
        assert magneto_gamma(arch, num_layers=n) == pytest.approx(math.log(2 * n) ** 0.5, rel=1e-12)
        alpha, beta = deepnet_constants(arch, num_layers=n)
        assert alpha == pytest.approx((2 * n) ** 0.25, rel=1e-12)
        assert beta == pytest.approx((8 * n) ** -0.25, rel=1e-12)


@pytest.mark.unit
@pytest.mark.parametrize("n_e,n_d", [(6, 6), (12, 12), (18, 18), (100, 100), (6, 18)])
def test_encoder_decoder_formulas(n_e, n_d):
    g_e, g_d = magneto_gamma("encoder_decoder", encoder_layers=n_e, decoder_layers=n_d)
    assert g_e == pytest.approx(math.sqrt(math.log(3 * n_d) * math.log(2 * n_e) / 3), rel=1e-12)
    assert g_d == pytest.approx(math.sqrt(math.log(3 * n_d)), rel=1e-12)
    (a_e, b_e), (a_d, b_d) = deepnet_constants("encoder_decoder", encoder_layers=n_e, decoder_layers=n_d)
    assert a_e == pytest.approx(0.81 * (n_e**4 * n_d) ** (1 / 16), rel=1e-12)
    # torchscale divides by (N_e^4 N_d)^(1/16) / 1.15; the DeepNet paper multiplies by 0.87 (N_e^4 N_d)^(-1/16)
    assert b_e == pytest.approx(1.15 * (n_e**4 * n_d) ** (-1 / 16), rel=1e-12)
    paper = deepnet_constants("encoder_decoder", encoder_layers=n_e, decoder_layers=n_d, convention="paper")
    assert paper[0][1] == pytest.approx(0.87 * (n_e**4 * n_d) ** (-1 / 16), rel=1e-12)
    assert paper[0][0] == a_e and paper[1] == (a_d, b_d)
    assert a_d == pytest.approx((3 * n_d) ** 0.25, rel=1e-12)
    assert b_d == pytest.approx((12 * n_d) ** -0.25, rel=1e-12)


@pytest.mark.unit
def test_published_values_and_layout_constants():
    # values quoted in the Magneto card (3 decimals)
    assert [round(magneto_gamma("encoder", num_layers=n), 3) for n in (6, 12, 24, 48)] == [1.576, 1.783, 1.968, 2.136]
    assert tuple(round(g, 3) for g in magneto_gamma("encoder_decoder", encoder_layers=12, decoder_layers=12)) == (
        1.948,
        1.893,
    )
    assert layout_constants("pre", arch="encoder", stack="encoder", num_layers=12) == (1.0, 1.0)
    assert layout_constants("subln", arch="encoder_decoder", stack="encoder", encoder_layers=6, decoder_layers=6) == (
        1.0,
        magneto_gamma("encoder_decoder", encoder_layers=6, decoder_layers=6)[0],
    )
    assert layout_constants("deepnorm", arch="decoder", stack="decoder", num_layers=8) == deepnet_constants(
        "decoder", num_layers=8
    )
    with pytest.raises(ValueError):
        magneto_gamma("encoder_decoder", num_layers=6)


def _raw_then_scaled(build_layers, build_stack, seed: int = 0):
    """torchscale layers as constructed (no gain) and the torchscale stack (gain applied),
    from the same random stream: the stack draws nothing before its layers."""
    torch.manual_seed(seed)
    raw = nn.ModuleDict({"layers": nn.ModuleList(build_layers())})
    torch.manual_seed(seed)
    scaled = build_stack()
    return convert_torchscale_state_dict(raw.state_dict()), convert_torchscale_state_dict(scaled.state_dict())


def _check_gain(raw_sd, scaled_sd, ours: TransformerStack, gain: float, include_cross: bool) -> None:
    ours.load_state_dict({**ours.state_dict(), **raw_sd}, strict=True)
    touched = apply_value_path_gain_(ours.blocks, gain, include_cross_attention=include_cross)
    assert touched > 0
    got = ours.state_dict()
    changed = 0
    for k, v in scaled_sd.items():
        assert torch.allclose(got[k], v, rtol=0, atol=1e-7), k
        changed += int(k in raw_sd and not torch.equal(raw_sd[k], v))
    assert changed > 0  # torchscale did scale something, and we match it


@pytest.mark.convert
@pytest.mark.parametrize("layout", ["subln", "deepnorm"])
def test_encoder_only_gain_matches_torchscale(layout):
    n = 3
    args = EncoderConfig(encoder_layers=n, subln=layout == "subln", deepnorm=layout == "deepnorm", **TS)
    raw, scaled = _raw_then_scaled(lambda: [EncoderLayer(args, depth=i) for i in range(n)], lambda: Encoder(args))
    ours = TransformerStack(depth=n, dim=DIM, num_heads=HEADS, mlp_ratio=FFN / DIM, norm_layout=layout, value_init=None)
    if layout == "subln":
        gain = magneto_gamma("encoder", num_layers=n)
    else:
        gain = deepnet_constants("encoder", num_layers=n)[1]
    assert ours.value_gain == pytest.approx(gain)
    _check_gain(raw, scaled, ours, gain, include_cross=False)


@pytest.mark.convert
@pytest.mark.parametrize("layout", ["subln", "deepnorm"])
def test_decoder_only_gain_matches_torchscale(layout):
    n = 4
    args = DecoderConfig(
        decoder_layers=n, vocab_size=-1, subln=layout == "subln", deepnorm=layout == "deepnorm", **TS_DEC
    )
    raw, scaled = _raw_then_scaled(lambda: [DecoderLayer(args, depth=i) for i in range(n)], lambda: Decoder(args))
    ours = TransformerStack(
        depth=n, dim=DIM, num_heads=HEADS, mlp_ratio=FFN / DIM, kind="decoder", norm_layout=layout, value_init=None
    )
    if layout == "subln":
        gain = magneto_gamma("decoder", num_layers=n)
    else:
        gain = deepnet_constants("decoder", num_layers=n)[1]
    _check_gain(raw, scaled, ours, gain, include_cross=False)


@pytest.mark.convert
@pytest.mark.parametrize("layout", ["subln", "deepnorm"])
def test_encoder_decoder_gains_match_torchscale(layout):
    n_e, n_d = 2, 3
    args = EncoderDecoderConfig(
        encoder_layers=n_e, decoder_layers=n_d, vocab_size=-1, subln=layout == "subln", deepnorm=layout == "deepnorm",
        **TS, **TS_DEC,
    )
    if layout == "subln":
        g_e, g_d = magneto_gamma("encoder_decoder", encoder_layers=n_e, decoder_layers=n_d)
    else:
        (_, g_e), (_, g_d) = deepnet_constants("encoder_decoder", encoder_layers=n_e, decoder_layers=n_d)
    kw = dict(dim=DIM, num_heads=HEADS, mlp_ratio=FFN / DIM, norm_layout=layout, value_init=None)
    # encoder side
    raw, scaled = _raw_then_scaled(
        lambda: [EncoderLayer(args, depth=i, is_encoder_decoder=True) for i in range(n_e)],
        lambda: Encoder(args, is_encoder_decoder=True),
    )
    enc = TransformerStack(depth=n_e, paired_depth=n_d, **kw)
    assert enc.value_gain == pytest.approx(g_e)
    _check_gain(raw, scaled, enc, g_e, include_cross=False)
    # decoder side: Magneto leaves cross-attention alone, torchscale's DeepNorm scales it
    raw, scaled = _raw_then_scaled(
        lambda: [DecoderLayer(args, depth=i, is_encoder_decoder=True) for i in range(n_d)],
        lambda: Decoder(args, is_encoder_decoder=True),
    )
    dec = TransformerStack(depth=n_d, paired_depth=n_e, kind="decoder", **kw)
    assert dec.value_gain == pytest.approx(g_d)
    _check_gain(raw, scaled, dec, g_d, include_cross=layout == "deepnorm")
    cross_v = "blocks.0.cross_attn.kv.weight"
    assert torch.equal(raw[cross_v], scaled[cross_v]) == (layout == "subln")


@pytest.mark.unit
def test_stack_applies_gain_on_value_path_only():
    kw = dict(depth=4, dim=DIM, num_heads=HEADS, norm_layout="subln", qkv_bias="qkv")
    torch.manual_seed(0)
    plain = TransformerStack(value_init=None, **kw).state_dict()
    torch.manual_seed(0)
    scaled = TransformerStack(value_init="scale", **kw).state_dict()
    g = magneto_gamma("encoder", num_layers=4)
    for k, v in plain.items():
        if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias"):
            assert torch.equal(scaled[k][: 2 * DIM], v[: 2 * DIM])  # W_Q, W_K untouched
            assert torch.allclose(scaled[k][2 * DIM :], g * v[2 * DIM :])
        elif any(s in k for s in ("attn.proj.", "mlp.fc1.", "mlp.fc2.")):
            assert torch.allclose(scaled[k], g * v)
        else:
            assert torch.equal(scaled[k], v), k  # norms untouched


@pytest.mark.unit
def test_xavier_normal_base():
    torch.manual_seed(0)
    dim = 128
    stack = TransformerStack(
        depth=2, dim=dim, num_heads=4, norm_layout="subln", qkv_bias="qv", value_init="xavier_normal"
    )
    g = magneto_gamma("encoder", num_layers=2)
    blk = stack.blocks[0]
    w = blk.attn.qkv.weight
    xavier = math.sqrt(2.0 / (dim + dim))
    assert w[:dim].std().item() == pytest.approx(xavier, rel=0.05)  # W_Q: gain 1
    assert w[2 * dim :].std().item() == pytest.approx(g * xavier, rel=0.05)  # W_V: gain gamma
    assert blk.mlp.fc1.weight.std().item() == pytest.approx(g * math.sqrt(2.0 / (dim + 4 * dim)), rel=0.05)
    assert blk.attn.v_bias.abs().sum() == 0 and blk.mlp.fc2.bias.abs().sum() == 0


@pytest.mark.unit
def test_beit_trunc_normal_and_depth_rescale():
    torch.manual_seed(0)
    stack = TransformerStack(depth=3, dim=64, num_heads=4, value_init=None)
    trunc_normal_init_(stack, std=0.02, cutoff=1.0)
    w = stack.blocks[0].mlp.fc1.weight
    assert w.abs().max().item() <= 0.02 + 1e-7 and w.std().item() < 0.02
    assert stack.blocks[0].mlp.fc1.bias.abs().sum() == 0
    before = [b.attn.proj.weight.clone() for b in stack.blocks]
    fc2_before = [b.mlp.fc2.weight.clone() for b in stack.blocks]
    rescale_residual_outputs_(stack.blocks)
    for i, blk in enumerate(stack.blocks, start=1):
        assert torch.allclose(blk.attn.proj.weight * math.sqrt(2 * i), before[i - 1])
        assert torch.allclose(blk.mlp.fc2.weight * math.sqrt(2 * i), fc2_before[i - 1])
