"""Decoder-only causal language model (GPT-style) with the ``norm`` switch, and KV-cache generation.

Token + learnt position embeddings, a decoder ``TransformerStack`` (final LayerNorm for
pre / subln), an output projection tied to the token embeddings. ``generate`` decodes
with a ``vlcore.layers.DecoderCache``: the prompt is run once, then one token per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.layers import DecoderCache
from magneto.models.trunk import build_stack, embed_init_, init_trunk_, resolve_init


class MagnetoGPT(nn.Module):
    """GPT-style decoder.

    Args:
        vocab_size: output / input vocabulary.
        max_seq_len: learnt positions (context length).
        depth, dim, num_heads, mlp_ratio: trunk size.
        norm: ``post`` | ``pre`` | ``deepnorm`` | ``subln`` (Magneto).
        init: ``auto`` (the layout's own: magneto for subln, deepnet for deepnorm) | ``magneto`` |
            ``deepnet`` | ``none``; a rule that does not fit ``norm`` is an error.
        value_init: ``xavier_normal`` (paper) | ``scale`` (torchscale) base for the gain.
        tie_embeddings: output projection shares the token embedding matrix.
        drop, attn_drop, act_drop, drop_path_rate: regularisation (0 in the paper's LM runs
            of this size; torchscale ``dropout`` / ``attention_dropout`` / ``activation_dropout``).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_seq_len: int = 1024,
        depth: int = 12,
        dim: int = 768,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        norm: str = "subln",
        init: str = "auto",
        value_init: str = "xavier_normal",
        norm_eps: float = 1e-5,
        tie_embeddings: bool = True,
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
        self.drop = nn.Dropout(drop)
        self.decoder = build_stack(
            kind="decoder", depth=depth, dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, norm=norm,
            norm_eps=norm_eps, drop=drop, attn_drop=attn_drop, act_drop=act_drop, drop_path_rate=drop_path_rate,
        )
        self.head = nn.Linear(dim, vocab_size, bias=False)
        embed_init_(self.tok_embed.weight, dim)
        nn.init.normal_(self.pos_embed.weight, std=0.02)
        if tie_embeddings:
            self.head.weight = self.tok_embed.weight
        else:
            nn.init.normal_(self.head.weight, std=dim**-0.5)
        self.gain = init_trunk_(self.decoder, init=self.init_rule, value_init=value_init)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed.weight"}

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^tok_embed|^pos_embed", "blocks": [(r"^decoder\.blocks\.(\d+)", None), (r"^decoder\.norm", (99999,))]}

    def new_cache(self) -> DecoderCache:
        return self.decoder.new_cache()

    def forward_features(
        self,
        input_ids: torch.Tensor,
        *,
        cache: DecoderCache | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, N) -> hidden states (B, N, C); with ``cache`` the ids are the new
        positions after the ``len(cache)`` already decoded."""
        B, N = input_ids.shape
        start = len(cache) if cache is not None else 0
        if start + N > self.max_seq_len:
            raise ValueError(f"sequence of {start + N} tokens exceeds the context of {self.max_seq_len}")
        pos = torch.arange(start, start + N, device=input_ids.device)
        x = self.drop(self.tok_embed(input_ids) + self.pos_embed(pos)[None])  # B, N, C
        return self.decoder(x, key_padding_mask=key_padding_mask, cache=cache)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)  # B, N, V

    def forward_intermediates(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final hidden states and the residual stream after every block (pre final norm)."""
        N = input_ids.shape[1]
        x = self.tok_embed(input_ids) + self.pos_embed(torch.arange(N, device=input_ids.device))[None]
        inter = []
        for blk in self.decoder.blocks:
            x = blk(x, is_causal=True)
            inter.append(x)
        return self.decoder.norm(x), inter

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        cache: DecoderCache | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.forward_head(self.forward_features(input_ids, cache=cache, key_padding_mask=key_padding_mask))

    def loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(input_ids)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``input_ids`` (B, N); greedy when ``temperature == 0``.

        With ``use_cache`` each step feeds only the newest token; without it every step reruns
        the (cropped) context, as a reference. Stops early when every row produced ``eos_id``.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if use_cache and input_ids.shape[1] + max_new_tokens > self.max_seq_len:
            raise ValueError(
                f"prompt {input_ids.shape[1]} + {max_new_tokens} new tokens exceed the context of {self.max_seq_len}"
            )
        was_training = self.training
        self.eval()
        out = input_ids
        cache = self.new_cache() if use_cache else None
        step_in = input_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        try:
            for _ in range(max_new_tokens):
                if cache is None:
                    step_in = out[:, -self.max_seq_len :]
                logits = self(step_in, cache=cache)[:, -1].float()  # B, V
                nxt = _sample(logits, temperature=temperature, top_k=top_k, generator=generator)  # B, 1
                if eos_id is not None:
                    nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)
                    done |= nxt[:, 0] == eos_id
                out = torch.cat((out, nxt), dim=1)
                step_in = nxt
                if eos_id is not None and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return out


def _sample(
    logits: torch.Tensor, *, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """logits (B, V) -> next ids (B, 1): argmax at temperature 0, else top-k sampling."""
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)
