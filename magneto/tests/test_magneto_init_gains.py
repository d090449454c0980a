"""The depth gains and the set of weights they scale, against the paper card (torchscale rule).

Card, section 3: after construction, every parameter whose torchscale name contains ``fc1``,
``fc2``, ``out_proj`` or ``v_proj`` (biases included) is multiplied by gamma; ``q_proj`` /
``k_proj`` and the norms are not; a Magneto decoder skips ``encoder_attn`` (cross-attention).
gamma = sqrt(ln 2N) (encoder-only / decoder-only); enc-dec: gamma_e = sqrt(ln(3 N_d) ln(2 N_e) / 3),
gamma_d = sqrt(ln 3 N_d). DeepNorm divides the same weights by (8N)^(1/4) (enc-dec decoder:
(12 N_d)^(1/4), cross-attention included) and up-weights the residual by alpha.
"""

import math

import pytest
import torch

from magneto.models import MagnetoBert, MagnetoGPT, MagnetoSeq2Seq

from magneto.testing import one_torch_thread  # noqa: F401  (autouse)

pytestmark = pytest.mark.unit

W, HEADS = 8, 2  # thin: the rule, not the width, is under test


def _torchscale_pieces(name: str, t: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Our parameter -> (torchscale name, tensor slice) pieces (fused q/k/v split back)."""
    rename = [
        ("attn.proj.", "self_attn.out_proj."), ("attn.norm.", "self_attn.inner_attn_ln."),
        ("cross_attn.proj.", "encoder_attn.out_proj."), ("cross_attn.q.", "encoder_attn.q_proj."),
        ("mlp.fc1.", "ffn.fc1."), ("mlp.fc2.", "ffn.fc2."), ("mlp.norm.", "ffn.ffn_layernorm."),
        ("norm1.", "self_attn_layer_norm."), ("norm2.", "final_layer_norm."),
        ("norm_cross.", "encoder_attn_layer_norm."),
    ]
    if ".attn.qkv." in name:
        q, k, v = t.chunk(3, dim=0)
        base = name.replace("attn.qkv.", "self_attn.{}_proj.")
        return [(base.format("q"), q), (base.format("k"), k), (base.format("v"), v)]
    if ".cross_attn.kv." in name:
        k, v = t.chunk(2, dim=0)
        base = name.replace("cross_attn.kv.", "encoder_attn.{}_proj.")
        return [(base.format("k"), k), (base.format("v"), v)]
    for ours, theirs in rename:
        if "." + ours in "." + name.split("blocks.", 1)[-1]:
            return [(name.replace(ours, theirs), t)]
    return [(name, t)]


def _card_scales(ts_name: str, *, skip_cross: bool) -> bool:
    if skip_cross and "encoder_attn" in ts_name:
        return False
    return any(s in ts_name for s in ("fc1", "fc2", "out_proj", "v_proj"))


def _check_scaled_set(plain: torch.nn.Module, scaled: torch.nn.Module, stack: str, gain: float, skip_cross: bool):
    sd_p, sd_s = plain.state_dict(), scaled.state_dict()
    n_scaled = n_kept = 0
    for name in sd_p:
        pieces_p = _torchscale_pieces(name, sd_p[name])
        pieces_s = _torchscale_pieces(name, sd_s[name])
        for (ts_name, a), (_, b) in zip(pieces_p, pieces_s):
            if name.startswith(stack + ".blocks.") and _card_scales(ts_name, skip_cross=skip_cross):
                assert torch.allclose(b, a * gain, rtol=1e-6, atol=0), ts_name
                n_scaled += 1
            elif name.startswith(stack + "."):
                assert torch.equal(a, b), f"{ts_name} must not be scaled"
                n_kept += 1
    return n_scaled, n_kept


def _pair(cls, seed=0, **kw):
    # same seed, same draws: the gain multiplies in place (torchscale's ``scale`` base), so the only
    # difference between the two models is the gain
    torch.manual_seed(seed)
    plain = cls(init="none", value_init="scale", **kw)
    torch.manual_seed(seed)
    scaled = cls(init="auto", value_init="scale", **kw)
    return plain, scaled


@pytest.mark.parametrize("n", [6, 12, 24, 48])
@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_single_stack_gamma_and_scaled_weights(arch, n):
    gamma = math.sqrt(math.log(2 * n))
    assert round(gamma, 3) == {6: 1.576, 12: 1.783, 24: 1.968, 48: 2.136}[n]  # card values
    if arch == "encoder":
        plain, scaled = _pair(MagnetoBert, vocab_size=11, max_seq_len=4, depth=n, dim=W, num_heads=HEADS)
    else:
        plain, scaled = _pair(MagnetoGPT, vocab_size=11, max_seq_len=4, depth=n, dim=W, num_heads=HEADS)
    assert scaled.gain == pytest.approx(gamma, rel=1e-12) and plain.gain == 1.0
    n_scaled, n_kept = _check_scaled_set(plain, scaled, arch, gamma, skip_cross=True)
    # per block: W_V and b_V, W_O, b_O, W_1, b_1, W_2, b_2
    assert n_scaled == 8 * n
    assert n_kept == 12 * n + 2  # W_Q, W_K and their biases, 4 LayerNorms x 2 per block, the final norm
    # nothing outside the stack is touched
    for k, v in plain.state_dict().items():
        if not k.startswith(arch + "."):
            assert torch.equal(v, scaled.state_dict()[k]), k


@pytest.mark.parametrize("n_e,n_d", [(6, 6), (12, 12), (18, 18), (6, 18)])
def test_encoder_decoder_gammas_and_scaled_weights(n_e, n_d):
    g_e = math.sqrt(math.log(3 * n_d) * math.log(2 * n_e) / 3)
    g_d = math.sqrt(math.log(3 * n_d))
    card = {(6, 6): (1.547, 1.700), (12, 12): (1.948, 1.893), (18, 18): (2.183, 1.997)}
    if (n_e, n_d) in card:
        assert (round(g_e, 3), round(g_d, 3)) == card[(n_e, n_d)]
    plain, scaled = _pair(
        MagnetoSeq2Seq, vocab_size=11, max_seq_len=4, encoder_depth=n_e, decoder_depth=n_d, dim=W, num_heads=HEADS
    )
    assert scaled.gain_encoder == pytest.approx(g_e, rel=1e-12)
    assert scaled.gain_decoder == pytest.approx(g_d, rel=1e-12)
    s_e, _ = _check_scaled_set(plain, scaled, "encoder", g_e, skip_cross=True)
    s_d, kept_d = _check_scaled_set(plain, scaled, "decoder", g_d, skip_cross=True)
    assert s_e == 8 * n_e and s_d == 8 * n_d
    # cross-attention: q, k, v, out projections (+ biases) and its norm stay as constructed
    assert kept_d == (12 + 10) * n_d + 2


@pytest.mark.parametrize("n", [6, 48])
def test_deepnorm_beta_alpha_and_scaled_weights(n):
    plain, scaled = _pair(MagnetoGPT, vocab_size=11, max_seq_len=4, depth=n, dim=W, num_heads=HEADS, norm="deepnorm")
    beta, alpha = (8 * n) ** -0.25, (2 * n) ** 0.25
    assert scaled.gain == pytest.approx(beta, rel=1e-12)
    assert all(b.residual_alpha == pytest.approx(alpha, rel=1e-12) for b in scaled.decoder.blocks)
    n_scaled, _ = _check_scaled_set(plain, scaled, "decoder", beta, skip_cross=True)
    assert n_scaled == 8 * n
    # enc-dec DeepNorm decoder: (12 N_d)^(-1/4), cross-attention's W_V / W_O scaled too (torchscale)
    plain, scaled = _pair(MagnetoSeq2Seq, vocab_size=11, max_seq_len=4, encoder_depth=n, decoder_depth=n, dim=W,
                          num_heads=HEADS, norm="deepnorm")
    beta_d = (12 * n) ** -0.25
    assert scaled.gain_decoder == pytest.approx(beta_d, rel=1e-12)
    s_d, _ = _check_scaled_set(plain, scaled, "decoder", beta_d, skip_cross=False)
    assert s_d == 12 * n


def test_xavier_normal_base_follows_the_paper_pseudocode():
    # W_V, W_O, W_1, W_2 ~ Xavier-normal(gain gamma); W_Q, W_K ~ Xavier-normal(gain 1); biases 0
    torch.manual_seed(0)
    n, d = 12, 64
    m = MagnetoGPT(vocab_size=11, max_seq_len=4, depth=n, dim=d, num_heads=4, value_init="xavier_normal")
    gamma = math.sqrt(math.log(2 * n))
    q = torch.cat([b.attn.qkv.weight[:d].flatten() for b in m.decoder.blocks])
    v = torch.cat([b.attn.qkv.weight[2 * d :].flatten() for b in m.decoder.blocks])
    fc1 = torch.cat([b.mlp.fc1.weight.flatten() for b in m.decoder.blocks])
    xavier = lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out))  # noqa: E731
    assert q.std().item() == pytest.approx(xavier(d, d), rel=0.03)
    assert v.std().item() == pytest.approx(gamma * xavier(d, d), rel=0.03)
    assert fc1.std().item() == pytest.approx(gamma * xavier(d, 4 * d), rel=0.03)
    with torch.no_grad():
        assert all(float(b.attn.qkv.bias.abs().max()) == 0.0 and float(b.mlp.fc2.bias.abs().max()) == 0.0
                   for b in m.decoder.blocks)
