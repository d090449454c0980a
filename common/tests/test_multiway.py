"""Multiway experts: routing by split position, gradients, parity with torchscale BEiT-3 layers."""

import math
import warnings

import pytest
import torch
from torch import nn

from vlcore.layers import (
    ALL_A,
    ALL_B,
    EncoderBlock,
    MultiwayNetwork,
    TransformerStack,
    convert_torchscale_state_dict,
    multiway_split,
    set_split_position,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchscale.architecture.config import EncoderConfig
    from torchscale.architecture.encoder import Encoder

DIM, HEADS = 16, 2


def _ffn() -> nn.Module:
    return nn.Sequential(nn.Linear(DIM, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, DIM))


@pytest.mark.unit
@pytest.mark.parametrize("split", [1, 3, 5])
def test_tokens_before_split_use_expert_a(split):
    torch.manual_seed(0)
    mw = MultiwayNetwork(_ffn())
    x = torch.randn(2, 6, DIM)
    set_split_position(mw, split)
    out = mw(x)
    with torch.no_grad():
        ref = torch.cat((mw.A(x[:, :split]), mw.B(x[:, split:])), dim=1)
    assert torch.allclose(out, ref, atol=1e-6)
    out.square().sum().backward()
    for name, p in mw.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.unit
def test_whole_sequence_routing_and_independent_experts():
    torch.manual_seed(0)
    mw = MultiwayNetwork(_ffn())
    # B is re-sampled, not a copy of A (torchscale); reinit_b=False keeps the copy
    assert not torch.equal(mw.A[0].weight, mw.B[0].weight)
    copy = MultiwayNetwork(nn.Linear(4, 4), reinit_b=False)
    assert torch.equal(copy.A.weight, copy.B.weight)
    x = torch.randn(2, 5, DIM)
    with torch.no_grad(), multiway_split(mw, ALL_B):
        assert torch.allclose(mw(x), mw.B(x))
    assert mw.split_position == ALL_A  # the context restores image-only routing
    with torch.no_grad():
        assert torch.allclose(mw(x), mw.A(x))
        set_split_position(mw, 5)  # split at the end: all A
        assert torch.allclose(mw(x), mw.A(x))
    with pytest.raises(ValueError):
        set_split_position(mw, -2)


@pytest.mark.convert
def test_decoupled_block_matches_torchscale_multiway_layer():
    torch.manual_seed(0)
    args = EncoderConfig(
        encoder_embed_dim=DIM, encoder_attention_heads=HEADS, encoder_ffn_embed_dim=4 * DIM, encoder_layers=2,
        multiway=True, subln=True,
    )
    ts = Encoder(args)
    with torch.no_grad():  # LayerNorms start identical in A and B; make them differ
        for m in ts.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    ours = TransformerStack(
        depth=2, dim=DIM, num_heads=HEADS, norm_layout="subln", multiway="decoupled", value_init=None
    )
    ours.load_state_dict(convert_torchscale_state_dict(ts.state_dict()), strict=True)
    ts.eval()
    ours.eval()
    x = torch.randn(2, 9, DIM)
    for split in (ALL_A, ALL_B, 4):
        with torch.no_grad():
            ref = ts(src_tokens=None, token_embeddings=x, multiway_split_position=split)["encoder_out"]
            out = ours(x, split_position=split)
        assert (out - ref).abs().max().item() < 1e-5, split


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["decoupled", "shared_attention"])
def test_multiway_block_gradients_reach_both_experts(kind):
    torch.manual_seed(0)
    blk = EncoderBlock(dim=DIM, num_heads=HEADS, norm_layout="subln", multiway=kind, init_values=0.1)
    names = [n for n, _ in blk.named_parameters()]
    assert any(".A." in n for n in names) and any(".B." in n for n in names)
    assert ("attn.qkv.A.weight" in names) == (kind == "decoupled")
    assert ("attn.qkv.weight" in names) == (kind == "shared_attention")
    x = torch.randn(2, 7, DIM)
    out = blk(x, split_position=3)
    out.square().mean().backward()
    missing = [n for n, p in blk.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    # image-only input leaves the language expert without gradient
    blk.zero_grad(set_to_none=True)
    blk(x, split_position=ALL_A).square().mean().backward()
    assert all(p.grad is None for n, p in blk.named_parameters() if ".B." in n)


@pytest.mark.unit
def test_magneto_gain_scales_both_experts():
    kw = dict(depth=3, dim=DIM, num_heads=HEADS, norm_layout="subln", multiway="decoupled")
    torch.manual_seed(0)
    plain = TransformerStack(value_init=None, **kw).state_dict()
    torch.manual_seed(0)
    scaled = TransformerStack(value_init="scale", **kw).state_dict()
    g = math.sqrt(math.log(2 * 3))
    for expert in "AB":
        k = f"blocks.1.mlp.{expert}.fc2.weight"
        assert torch.allclose(scaled[k], g * plain[k])
        k = f"blocks.1.attn.qkv.{expert}.weight"
        assert torch.allclose(scaled[k][2 * DIM :], g * plain[k][2 * DIM :])
        assert torch.equal(scaled[k][: 2 * DIM], plain[k][: 2 * DIM])
