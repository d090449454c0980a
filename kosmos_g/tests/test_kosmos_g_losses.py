import math

import pytest
import torch
from diffusers import DDPMScheduler

from kosmos_g.losses import apply_null_condition, diffusion_loss, freeze_, module_hash
from kosmos_g.mini import TinyTextEncoder, interleave, sample_scenes, s3_prompt
from kosmos_g.testing import frozen_tiny_unet, tiny_encoder


class _LinearEps(torch.nn.Module):
    """eps_theta(z, t, c) = a * z + mean(c) * 1 + t / 1000: hand-computable 'U-Net'."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, z, t, encoder_hidden_states):
        out = self.a * z + encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1) / 1000

        class R:
            sample = out

        return R()


@pytest.mark.unit
def test_diffusion_loss_matches_the_card_formula_on_fixed_tensors():
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(3, 2, 2, 2, generator=g)
    eps = torch.randn(3, 2, 2, 2, generator=g)
    cond = torch.randn(3, 4, 5, generator=g, requires_grad=True)
    null = torch.randn(1, 4, 5, generator=g)
    t = torch.tensor([10, 500, 999])
    drop = torch.tensor([False, True, False])
    unet = _LinearEps()
    freeze_(unet)
    loss = diffusion_loss(unet, sched, z0, cond, null, timesteps=t, noise=eps, drop=drop)
    # hand: abar_t from the scaled-linear betas, z_t = sqrt(abar) z0 + sqrt(1 - abar) eps,
    # C = null for dropped samples, L = mean_b mean_elems (eps_theta - eps)^2
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    total = 0.0
    for b in range(3):
        ab = float(abar[t[b]])
        zt = math.sqrt(ab) * z0[b].double() + math.sqrt(1 - ab) * eps[b].double()
        c = (null[0] if drop[b] else cond[b]).detach()
        pred = 0.5 * zt + float(c.double().mean()) + int(t[b]) / 1000
        total += float(((pred - eps[b].double()) ** 2).mean())
    assert float(loss) == pytest.approx(total / 3, rel=1e-5)
    # gradients reach the condition (not the frozen 'U-Net'); the dropped sample gets none
    loss.backward()
    assert unet.a.grad is None
    assert cond.grad is not None and cond.grad[0].abs().sum() > 0 and cond.grad[1].abs().sum() == 0


@pytest.mark.unit
def test_null_condition_dropout_rate_and_broadcast():
    cond = torch.zeros(1000, 2, 3)
    null = torch.ones(1, 2, 3)
    drop = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.1
    out = apply_null_condition(cond, null, drop)
    assert torch.equal(out[drop], torch.ones(int(drop.sum()), 2, 3))
    assert torch.equal(out[~drop], torch.zeros(int((~drop).sum()), 2, 3))
    assert 0.07 < drop.float().mean() < 0.13


@pytest.mark.unit
def test_unet_and_text_encoder_stay_bit_identical_through_instruction_tuning():
    torch.manual_seed(0)
    unet = freeze_(frozen_tiny_unet())
    text = freeze_(TinyTextEncoder())
    enc = tiny_encoder()
    enc.aligner.drop_reconstruction_()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    h_unet, h_text = module_hash(unet), module_hash(text)
    ref_unet = {k: v.clone() for k, v in unet.state_dict().items()}
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    params = [p for p in enc.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)  # weight decay would touch any parameter it is given
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        sc = sample_scenes(4, g)
        bt = interleave([s3_prompt(sc, i, step % 2 == 0) for i in range(4)])
        c = enc(bt["input_ids"], bt["pixel_values"], bt["image_embeds_position_mask"], bt["attention_mask"])
        loss = diffusion_loss(unet, sched, sc.image * 2 - 1, c, enc.null_condition(), cfg_drop=0.5, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in unet.parameters())
    assert module_hash(unet) == h_unet and module_hash(text) == h_text
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in ref_unet.items())
    changed = [k for k, v in enc.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("mllm.") for k in changed) and any(k.startswith("aligner.") for k in changed)
    assert any(k.startswith("mllm.vision.") for k in changed)  # the vision encoder is tuned too


@pytest.mark.unit
def test_module_hash_sees_a_one_ulp_change():
    m = torch.nn.Linear(3, 3)
    h = module_hash(m)
    with torch.no_grad():
        m.weight[0, 0] = torch.nextafter(m.weight[0, 0], torch.tensor(1e9))
    assert module_hash(m) != h
