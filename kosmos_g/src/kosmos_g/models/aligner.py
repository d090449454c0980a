"""AlignerNet: maps MLLM hidden states into a frozen text encoder's embedding space and back.

Kosmos-G §2.2. M (the part kept for generation) = Linear(d_mllm -> d) + learned positions
-> Transformer encoder -> non-causal Transformer decoder fed with ``num_queries`` learned
queries Q_M that cross-attend to the encoder output -> (B, num_queries, d), the shape of the
CLIP text encoder's ``last_hidden_state`` (77 x 768 for Stable Diffusion v1.5).
N (stage 2 only) = non-causal decoder fed with the first L_s rows of learned queries Q_N that
cross-attend to M's output -> encoder with learned positions -> Linear(d -> d_mllm).
Layers are Sub-LN (Magneto) blocks from :mod:`vlcore.layers` with the torchscale
encoder-decoder depth constants.

Losses (§3): ``alignment_loss`` = mean ||M(s) - t||^2 over batch x 77 x 768 (padding
positions of the text-encoder sequence included); ``reconstruction_loss`` = mean
||N(M(s)) - s||^2 over the non-pad MLLM positions, times num_queries / L_s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.layers.blocks import TransformerStack


@dataclass(frozen=True)
class AlignerConfig:
    mllm_dim: int = 2048
    dim: int = 768
    num_heads: int = 12
    mlp_ratio: float = 4.0
    encoder_layers: int = 12
    decoder_layers: int = 12
    num_queries: int = 77  # length of the text encoder's sequence
    max_positions: int = 32768  # learned position table of M's encoder and N's encoder / query table
    learned_positions: bool = True  # False: the MLLM states already carry positions (mini reproduction)
    with_reconstruction: bool = True  # build N


def _stack(cfg: AlignerConfig, kind: str, depth: int, paired: int) -> TransformerStack:
    return TransformerStack(
        depth=depth, dim=cfg.dim, num_heads=cfg.num_heads, kind=kind, paired_depth=paired, mlp_ratio=cfg.mlp_ratio,
        norm_layout="subln", qkv_bias="qkv", final_norm=True,
    )


class AlignerEncoder(nn.Module):
    """M: MLLM states (B, L_s, mllm_dim) -> (B, num_queries, dim)."""

    def __init__(self, cfg: AlignerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.mllm_dim, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.max_positions, cfg.dim)) if cfg.learned_positions else None
        self.encoder = _stack(cfg, "encoder", cfg.encoder_layers, cfg.decoder_layers)
        self.query = nn.Parameter(torch.randn(cfg.num_queries, cfg.dim))  # N(0, 1) as released
        self.decoder = _stack(cfg, "decoder", cfg.decoder_layers, cfg.encoder_layers)
        if self.pos is not None:
            nn.init.normal_(self.pos, std=cfg.dim**-0.5)

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """states: (B, L, mllm_dim); padding_mask: (B, L) bool, True at pads."""
        x = self.proj(states)
        if self.pos is not None:
            x = x + self.pos[: x.shape[1]]
        kpm = padding_mask if padding_mask is not None and bool(padding_mask.any()) else None
        mem = self.encoder(x, key_padding_mask=kpm, is_causal=False)
        q = self.query.unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.decoder(q, memory=mem, memory_key_padding_mask=kpm, is_causal=False)


class AlignerDecoder(nn.Module):
    """N: M's output (B, num_queries, dim) -> reconstructed MLLM states (B, L_s, mllm_dim)."""

    def __init__(self, cfg: AlignerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.query = nn.Parameter(torch.randn(cfg.max_positions, cfg.dim))
        self.decoder = _stack(cfg, "decoder", cfg.decoder_layers, cfg.encoder_layers)
        self.pos = nn.Parameter(torch.zeros(cfg.max_positions, cfg.dim)) if cfg.learned_positions else None
        self.encoder = _stack(cfg, "encoder", cfg.encoder_layers, cfg.decoder_layers)
        self.proj = nn.Linear(cfg.dim, cfg.mllm_dim)
        if self.pos is not None:
            nn.init.normal_(self.pos, std=cfg.dim**-0.5)

    def forward(self, c: torch.Tensor, length: int, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.query[:length].unsqueeze(0).expand(c.shape[0], -1, -1)
        h = self.decoder(q, memory=c, is_causal=False)
        if self.pos is not None:
            h = h + self.pos[:length]
        kpm = padding_mask if padding_mask is not None and bool(padding_mask.any()) else None
        return self.proj(self.encoder(h, key_padding_mask=kpm, is_causal=False))


class AlignerNet(nn.Module):
    def __init__(self, cfg: AlignerConfig = AlignerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = AlignerEncoder(cfg)
        self.decoder = AlignerDecoder(cfg) if cfg.with_reconstruction else None

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The condition c = M(s) (what the U-Net receives as ``encoder_hidden_states``)."""
        return self.encoder(states, padding_mask)

    def reconstruct(self, c: torch.Tensor, length: int, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.decoder is None:
            raise ValueError("this AlignerNet has no reconstruction decoder N (with_reconstruction=False)")
        return self.decoder(c, length, padding_mask)

    def drop_reconstruction_(self) -> "AlignerNet":
        """Stage 3 and inference use M only."""
        self.decoder = None
        return self


def alignment_loss(c: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_mse = mean over (B, 77, 768) of (M(s) - t)^2, the text encoder's padding positions included."""
    return F.mse_loss(c.float(), target.float())


def reconstruction_loss(
    recon: torch.Tensor, states: torch.Tensor, num_queries: int, padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L_rec = mean over the non-pad MLLM positions and channels of (N(M(s)) - s)^2, times num_queries / L_s."""
    err = (recon.float() - states.float()).pow(2).mean(-1)  # (B, L)
    length = states.shape[1]
    if padding_mask is not None:
        keep = (~padding_mask).float()
        mse = (err * keep).sum() / keep.sum().clamp_min(1.0)
    else:
        mse = err.mean()
    return mse * (num_queries / length)


def aligner_losses(
    aligner: AlignerNet, states: torch.Tensor, target: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Stage 2: L = L_mse + L_rec (equal weights); the MLLM states are detached (MLLM frozen)."""
    states = states.detach()
    target = target.detach()
    c = aligner(states, padding_mask)
    out = {"mse": alignment_loss(c, target)}
    if aligner.decoder is not None:
        rec = aligner.reconstruct(c, states.shape[1], padding_mask)
        out["rec"] = reconstruction_loss(rec, states, aligner.cfg.num_queries, padding_mask)
    out["loss"] = sum(out.values())
    return out
