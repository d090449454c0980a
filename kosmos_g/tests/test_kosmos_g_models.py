import json
import subprocess
import sys

import pytest
import torch

from kosmos_g.models import REGISTRY
from kosmos_g.models.aligner import AlignerConfig, AlignerNet, aligner_losses, alignment_loss, reconstruction_loss

CARD = {  # paper card §2.3
    "alignernet_m": 225_461_760,
    "alignernet_m_n": 225_461_760 + 250_569_728,
    "sd15_unet": 859_520_964,
    "sd15_vae": 83_653_863,
    "sd15_text_encoder": 123_060_480,
    "kosmos_g_mllm": 303_179_776 + 19_015_680 + 1_340_180_480,
    "kosmos_g_1.9b": 303_179_776 + 19_015_680 + 1_340_180_480 + 225_461_760,
}


@pytest.mark.config
def test_models_cli_lists_the_card_parameter_counts():
    out = subprocess.run([sys.executable, "-m", "kosmos_g.models", "--json"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(CARD) <= set(rows)
    for name, n in CARD.items():
        assert rows[name]["params"] == n, name
        assert rows[name]["matches_paper"], name


@pytest.mark.unit
def test_alignernet_m_shapes_and_pad_invariance():
    torch.manual_seed(0)
    cfg = AlignerConfig(mllm_dim=12, dim=16, num_heads=2, encoder_layers=2, decoder_layers=2, num_queries=5,
                        max_positions=32)
    a = AlignerNet(cfg).eval()
    s = torch.randn(2, 7, 12)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True
    c = a(s, pad)
    assert c.shape == (2, 5, 16)
    # changing the states at padded positions does not change M's output
    s2 = s.clone()
    s2[1, 4:] = torch.randn(3, 12)
    torch.testing.assert_close(a(s2, pad), c)
    # the unpadded sample equals the same sample run alone, truncated
    torch.testing.assert_close(a(s[1:, :4]), c[1:], atol=1e-5, rtol=1e-5)
    rec = a.reconstruct(c, 7, pad)
    assert rec.shape == (2, 7, 12)


@pytest.mark.unit
def test_alignment_and_reconstruction_losses_match_the_card_formulas():
    g = torch.Generator().manual_seed(1)
    c = torch.randn(2, 3, 4, generator=g)
    t = torch.randn(2, 3, 4, generator=g)
    # L_mse = mean over B x 77 x 768 (here 2 x 3 x 4) of squared differences
    hand = sum((c[b, i, j] - t[b, i, j]) ** 2 for b in range(2) for i in range(3) for j in range(4)) / 24
    assert float(alignment_loss(c, t)) == pytest.approx(float(hand), rel=1e-6)
    s = torch.randn(2, 5, 6, generator=g)
    r = torch.randn(2, 5, 6, generator=g)
    # L_rec = mean over B x L_s x 2048 (here 2 x 5 x 6) of squared differences, x 77 / L_s (here 3 / 5)
    hand = sum((r[b, i, j] - s[b, i, j]) ** 2 for b in range(2) for i in range(5) for j in range(6)) / 60 * 3 / 5
    assert float(reconstruction_loss(r, s, num_queries=3)) == pytest.approx(float(hand), rel=1e-6)
    # with pads only the real positions count
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[0, 3:] = True
    keep = [(0, i) for i in range(3)] + [(1, i) for i in range(5)]
    hand = sum(((r[b, i] - s[b, i]) ** 2).mean() for b, i in keep) / len(keep) * 3 / 5
    assert float(reconstruction_loss(r, s, 3, pad)) == pytest.approx(float(hand), rel=1e-6)


@pytest.mark.unit
def test_stage2_losses_train_the_aligner_only():
    torch.manual_seed(0)
    cfg = AlignerConfig(mllm_dim=8, dim=16, num_heads=2, encoder_layers=1, decoder_layers=1, num_queries=4,
                        max_positions=16)
    a = AlignerNet(cfg)
    mllm_states = torch.randn(3, 6, 8, requires_grad=True)
    target = torch.randn(3, 4, 16)
    out = aligner_losses(a, mllm_states, target)
    assert set(out) == {"mse", "rec", "loss"}
    torch.testing.assert_close(out["loss"], out["mse"] + out["rec"])
    out["loss"].backward()
    assert mllm_states.grad is None  # the MLLM is frozen in stage 2
    assert a.encoder.query.grad is not None and a.decoder.query.grad is not None
    opt = torch.optim.Adam(a.parameters(), lr=3e-3)
    first = float(out["mse"].detach())
    for _ in range(60):
        out = aligner_losses(a, mllm_states, target)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["mse"]) < 0.5 * first
