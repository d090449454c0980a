"""Kosmos-2: image encoder -> connector -> Sub-LN (Magneto) causal decoder, one file.

Data flow (paper configuration, batch B, card §2.1)::

    pixel_values (N_img, 3, 224, 224)
     -> CLIP ViT-L/14, QuickGELU, final LayerNorm on all 257 tokens      (N_img, 257, 1024)
     -> L2 normalise each token                                          (N_img, 257, 1024)
     -> connector: Linear 1024->2048; 64 latent queries attend once to
        [visual; latents] (one multi-head attention, no FFN / residual)  (N_img, 64, 2048)
     -> the slot vectors overwrite the token embeddings where
        ``image_embeds_position_mask`` is 1 (images in order, row-major)
    input_ids (B, T) -> embedding -> x sqrt(D) (image slots included) -> + fairseq sinusoidal
    positions (start at pad+1, pads skipped) -> dropout -> Sub-LN decoder blocks -> final LN
    -> tied LM head (B, T, V)

Small variants (mini reproduction, Kosmos-G): ``vision="conv_stem"`` (3 convolutions to a
stride-4 grid + CLS, fixed 2-D sin-cos positions, pre-LN blocks, LayerNorm) and
``connector="identity"`` (Linear only: every visual token becomes a slot).

Several images per sequence: ``pixel_values`` holds all images of the batch, ordered by
batch row and then by position; ``image_embeds_position_mask`` marks ``num_image_tokens``
slots per image in the same order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.layers import CrossAttention, DecoderCache, TransformerStack, sincos_2d_pos_embed

__all__ = ["Kosmos2Config", "Kosmos2Model", "ConvStemEncoder", "Connector", "sinusoidal_positions"]


@dataclass(frozen=True)
class Kosmos2Config:
    """Every size and switch of the model. Defaults are the released Kosmos-2 (card §2)."""

    # language decoder
    vocab_size: int = 65037
    embed_dim: int = 2048
    depth: int = 24
    num_heads: int = 32
    ffn_dim: int = 8192
    max_positions: int = 2048
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    dropout: float = 0.1
    attn_drop: float = 0.1
    act_drop: float = 0.0
    norm_eps: float = 1e-5
    scale_embedding: bool = True
    norm_layout: Literal["subln", "pre"] = "subln"
    # image encoder
    vision: Literal["clip_vit", "conv_stem"] = "clip_vit"
    img_size: int = 224
    patch_size: int = 14  # clip_vit only
    stem_stride: int = 4  # conv_stem only: 4 (3 convolutions) or 8 (one more stride-2 convolution)
    vision_dim: int = 1024
    vision_depth: int = 24
    vision_heads: int = 16
    vision_mlp_ratio: float = 4.0
    vision_norm_eps: float = 1e-5
    # connector
    connector: Literal["resampler", "identity"] = "resampler"
    num_latents: int = 64
    connector_heads: int | None = None  # default: num_heads
    freeze_vision: bool = False

    def __post_init__(self) -> None:
        if self.vision not in ("clip_vit", "conv_stem"):
            raise ValueError(f"vision must be 'clip_vit' or 'conv_stem', got {self.vision!r}")
        if self.connector not in ("resampler", "identity"):
            raise ValueError(f"connector must be 'resampler' or 'identity', got {self.connector!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if self.stem_stride not in (4, 8):
            raise ValueError(f"stem_stride must be 4 or 8, got {self.stem_stride}")
        stride = self.patch_size if self.vision == "clip_vit" else self.stem_stride
        if (self.ffn_dim * 1.0 / self.embed_dim) * self.embed_dim != self.ffn_dim:
            raise ValueError(f"ffn_dim {self.ffn_dim} must be a float-exact multiple of embed_dim {self.embed_dim}")
        if self.img_size % stride:
            raise ValueError(f"img_size {self.img_size} not divisible by the encoder stride {stride}")

    @property
    def grid_size(self) -> int:
        return self.img_size // (self.patch_size if self.vision == "clip_vit" else self.stem_stride)

    @property
    def num_vision_tokens(self) -> int:
        return self.grid_size**2 + 1  # patches + CLS

    @property
    def num_image_tokens(self) -> int:
        """Slots one image occupies in the text sequence."""
        return self.num_latents if self.connector == "resampler" else self.num_vision_tokens

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_positions(num_positions: int, dim: int, padding_idx: int | None) -> torch.Tensor:
    """fairseq / tensor2tensor table (num_positions, dim): [sin | cos], no interleave; the
    ``padding_idx`` row is zero. Computed exactly as fairseq / transformers do (float32)."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.int64, device="cpu").float() * -scale)
    angles = torch.arange(num_positions, dtype=torch.int64, device="cpu").float()[:, None] * freqs[None]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


class ConvStemEncoder(nn.Module):
    """Small image encoder: 3 convolutions (stride 1, 2, 2; a fourth of stride 2 for ``stride=8``)
    -> (img/stride)^2 tokens + CLS, fixed 2-D sin-cos positions, ``depth`` pre-LN blocks, final
    LayerNorm (card §11)."""

    def __init__(
        self, *, img_size: int, dim: int, depth: int, num_heads: int, mlp_ratio: float, norm_eps: float, stride: int = 4
    ) -> None:
        super().__init__()
        c1 = max(dim // 2, 8)
        layers = [
            nn.Conv2d(3, c1, 3, stride=1, padding=1),
            nn.GELU(),
            nn.Conv2d(c1, dim, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, stride=2, padding=1),
        ]
        if stride == 8:
            layers += [nn.GELU(), nn.Conv2d(dim, dim, 3, stride=2, padding=1)]
        self.stem = nn.Sequential(*layers)
        self.grid = img_size // stride
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.cls_token, std=0.02)
        self.register_buffer(
            "pos_embed", sincos_2d_pos_embed(dim, self.grid, cls_token=True)[None], persistent=False
        )  # 1, G*G+1, D
        self.blocks = TransformerStack(
            depth=depth, dim=dim, num_heads=num_heads, kind="encoder", mlp_ratio=mlp_ratio,
            norm_layout="pre", norm_eps=norm_eps, final_norm=True,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)  # N, G*G, D
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # N, G*G+1, D
        x = x + self.pos_embed.to(x.dtype)
        return self.blocks(x)


def _clip_vit(cfg: Kosmos2Config) -> nn.Module:
    """timm's CLIP image tower (the ``vit_large_patch14_clip_quickgelu_224`` architecture at the
    paper size): pre-LN before the blocks, QuickGELU, LayerNorm eps 1e-5, no head, no weights."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.vision_dim,
        depth=cfg.vision_depth,
        num_heads=cfg.vision_heads,
        mlp_ratio=cfg.vision_mlp_ratio,
        pre_norm=True,
        norm_layer=partial(nn.LayerNorm, eps=cfg.vision_norm_eps),
        act_layer="quick_gelu",
        num_classes=0,
        global_pool="token",
    )


class Connector(nn.Module):
    """Linear vision->text width, then (``resampler``) ``num_latents`` learned queries read
    [visual; latents] with one multi-head attention (no FFN, norm or residual)."""

    def __init__(self, cfg: Kosmos2Config) -> None:
        super().__init__()
        self.kind = cfg.connector
        self.dense = nn.Linear(cfg.vision_dim, cfg.embed_dim)
        if self.kind == "resampler":
            self.latent_query = nn.Parameter(torch.randn(cfg.num_latents, cfg.embed_dim))
            self.attn = CrossAttention(
                dim=cfg.embed_dim, num_heads=cfg.connector_heads or cfg.num_heads, attn_drop=cfg.attn_drop
            )
        else:
            self.latent_query = None
            self.attn = None

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.dense(feats)  # N, Nv, D
        if self.attn is None:
            return x
        q = self.latent_query.unsqueeze(0).expand(x.shape[0], -1, -1)  # N, L, D
        return self.attn(q, torch.cat([x, q], dim=1))  # N, L, D


class Kosmos2Model(nn.Module):
    """The whole Kosmos-2 model; see the module docstring for the data flow."""

    def __init__(self, cfg: Kosmos2Config | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(cfg or Kosmos2Config(), **overrides)
        self.cfg = cfg
        if cfg.vision == "clip_vit":
            self.vision = _clip_vit(cfg)
        else:
            self.vision = ConvStemEncoder(
                img_size=cfg.img_size, dim=cfg.vision_dim, depth=cfg.vision_depth, num_heads=cfg.vision_heads,
                mlp_ratio=cfg.vision_mlp_ratio, norm_eps=cfg.vision_norm_eps, stride=cfg.stem_stride,
            )
        self.connector = Connector(cfg)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_token_id)
        self.embed_scale = math.sqrt(cfg.embed_dim) if cfg.scale_embedding else 1.0
        self.register_buffer(
            "pos_table", sinusoidal_positions(cfg.max_positions + 2, cfg.embed_dim, cfg.pad_token_id), persistent=False
        )
        self.decoder = TransformerStack(
            depth=cfg.depth, dim=cfg.embed_dim, num_heads=cfg.num_heads, kind="decoder",
            mlp_ratio=cfg.ffn_dim / cfg.embed_dim, norm_layout=cfg.norm_layout, qkv_bias="qkv", norm_eps=cfg.norm_eps,
            act_layer=nn.GELU, drop=cfg.dropout, attn_drop=cfg.attn_drop, act_drop=cfg.act_drop, final_norm=True,
        )
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embed_tokens.weight, std=cfg.embed_dim**-0.5)
        with torch.no_grad():
            self.embed_tokens.weight[cfg.pad_token_id].zero_()
        if cfg.freeze_vision:
            self.vision.requires_grad_(False)

    # ---- timm-style helpers -------------------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {"connector.latent_query", "vision.cls_token", "vision.pos_embed"}

    @property
    def num_image_tokens(self) -> int:
        return self.cfg.num_image_tokens

    # ---- image side ---------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N_img, 3, H, W) -> slot embeddings (N_img, num_image_tokens, embed_dim)."""
        feats = self.vision.forward_features(pixel_values)  # N, Nv, Cv (final LN on every token)
        feats = F.normalize(feats, dim=-1)
        return self.connector(feats)

    # ---- text side ----------------------------------------------------------------------
    def position_ids(self, input_ids: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """fairseq positions: pad+1 + number of non-pad tokens before (incl.) each one; pads get pad.
        ``past`` (B,) = non-pad tokens already in the KV cache."""
        pad = self.cfg.pad_token_id
        keep = input_ids.ne(pad).long()
        pos = torch.cumsum(keep, dim=1)
        if past is not None:
            pos = pos + past[:, None]
        return pos * keep + pad

    def embed(
        self,
        input_ids: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        image_embeds_position_mask: torch.Tensor | None = None,
        past: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with image slots overwritten, x sqrt(D), + positions -> (B, T, D)."""
        x = self.embed_tokens(input_ids)  # B, T, D
        if image_embeds is not None:
            mask = image_embeds_position_mask.bool()
            flat = image_embeds.reshape(-1, image_embeds.shape[-1]).to(x.dtype)
            if int(mask.sum()) != flat.shape[0]:
                raise ValueError(
                    f"image_embeds_position_mask marks {int(mask.sum())} slots but the images give {flat.shape[0]} "
                    f"({image_embeds.shape[0]} images x {image_embeds.shape[1]} tokens)"
                )
            x = x.masked_scatter(mask[..., None], flat)
        x = x * self.embed_scale
        pos = self.position_ids(input_ids, past)
        if int(pos.max()) >= self.pos_table.shape[0]:
            raise ValueError(f"sequence needs position {int(pos.max())}, table has {self.pos_table.shape[0]}")
        return self.drop(x + self.pos_table[pos].to(x.dtype))

    def _mask_bias(self, attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
        bias = bias.masked_fill(~attention_mask.bool(), torch.finfo(dtype).min)
        return bias[:, None, None, :]  # B, 1, 1, Nk

    def forward_hidden(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        image_embeds_position_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        image_embeds: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        past: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states after the final LayerNorm (B, T, D). ``image_embeds`` (from
        :meth:`encode_images`) may replace ``pixel_values``. ``attention_mask`` (B, T_total):
        1 = token, 0 = padding; with ``cache`` it covers cached + new positions."""
        if image_embeds is None and pixel_values is not None:
            image_embeds = self.encode_images(pixel_values)
        if image_embeds is not None and image_embeds_position_mask is None:
            raise ValueError("image inputs need image_embeds_position_mask")
        x = self.embed(input_ids, image_embeds, image_embeds_position_mask, past)
        bias = self._mask_bias(attention_mask, x.dtype)
        return self.decoder(x, attn_mask=bias, cache=cache)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.embed_tokens.weight)  # tied head

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        image_embeds_position_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size)."""
        return self.logits(
            self.forward_hidden(pixel_values, input_ids, image_embeds_position_mask, attention_mask, image_embeds=image_embeds)
        )

    # ---- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        image_embeds_position_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 20,
        num_beams: int = 1,
        eos_token_id: int | None = None,
        length_penalty: float = 1.0,
        image_embeds: torch.Tensor | None = None,
        allowed_token_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Greedy (``num_beams=1``) or beam search with the KV cache; see ``kosmos2.generation``.
        Returns (B, T + new) token ids: the prompt, then the generated tokens, padded with pad."""
        from kosmos2.generation import beam_search, greedy_search

        if image_embeds is None and pixel_values is not None:
            image_embeds = self.encode_images(pixel_values)
        kw = dict(
            input_ids=input_ids, image_embeds=image_embeds, image_embeds_position_mask=image_embeds_position_mask,
            attention_mask=attention_mask, max_new_tokens=max_new_tokens,
            eos_token_id=self.cfg.eos_token_id if eos_token_id is None else eos_token_id,
            allowed_token_ids=allowed_token_ids,
        )
        if num_beams == 1:
            return greedy_search(self, **kw)
        return beam_search(self, num_beams=num_beams, length_penalty=length_penalty, **kw)
