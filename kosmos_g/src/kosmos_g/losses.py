"""Kosmos-G stage-3 objective: the diffusion loss through a frozen U-Net (score distillation).

Card §3: x = interleaved input, C = M(MLLM(x)); z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps with
t ~ U{0..T-1}, eps ~ N(0, I); L = mean_b [ w(t) * mean ||eps_theta(z_t; C, t) - eps||^2 ] with
w(t) = 1 and the U-Net theta frozen. A fraction ``cfg_drop`` of the samples get the null
condition C_null = M(MLLM("<s>")) instead (recomputed each step; gradients flow into it too),
which is what classifier-free guidance needs. The plain loss is back-propagated through the
U-Net into C (the released code does not drop the U-Net Jacobian; see the card's pitfalls), so
gradients reach only the condition encoder (MLLM + AlignerNet).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def freeze_(module: nn.Module) -> nn.Module:
    """Frozen decoder side: no gradients into its weights and eval mode (no dropout)."""
    module.requires_grad_(False)
    module.eval()
    return module


def module_hash(module: nn.Module) -> str:
    """SHA-256 of all parameters and buffers (names, dtypes, shapes, bytes): bit-identity check."""
    h = hashlib.sha256()
    for name, t in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def apply_null_condition(cond: torch.Tensor, null_cond: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Replace the condition of samples where ``drop`` is True by the null condition (broadcast over B)."""
    null = null_cond.expand(cond.shape[0], *cond.shape[1:]) if null_cond.shape[0] == 1 else null_cond
    return torch.where(drop.view(-1, *([1] * (cond.dim() - 1))), null.to(cond.dtype), cond)


def diffusion_loss(
    unet: nn.Module,
    scheduler,
    latents: torch.Tensor,
    cond: torch.Tensor,
    null_cond: torch.Tensor | None = None,
    *,
    cfg_drop: float = 0.1,
    timesteps: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    drop: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_parts: bool = False,
):
    """The ε-prediction diffusion loss with condition ``cond`` (B, L, D) through ``unet``.

    ``latents``: z_0 (B, C, H, W) (VAE latents x 0.18215 for SD, or pixels in [-1, 1] for a
    pixel-space decoder). ``scheduler``: a diffusers scheduler with ``add_noise`` and
    ``config.num_train_timesteps``. ``timesteps`` / ``noise`` / ``drop`` may be given (tests,
    reproducibility); otherwise they are drawn with ``generator``. ``weight``: w(t), default 1.
    """
    b = latents.shape[0]
    dev = latents.device
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(dev)
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator).to(dev, latents.dtype)
    if drop is None:
        drop = (torch.rand(b, generator=generator) < cfg_drop).to(dev) if null_cond is not None else torch.zeros(b, dtype=torch.bool, device=dev)
    c = apply_null_condition(cond, null_cond, drop) if null_cond is not None and bool(drop.any()) else cond
    z_t = scheduler.add_noise(latents, noise, timesteps)
    eps = unet(z_t, timesteps, encoder_hidden_states=c).sample
    per_sample = (eps.float() - noise.float()).pow(2).flatten(1).mean(1)
    if weight is not None:
        per_sample = per_sample * weight
    loss = per_sample.mean()  # = sum over the batch / batch size (fairseq)
    if return_parts:
        return loss, {"timesteps": timesteps, "noise": noise, "drop": drop, "per_sample": per_sample.detach()}
    return loss
