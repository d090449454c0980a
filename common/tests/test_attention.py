"""Attention: fused (SDPA) path == eager path == a from-scratch reference."""

import math

import pytest
import torch

from vlcore.layers import Attention, CrossAttention, eager_attention
import vlcore.layers.attention as attention_mod

pytestmark = pytest.mark.unit

B, H, DIM = 2, 4, 32
WINDOW = (3, 4)
N = WINDOW[0] * WINDOW[1] + 1


def _fused_and_eager(module, *args, **kwargs):
    module.eval()
    with torch.no_grad():
        fused = module(*args, **kwargs)
        with eager_attention():
            eager = module(*args, **kwargs)
    return fused, eager


def _attn(**kw) -> Attention:
    torch.manual_seed(0)
    m = Attention(dim=DIM, num_heads=H, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)  # non-trivial biases and relative position tables
    return m


@pytest.mark.parametrize("qkv_bias", ["qkv", "qv", "none"])
@pytest.mark.parametrize(
    "case", ["plain", "rel_pos", "rel_pos_batched", "causal", "causal_rel_pos", "padding", "bool_mask"]
)
def test_sdpa_equals_eager(qkv_bias, case):
    m = _attn(qkv_bias=qkv_bias, inner_norm=case == "plain", window_size=WINDOW if "rel_pos" in case else None)
    x = torch.randn(B, N, DIM)
    kw = {}
    if case == "rel_pos_batched":
        kw["rel_pos_bias"] = torch.randn(B, H, N, N)  # added to the module's own table
    if case.startswith("causal"):
        kw["is_causal"] = True
    if case == "padding":
        pad = torch.zeros(B, N, dtype=torch.bool)
        pad[1, -3:] = True
        kw["key_padding_mask"] = pad
    if case == "bool_mask":
        kw["attn_mask"] = (torch.rand(N, N) > 0.3) | torch.eye(N, dtype=torch.bool)
    fused, eager = _fused_and_eager(m, x, **kw)
    assert torch.isfinite(fused).all()
    assert (fused - eager).abs().max().item() < 1e-5


def test_module_flag_forces_eager(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    counting = lambda *a, **k: calls.append(1) or real(*a, **k)  # noqa: E731
    monkeypatch.setattr(attention_mod.F, "scaled_dot_product_attention", counting)
    m = _attn().eval()
    x = torch.randn(B, N, DIM)
    m(x)
    assert len(calls) == 1
    m.fused_attn = False
    m(x)
    with eager_attention():
        m.fused_attn = True
        m(x)
    assert len(calls) == 1
    m(x)
    assert len(calls) == 2  # the context restored the fused path


def test_eager_matches_reference_with_bias_and_causal_mask():
    torch.manual_seed(1)
    m = _attn(qkv_bias="qv", inner_norm=True, window_size=WINDOW).eval()
    x = torch.randn(B, N, DIM)
    with torch.no_grad(), eager_attention():
        out = m(x, is_causal=True)
        # reference written out: BEiT q/v biases, per-head softmax with bias and causal mask
        C = DIM
        w = m.qkv.weight
        q = x @ w[:C].T + m.q_bias
        k = x @ w[C : 2 * C].T
        v = x @ w[2 * C :].T + m.v_bias
        heads = []
        bias = m.rel_pos_bias()
        for h in range(H):
            sl = slice(h * C // H, (h + 1) * C // H)
            logits = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(C // H) + bias[h]
            logits = logits.masked_fill(torch.triu(torch.ones(N, N, dtype=torch.bool), 1), float("-inf"))
            heads.append(logits.softmax(-1) @ v[..., sl])
        merged = m.norm(torch.cat(heads, dim=-1))
        ref = merged @ m.proj.weight.T + m.proj.bias
    assert (out - ref).abs().max().item() < 1e-5


def test_qv_bias_has_no_key_bias():
    m = Attention(dim=DIM, num_heads=H, qkv_bias="qv")
    names = {n for n, _ in m.named_parameters()}
    assert {"q_bias", "v_bias", "qkv.weight"} <= names
    assert "qkv.bias" not in names and not any("k_bias" in n for n in names)
    with pytest.raises(ValueError):
        Attention(dim=DIM, num_heads=H, qkv_bias="kv")  # type: ignore[arg-type]


def test_cross_attention_sdpa_equals_eager_and_respects_padding():
    torch.manual_seed(0)
    m = CrossAttention(dim=DIM, num_heads=H, memory_dim=24)
    x = torch.randn(B, 5, DIM)
    mem = torch.randn(B, 7, 24)
    pad = torch.zeros(B, 7, dtype=torch.bool)
    pad[0, 4:] = True
    fused, eager = _fused_and_eager(m, x, mem, key_padding_mask=pad)
    assert fused.shape == (B, 5, DIM)
    assert (fused - eager).abs().max().item() < 1e-5
    # padded memory tokens must not matter
    mem2 = mem.clone()
    mem2[0, 4:] = torch.randn(3, 24) * 10
    with torch.no_grad():
        again = m(x, mem2, key_padding_mask=pad)
    assert (again - fused).abs().max().item() < 1e-5
    assert not any("norm" in n for n, _ in m.named_parameters())  # no inner LayerNorm


def test_causal_means_no_peeking():
    m = _attn().eval()
    x = torch.randn(1, N, DIM)
    y = x.clone()
    y[:, -1] += 5.0
    with torch.no_grad():
        a, b = m(x, is_causal=True), m(y, is_causal=True)
    assert (a[:, :-1] - b[:, :-1]).abs().max().item() < 1e-6
    assert (a[:, -1] - b[:, -1]).abs().max().item() > 1e-3


def test_rectangular_causal_is_aligned_at_the_end():
    # a query block appended after cached keys: query i sees keys up to i + (Nk - Nq)
    torch.manual_seed(0)
    q, k, v = torch.randn(1, H, 3, 8), torch.randn(1, H, 5, 8), torch.randn(1, H, 5, 8)
    fused = attention_mod.dot_product_attention(q, k, v, is_causal=True)
    with eager_attention():
        eager = attention_mod.dot_product_attention(q, k, v, is_causal=True)
    full = attention_mod.dot_product_attention(q, k, v)
    assert (fused - eager).abs().max().item() < 1e-5
    assert (fused[:, :, -1] - full[:, :, -1]).abs().max().item() < 1e-6  # last query sees every key
    assert (fused[:, :, 0] - full[:, :, 0]).abs().max().item() > 1e-4
