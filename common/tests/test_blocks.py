"""Blocks: parity with torchscale's Sub-LN / DeepNorm layers, layouts, gradients."""

import warnings

import pytest
import torch

from vlcore.layers import (
    DecoderBlock,
    EncoderBlock,
    TransformerStack,
    convert_torchscale_state_dict,
    deepnet_constants,
    eager_attention,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torchscale imports timm's deprecated path
    from torchscale.architecture.config import DecoderConfig, EncoderConfig, EncoderDecoderConfig
    from torchscale.architecture.decoder import Decoder, DecoderLayer
    from torchscale.architecture.encoder import Encoder, EncoderLayer

DIM, HEADS, FFN, B, T = 32, 4, 64, 2, 7
TS = dict(encoder_embed_dim=DIM, encoder_attention_heads=HEADS, encoder_ffn_embed_dim=FFN)
TS_DEC = dict(decoder_embed_dim=DIM, decoder_attention_heads=HEADS, decoder_ffn_embed_dim=FFN)
LAYOUTS = ["pre", "post", "deepnorm", "subln"]


def _randomise_norms(module: torch.nn.Module) -> None:
    # LayerNorms start at (1, 0); perturb them so a swapped norm cannot go unnoticed
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


def _copy_from_torchscale(ts: torch.nn.Module, ours: torch.nn.Module) -> None:
    _randomise_norms(ts)
    ours.load_state_dict(convert_torchscale_state_dict(ts.state_dict()), strict=True)
    ts.eval()
    ours.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.convert
def test_subln_encoder_layer_matches_torchscale():
    torch.manual_seed(0)
    args = EncoderConfig(encoder_layers=4, subln=True, **TS)
    ts = EncoderLayer(args, depth=0)
    ours = EncoderBlock(dim=DIM, num_heads=HEADS, mlp_hidden_dim=FFN, norm_layout="subln", norm_eps=args.layernorm_eps)
    _copy_from_torchscale(ts, ours)
    x = torch.randn(B, T, DIM)
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, -2:] = True
    with torch.no_grad():
        ref, _ = ts(x, encoder_padding_mask=pad)
        out = ours(x, key_padding_mask=pad)
        with eager_attention():
            out_eager = ours(x, key_padding_mask=pad)
    assert _max_diff(out, ref) < 1e-5
    assert _max_diff(out_eager, ref) < 1e-5


@pytest.mark.convert
def test_deepnorm_encoder_layer_matches_torchscale():
    torch.manual_seed(0)
    n_layers = 6
    args = EncoderConfig(encoder_layers=n_layers, deepnorm=True, **TS)
    ts = EncoderLayer(args, depth=0)
    alpha, _ = deepnet_constants("encoder", num_layers=n_layers)
    assert alpha == pytest.approx(ts.alpha, rel=1e-12)
    ours = EncoderBlock(
        dim=DIM, num_heads=HEADS, mlp_hidden_dim=FFN, norm_layout="deepnorm", residual_alpha=alpha, norm_eps=1e-5
    )
    _copy_from_torchscale(ts, ours)
    x = torch.randn(B, T, DIM)
    with torch.no_grad():
        ref, _ = ts(x, encoder_padding_mask=None)
        out = ours(x)
    assert _max_diff(out, ref) < 1e-5


@pytest.mark.convert
@pytest.mark.parametrize("layout", ["subln", "deepnorm"])
def test_encoder_decoder_layer_with_cross_attention_matches_torchscale(layout):
    torch.manual_seed(0)
    args = EncoderDecoderConfig(
        encoder_layers=3, decoder_layers=5, subln=layout == "subln", deepnorm=layout == "deepnorm", **TS, **TS_DEC
    )
    ts = DecoderLayer(args, depth=0, is_encoder_decoder=True)
    (_, _), (alpha, _) = deepnet_constants("encoder_decoder", encoder_layers=3, decoder_layers=5)
    alpha = alpha if layout == "deepnorm" else 1.0
    assert alpha == pytest.approx(ts.alpha, rel=1e-12)
    ours = DecoderBlock(
        dim=DIM, num_heads=HEADS, mlp_hidden_dim=FFN, norm_layout=layout, residual_alpha=alpha, cross_attention=True
    )
    _copy_from_torchscale(ts, ours)
    x, mem = torch.randn(B, T, DIM), torch.randn(B, 9, DIM)
    mem_pad = torch.zeros(B, 9, dtype=torch.bool)
    mem_pad[0, -4:] = True
    causal = torch.triu(torch.full((T, T), float("-inf")), 1)
    with torch.no_grad():
        ref = ts(x, mem, mem_pad, None, self_attn_mask=causal)[0]
        out = ours(x, mem, is_causal=True, memory_key_padding_mask=mem_pad)
    assert _max_diff(out, ref) < 1e-5
    assert ours.cross_attn is not None and not any("norm" in n for n, _ in ours.cross_attn.named_parameters())


@pytest.mark.convert
def test_subln_encoder_stack_matches_torchscale_encoder():
    torch.manual_seed(0)
    args = EncoderConfig(encoder_layers=3, subln=True, **TS)
    ts = Encoder(args)
    ours = TransformerStack(
        depth=3, dim=DIM, num_heads=HEADS, mlp_ratio=FFN / DIM, norm_layout="subln", value_init=None
    )
    _copy_from_torchscale(ts, ours)
    x = torch.randn(B, T, DIM)
    with torch.no_grad():
        ref = ts(src_tokens=None, token_embeddings=x)["encoder_out"]
        out = ours(x)
    assert isinstance(ours.norm, torch.nn.LayerNorm)
    assert _max_diff(out, ref) < 1e-5


@pytest.mark.convert
def test_subln_decoder_stack_matches_torchscale_decoder():
    torch.manual_seed(0)
    args = DecoderConfig(decoder_layers=2, subln=True, vocab_size=-1, **TS_DEC)
    ts = Decoder(args)
    ours = TransformerStack(
        depth=2, dim=DIM, num_heads=HEADS, mlp_ratio=FFN / DIM, kind="decoder", norm_layout="subln", value_init=None
    )
    _copy_from_torchscale(ts, ours)
    x = torch.randn(B, T, DIM)
    with torch.no_grad():
        ref = ts(prev_output_tokens=torch.zeros(B, T, dtype=torch.long), token_embeddings=x, features_only=True)[0]
        out = ours(x)  # decoders are causal by default
    assert _max_diff(out, ref) < 1e-5


def _block(layout: str, **kw) -> EncoderBlock:
    alpha = deepnet_constants("encoder", num_layers=4)[0] if layout == "deepnorm" else 1.0
    return EncoderBlock(dim=DIM, num_heads=HEADS, norm_layout=layout, residual_alpha=alpha, **kw)


@pytest.mark.unit
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradients_reach_every_parameter(layout):
    torch.manual_seed(0)
    blocks = [
        _block(layout, qkv_bias="qv", init_values=0.1, window_size=(2, 3), drop_path=0.1),
        DecoderBlock(
            dim=DIM,
            num_heads=HEADS,
            norm_layout=layout,
            residual_alpha=1.5 if layout == "deepnorm" else 1.0,
            init_values=0.1,
            cross_attention=True,
            memory_dim=16,
        ),
    ]
    x = torch.randn(B, 7, DIM)
    outs = [blocks[0](x), blocks[1](x, torch.randn(B, 5, 16))]
    for blk, out in zip(blocks, outs):
        assert out.shape == x.shape and torch.isfinite(out).all()
        (out.square().mean() + out.mean()).backward()
        missing = [n for n, p in blk.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not missing, f"{layout}: no gradient for {missing}"


@pytest.mark.unit
def test_layout_structure():
    sub, pre, post = _block("subln"), _block("pre"), _block("post")
    assert isinstance(sub.attn.norm, torch.nn.LayerNorm) and isinstance(sub.mlp.norm, torch.nn.LayerNorm)
    assert sub.mlp.norm.normalized_shape == (4 * DIM,)  # LN on the FFN hidden activation
    assert isinstance(pre.attn.norm, torch.nn.Identity) and isinstance(pre.mlp.norm, torch.nn.Identity)
    n_sub = sum(p.numel() for p in sub.parameters())
    n_pre = sum(p.numel() for p in pre.parameters())
    assert n_sub - n_pre == 2 * DIM + 2 * 4 * DIM  # Magneto's extra 10d per layer
    x = torch.randn(B, 5, DIM) * 3 + 1
    with torch.no_grad():
        y = post(x)
    # Post-LN: every output token is a LayerNorm output (weight 1, bias 0 at init)
    assert y.mean(-1).abs().max() < 1e-5
    assert (y.var(-1, unbiased=False) - 1).abs().max() < 1e-3
    with pytest.raises(ValueError):
        EncoderBlock(dim=DIM, num_heads=HEADS, norm_layout="pre", residual_alpha=2.0)  # alpha is DeepNorm only
    with pytest.raises(ValueError):
        _block("sandwich")


@pytest.mark.unit
def test_layer_scale_and_drop_path():
    torch.manual_seed(0)
    blk = _block("pre", init_values=1e-5, drop_path=0.5)
    assert torch.equal(blk.gamma_1, torch.full((DIM,), 1e-5))
    x = torch.randn(B, 5, DIM)
    blk.eval()
    with torch.no_grad():
        y = blk(x)
    assert (y - x).abs().max() < 1e-3  # tiny layer scale: the block starts close to identity
    blk.train()
    with torch.no_grad():
        blk.gamma_1.fill_(1.0)
        blk.gamma_2.fill_(1.0)
        ys = torch.stack([blk(x) for _ in range(20)])
    # drop path is per sample: some draws leave a sample untouched, so outputs vary across draws
    assert ys.var(0).max() > 0


@pytest.mark.unit
def test_stack_shared_rel_pos_and_drop_path_schedule():
    torch.manual_seed(0)
    stack = TransformerStack(
        depth=3, dim=DIM, num_heads=HEADS, qkv_bias="qv", window_size=(2, 2), rel_pos="shared", drop_path_rate=0.2,
        init_values=0.1, norm_eps=1e-6,
    )
    assert stack.rel_pos_bias.relative_position_bias_table.shape == (3 * 3 + 3, HEADS)
    assert [getattr(b.drop_path1, "drop_prob", 0.0) for b in stack.blocks] == pytest.approx([0.0, 0.1, 0.2])
    with torch.no_grad():
        stack.rel_pos_bias.relative_position_bias_table.normal_()
    stack.eval()
    x = torch.randn(B, 5, DIM)
    with torch.no_grad():
        out = stack(x)
        bias = stack.rel_pos_bias()
        manual = x
        for blk in stack.blocks:
            manual = blk(manual, rel_pos_bias=bias)
        manual = stack.norm(manual)
    assert _max_diff(out, manual) < 1e-6
    per_layer = TransformerStack(depth=2, dim=DIM, num_heads=HEADS, window_size=(2, 2), rel_pos="per_layer")
    keys = per_layer.state_dict().keys()
    assert "blocks.1.attn.rel_pos_bias.relative_position_bias_table" in keys
    assert not any(k.startswith("rel_pos_bias") for k in keys)
