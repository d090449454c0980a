"""Encoder-only masked language model (BERT-style) with the ``norm`` switch.

Token + learnt position (+ segment) embeddings with an embedding LayerNorm (BERT), an
encoder ``TransformerStack`` and BERT's MLM head: dense -> GELU -> LayerNorm -> a
projection tied to the token embeddings, plus an output bias. Masking follows BERT
(``mask_tokens``: 15 % of positions; 80 % [MASK], 10 % random, 10 % kept).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from magneto.models.trunk import build_stack, embed_init_, init_trunk_, resolve_init

IGNORE_INDEX = -100


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> tied decoder + bias (BERT / RoBERTa ``lm_head``)."""

    def __init__(self, *, dim: int, vocab_size: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.decoder = nn.Linear(dim, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(self.act(self.dense(x)))  # B, N, C
        return x if pre_logits else self.decoder(x) + self.bias  # B, N, V


class MagnetoBert(nn.Module):
    """BERT-style encoder for masked language modelling.

    Args:
        vocab_size, max_seq_len, type_vocab_size: embedding tables (0 segments: none).
        depth, dim, num_heads, mlp_ratio: trunk size.
        norm, init, value_init: see ``magneto.models.trunk``.
        embed_norm: LayerNorm on the summed embeddings (BERT; torchscale ``layernorm_embedding``).
        drop, attn_drop, act_drop, drop_path_rate: regularisation (BERT: 0.1 / 0.1 / 0 / 0).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_seq_len: int = 512,
        type_vocab_size: int = 2,
        depth: int = 12,
        dim: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        norm: str = "subln",
        init: str = "auto",
        value_init: str = "xavier_normal",
        norm_eps: float = 1e-5,
        embed_norm: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        act_drop: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.init_rule = resolve_init(norm, init)
        self.norm_kind = norm
        self.vocab_size, self.max_seq_len, self.dim = vocab_size, max_seq_len, dim
        self.tok_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Embedding(max_seq_len, dim)
        self.type_embed = nn.Embedding(type_vocab_size, dim) if type_vocab_size > 0 else None
        self.embed_norm = nn.LayerNorm(dim, eps=norm_eps) if embed_norm else nn.Identity()
        self.drop = nn.Dropout(drop)
        self.encoder = build_stack(
            kind="encoder", depth=depth, dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, norm=norm,
            norm_eps=norm_eps, drop=drop, attn_drop=attn_drop, act_drop=act_drop, drop_path_rate=drop_path_rate,
        )
        self.head = MaskedLMHead(dim=dim, vocab_size=vocab_size, norm_eps=norm_eps)
        self.head.decoder.weight = self.tok_embed.weight
        embed_init_(self.tok_embed.weight, dim)
        nn.init.normal_(self.pos_embed.weight, std=0.02)
        if self.type_embed is not None:
            nn.init.normal_(self.type_embed.weight, std=0.02)
        nn.init.xavier_normal_(self.head.dense.weight)
        nn.init.zeros_(self.head.dense.bias)
        self.gain = init_trunk_(self.encoder, init=self.init_rule, value_init=value_init)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed.weight", "type_embed.weight"}

    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^tok_embed|^pos_embed|^type_embed|^embed_norm",
            "blocks": [(r"^encoder\.blocks\.(\d+)", None), (r"^encoder\.norm", (99999,))],
        }

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        N = input_ids.shape[1]
        if N > self.max_seq_len:
            raise ValueError(f"sequence of {N} tokens exceeds the {self.max_seq_len} positions")
        x = self.tok_embed(input_ids) + self.pos_embed(torch.arange(N, device=input_ids.device))[None]  # B, N, C
        if self.type_embed is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.type_embed(types)
        return self.drop(self.embed_norm(x))

    def forward_features(
        self,
        input_ids: torch.Tensor,
        *,
        token_type_ids: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, N) -> (B, N, C); ``padding_mask`` (B, N), True = padding."""
        return self.encoder(self.embed(input_ids, token_type_ids), key_padding_mask=padding_mask)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward_intermediates(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.embed(input_ids)
        inter = []
        for blk in self.encoder.blocks:
            x = blk(x)
            inter.append(x)
        return self.encoder.norm(x), inter

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        token_type_ids: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        feats = self.forward_features(input_ids, token_type_ids=token_type_ids, padding_mask=padding_mask)
        return self.forward_head(feats)

    def loss(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the masked positions (``labels`` = IGNORE_INDEX elsewhere)."""
        logits = self(input_ids)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    special_ids: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: returns (corrupted ids, labels) with labels = IGNORE_INDEX where not predicted.

    Of the chosen positions 80 % become ``mask_id``, 10 % a random token, 10 % stay.
    ``special_ids`` (padding, BOS / EOS) are never chosen.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    chosen = torch.rand(input_ids.shape, generator=generator) < mask_prob
    for s in special_ids:
        chosen &= input_ids != s
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    r = torch.rand(input_ids.shape, generator=generator)
    corrupted = input_ids.clone()
    corrupted[chosen & (r < 0.8)] = mask_id
    rand_pos = chosen & (r >= 0.8) & (r < 0.9)
    corrupted[rand_pos] = torch.randint(0, vocab_size, (int(rand_pos.sum()),), generator=generator)
    return corrupted, labels
