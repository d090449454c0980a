"""Encoder-decoder Transformer (translation-style) with the ``norm`` switch.

fairseq / torchscale conventions: one vocabulary shared by source, target and output
projection (``share_all_embeddings``), embeddings scaled by sqrt(d), fixed sinusoidal
positions. The encoder's and decoder's depth gains depend on both depths (Magneto:
gamma_e = sqrt(ln(3 N_d) ln(2 N_e) / 3), gamma_d = sqrt(ln 3 N_d); DeepNorm: the enc-dec
alpha / beta). ``generate`` decodes greedily with a KV cache (self- and cross-attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.layers import DecoderCache
from magneto.models.trunk import build_stack, embed_init_, init_trunk_, resolve_init, sinusoidal_table


class MagnetoSeq2Seq(nn.Module):
    """Encoder-decoder.

    Args:
        vocab_size: shared source / target vocabulary.
        max_seq_len: longest source or target sequence (sinusoidal table size).
        encoder_depth, decoder_depth, dim, num_heads, mlp_ratio: trunk sizes.
        norm, init, value_init: see ``magneto.models.trunk`` (both stacks use the same layout).
        scale_embedding: multiply embeddings by sqrt(dim) (fairseq transformer).
        pad_id: padding token; its embedding row is kept at zero.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_seq_len: int = 1024,
        encoder_depth: int = 6,
        decoder_depth: int = 6,
        dim: int = 512,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        norm: str = "subln",
        init: str = "auto",
        value_init: str = "xavier_normal",
        norm_eps: float = 1e-5,
        scale_embedding: bool = True,
        pad_id: int = 0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        act_drop: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.init_rule = resolve_init(norm, init)
        self.norm_kind = norm
        self.vocab_size, self.max_seq_len, self.dim, self.pad_id = vocab_size, max_seq_len, dim, pad_id
        self.embed_scale = math.sqrt(dim) if scale_embedding else 1.0
        self.tok_embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.register_buffer("pos_table", sinusoidal_table(max_seq_len, dim), persistent=False)
        self.drop = nn.Dropout(drop)
        common = dict(
            dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, norm=norm, norm_eps=norm_eps, drop=drop,
            attn_drop=attn_drop, act_drop=act_drop, drop_path_rate=drop_path_rate,
        )
        self.encoder = build_stack(kind="encoder", depth=encoder_depth, paired_depth=decoder_depth, **common)
        self.decoder = build_stack(kind="decoder", depth=decoder_depth, paired_depth=encoder_depth, **common)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        embed_init_(self.tok_embed.weight, dim)
        with torch.no_grad():
            self.tok_embed.weight[pad_id].zero_()
        self.head.weight = self.tok_embed.weight
        self.gain_encoder = init_trunk_(self.encoder, init=self.init_rule, value_init=value_init)
        self.gain_decoder = init_trunk_(self.decoder, init=self.init_rule, value_init=value_init)

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^tok_embed", "blocks": [(r"^(encoder|decoder)\.blocks\.(\d+)", None)]}

    def _embed(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        N = ids.shape[1]
        if start + N > self.max_seq_len:
            raise ValueError(f"sequence of {start + N} tokens exceeds max_seq_len {self.max_seq_len}")
        x = self.tok_embed(ids) * self.embed_scale + self.pos_table[start : start + N][None]  # B, N, C
        return self.drop(x)

    def encode(self, src_ids: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src_ids (B, S) -> memory (B, S, C); padding defaults to ``src_ids == pad_id``."""
        if src_padding_mask is None:
            src_padding_mask = src_ids == self.pad_id
        x = self._embed(src_ids)
        # zero padded positions before the first block, as torchscale's encoder does
        x = x * (~src_padding_mask)[..., None].to(x.dtype)
        return self.encoder(x, key_padding_mask=src_padding_mask)

    def decode(
        self,
        tgt_ids: torch.Tensor,
        memory: torch.Tensor | None,
        *,
        memory_padding_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """tgt_ids (B, T) (teacher forcing, or the new tokens after ``len(cache)``) -> logits (B, T, V)."""
        start = len(cache) if cache is not None else 0
        x = self._embed(tgt_ids, start)
        x = self.decoder(x, memory=memory, memory_key_padding_mask=memory_padding_mask, cache=cache)
        return self.head(x)

    def forward(
        self, src_ids: torch.Tensor, tgt_in_ids: torch.Tensor, *, src_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if src_padding_mask is None:
            src_padding_mask = src_ids == self.pad_id
        memory = self.encode(src_ids, src_padding_mask)
        return self.decode(tgt_in_ids, memory, memory_padding_mask=src_padding_mask)

    def loss(self, src_ids: torch.Tensor, tgt_in_ids: torch.Tensor, tgt_out_ids: torch.Tensor) -> torch.Tensor:
        logits = self(src_ids, tgt_in_ids)
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out_ids.flatten(), ignore_index=self.pad_id)

    @torch.no_grad()
    def generate(
        self,
        src_ids: torch.Tensor,
        *,
        bos_id: int,
        eos_id: int,
        max_new_tokens: int = 64,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Greedy decoding: (B, S) -> (B, 1 + n) starting with ``bos_id``; finished rows pad with ``pad_id``."""
        was_training = self.training
        self.eval()
        try:
            src_pad = src_ids == self.pad_id
            memory = self.encode(src_ids, src_pad)
            B = src_ids.shape[0]
            out = torch.full((B, 1), bos_id, dtype=torch.long, device=src_ids.device)
            cache = self.decoder.new_cache() if use_cache else None
            done = torch.zeros(B, dtype=torch.bool, device=src_ids.device)
            step_in = out
            for _ in range(min(max_new_tokens, self.max_seq_len - 1)):
                if cache is None:
                    logits = self.decode(out, memory, memory_padding_mask=src_pad)
                else:
                    logits = self.decode(step_in, memory, memory_padding_mask=src_pad, cache=cache)
                nxt = logits[:, -1].argmax(-1, keepdim=True)  # B, 1
                nxt = torch.where(done[:, None], torch.full_like(nxt, self.pad_id), nxt)
                done |= nxt[:, 0] == eos_id
                out = torch.cat((out, nxt), 1)
                step_in = nxt
                if bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return out
