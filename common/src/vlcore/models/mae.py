"""Masked autoencoder (MAE): a timm ViT encoder plus a light Transformer decoder.

The encoder *is* timm's ``VisionTransformer`` (same parameter names as the official MAE
code and as timm's ``vit_*`` models), so one module serves MAE pre-training and, through
timm's API (``forward_features``, ``forward_head``, ``forward_intermediates``,
``group_matcher``, ``no_weight_decay``), classification and dense-prediction backbones.
``forward`` is MAE pre-training; the pieces are separate methods:

    patchify / unpatchify      images <-> per-patch pixel vectors (B, L, p*p*C), (h, w, p, q, c) order
    random_masking             per-sample shuffle by uniform noise; keeps int(L * (1 - ratio)) patches
    forward_encoder            patch embed + fixed sin-cos table -> mask -> prepend cls -> blocks -> norm
    forward_decoder_hidden     decoder_embed -> mask tokens -> unshuffle -> + table -> first k blocks
    forward_decoder            all blocks -> decoder_norm -> decoder_pred, class token dropped
    forward_loss               MSE on the masked patches, targets optionally normalised per patch

Passing the same ``noise`` to two models gives them identical visible / masked sets
(how G2SD drives a student and a teacher). Parameter names follow the official layout
(``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.i``, ``norm``,
``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.i``,
``decoder_norm``, ``decoder_pred``); the converters at the end move weights between
official MAE checkpoints, timm ``vit_*`` state dicts and these models.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models import register_model
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from vlcore.layers.pos_embed import sincos_2d_pos_embed
from vlcore.masking import RandomMasking

__all__ = [
    "DECODERS",
    "ENCODERS",
    "MaskedAutoencoderViT",
    "build_mae",
    "load_mae_checkpoint",
    "mae_state_dict_from_timm",
    "mae_state_dict_to_timm",
    "masking_from_noise",
    "read_official_state_dict",
]


@dataclass(frozen=True)
class EncoderSize:
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int


@dataclass(frozen=True)
class DecoderSize:
    embed_dim: int
    depth: int
    num_heads: int


# ViT sizes of the MAE / G2SD model zoo (ViT paper, DeiT for Ti / S).
ENCODERS: dict[str, EncoderSize] = {
    "tiny": EncoderSize(192, 12, 3, 16),
    "small": EncoderSize(384, 12, 6, 16),
    "base": EncoderSize(768, 12, 12, 16),
    "large": EncoderSize(1024, 24, 16, 16),
    "huge": EncoderSize(1280, 32, 16, 14),
}

# Decoder heads follow the official model definitions: 512-d uses 16 heads, 256 / 192-d 8, 128 / 64-d 4.
_DECODER_HEADS = {512: 16, 256: 8, 192: 8, 128: 4, 64: 4}
DECODERS: dict[str, DecoderSize] = {
    f"dec{w}d{d}b": DecoderSize(w, d, _DECODER_HEADS[w])
    for w, ds in {512: (2, 4, 8), 256: (2, 4, 8), 192: (4,), 128: (2, 4, 8), 64: (4,)}.items()
    for d in ds
}


def masking_from_noise(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor) -> RandomMasking:
    """MAE per-sample masking driven by ``noise`` (B, L): the patches with the smallest noise stay.

    Same rule as :func:`vlcore.masking.random_masking`, which draws the noise itself; taking
    the noise as input lets two models share one mask.
    """
    B, L, D = x.shape
    if noise.shape != (B, L):
        raise ValueError(f"noise must have shape {(B, L)}, got {tuple(noise.shape)}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, D))  # B, L_keep, D
    mask = torch.ones(B, L, dtype=torch.bool, device=x.device)
    mask[:, :len_keep] = False
    mask = torch.gather(mask, 1, ids_restore)  # True = removed, original order
    return RandomMasking(x_kept, mask, ids_restore, ids_keep)


class MaskedAutoencoderViT(VisionTransformer):
    """MAE with a ViT encoder (timm ``VisionTransformer``) and a pre-norm Transformer decoder.

    Args:
        img_size, patch_size, in_chans: input geometry.
        embed_dim, depth, num_heads, mlp_ratio: encoder (qkv bias, LayerNorm eps ``norm_eps``).
        decoder_embed_dim, decoder_depth, decoder_num_heads: decoder (same mlp_ratio).
        norm_pix_loss: regress per-patch normalised pixels (mean / var over the patch, +1e-6).
        num_classes, global_pool, drop_path_rate: passed to the encoder for classification use
            (0 classes = no head, as in pre-training).
        mask_ratio: default ratio of ``forward``.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        norm_pix_loss: bool = False,
        norm_eps: float = 1e-6,
        num_classes: int = 0,
        global_pool: str = "token",
        drop_path_rate: float = 0.0,
        mask_ratio: float = 0.75,
    ) -> None:
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
            weight_init="skip",
        )
        self.pos_embed.requires_grad_(False)  # fixed sin-cos table
        num_patches = self.patch_embed.num_patches
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss
        self.mask_ratio = mask_ratio
        self.decoder_embed_dim = decoder_embed_dim

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(dim=decoder_embed_dim, num_heads=decoder_num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                      norm_layer=norm_layer)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self.initialize_weights()

    # -- initialisation (official MAE) --

    def initialize_weights(self) -> None:
        grid = self.patch_embed.grid_size
        with torch.no_grad():
            self.pos_embed.copy_(sincos_2d_pos_embed(self.embed_dim, grid, cls_token=True)[None])
            self.decoder_pos_embed.copy_(sincos_2d_pos_embed(self.decoder_embed_dim, grid, cls_token=True)[None])
        # The patchifier is initialised like a Linear layer over its flattened kernel.
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        # timm's trunc_normal_(std=.02) with cut-off 2 is effectively normal_(std=.02)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "mask_token", "decoder_pos_embed", "dist_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^cls_token|pos_embed|patch_embed",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    # -- pixels <-> patches --

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, h*w, p*p*C), each patch flattened as (p, q, c)."""
        p = self.patch_size
        B, C, H, W = imgs.shape
        if H % p or W % p:
            raise ValueError(f"image size {(H, W)} is not a multiple of the patch size {p}")
        h, w = H // p, W // p
        x = imgs.reshape(B, C, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(B, h * w, p * p * C)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, h*w, p*p*C) -> (B, C, h*p, w*p); ``grid`` defaults to the model's patch grid."""
        p, C = self.patch_size, self.in_chans
        h, w = grid or self.patch_embed.grid_size
        if h * w != x.shape[1]:
            raise ValueError(f"{x.shape[1]} patches do not form a {h}x{w} grid")
        x = x.reshape(x.shape[0], h, w, p, p, C)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], C, h * p, w * p)

    # -- MAE --

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> RandomMasking:
        """Per-sample random masking of ``x`` (B, L, D); draws ``noise`` (B, L) when not given."""
        if noise is None:
            noise = torch.rand(x.shape[:2], device=x.device, generator=generator)
        return masking_from_noise(x, mask_ratio, noise)

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None,
        *, return_prenorm: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches: (latent # B, 1 + L_keep, D, mask # B, L bool, ids_restore # B, L).

        With ``return_prenorm`` the residual stream before the final norm comes fourth.
        """
        mask_ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        x = self.patch_embed(imgs)  # B, L, D
        x = x + self.pos_embed[:, 1:, :]
        m = self.random_masking(x, mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, m.x_kept), dim=1)  # B, 1 + L_keep, D
        x = self.blocks(x)
        latent = self.norm(x)
        if return_prenorm:
            return latent, m.mask, m.ids_restore, x
        return latent, m.mask, m.ids_restore

    def forward_decoder_hidden(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, *, num_blocks: int | None = None
    ) -> torch.Tensor:
        """Decoder residual stream after the first ``num_blocks`` blocks (all by default), no norm.

        latent: (B, 1 + L_keep, D) from ``forward_encoder``; returns (B, 1 + L, D_dec), class token first.
        """
        n = len(self.decoder_blocks) if num_blocks is None else num_blocks
        if not 0 <= n <= len(self.decoder_blocks):
            raise ValueError(f"num_blocks must be in [0, {len(self.decoder_blocks)}], got {num_blocks}")
        x = self.decoder_embed(latent)  # B, 1 + L_keep, D_dec
        B, _, D = x.shape
        L = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(B, L + 1 - x.shape[1], -1)
        x_ = torch.cat((x[:, 1:, :], mask_tokens), dim=1)  # B, L, D_dec in shuffled order
        x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, D))  # unshuffle
        x = torch.cat((x[:, :1, :], x_), dim=1) + self.decoder_pos_embed  # B, 1 + L, D_dec
        for blk in self.decoder_blocks[:n]:
            x = blk(x)
        return x

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch: (B, L, p*p*C)."""
        x = self.forward_decoder_hidden(latent, ids_restore)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked patches of the per-patch MSE; mask (B, L) is True / 1 where removed."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as the official code
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)  # B, L
        mask = mask.to(loss.dtype)
        return (loss * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MAE pre-training step: (loss, pred # B, L, p*p*C, mask # B, L bool)."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


# --- builders -----------------------------------------------------------------

_NAME = re.compile(r"^mae_vit_(tiny|small|base|large|huge)_patch(\d+)_(dec\d+d\d+b)$")


def build_mae(name: str, **kwargs) -> MaskedAutoencoderViT:
    """``mae_vit_{tiny,small,base,large,huge}_patch{P}_dec{W}d{D}b`` -> model; kwargs override."""
    m = _NAME.match(name)
    if not m or m.group(3) not in DECODERS:
        raise ValueError(
            f"unknown MAE variant '{name}'; expected mae_vit_<{'|'.join(ENCODERS)}>_patch<P>_<{'|'.join(DECODERS)}>"
        )
    enc, dec = ENCODERS[m.group(1)], DECODERS[m.group(3)]
    cfg = dict(
        patch_size=int(m.group(2)), embed_dim=enc.embed_dim, depth=enc.depth, num_heads=enc.num_heads,
        decoder_embed_dim=dec.embed_dim, decoder_depth=dec.depth, decoder_num_heads=dec.num_heads,
    )
    cfg.update(kwargs)
    return MaskedAutoencoderViT(**cfg)


def _register(name: str) -> None:
    def fn(pretrained: bool = False, **kwargs) -> MaskedAutoencoderViT:
        if pretrained:
            raise ValueError(f"{name}: no pretrained weights are downloaded; load a checkpoint with load_mae_checkpoint")
        for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm factory arguments
            kwargs.pop(k, None)
        return build_mae(name, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"MAE {name} (pre-training model; encoder + decoder)."
    fn.__module__ = __name__
    register_model(fn)


_REGISTERED = (
    "mae_vit_tiny_patch16_dec128d4b",
    "mae_vit_tiny_patch16_dec64d4b",
    "mae_vit_small_patch16_dec256d4b",
    "mae_vit_small_patch16_dec128d4b",
    "mae_vit_small_patch16_dec512d8b",
    "mae_vit_base_patch16_dec512d8b",
    "mae_vit_base_patch16_dec256d4b",
    "mae_vit_large_patch16_dec512d8b",
    "mae_vit_huge_patch14_dec512d8b",
)
for _n in _REGISTERED:
    from timm.models import is_model as _is_model

    if not _is_model(_n):  # importing this module twice (importlib mode) must not re-register
        _register(_n)


# --- converters ---------------------------------------------------------------

_TIMM_HEAD_KEYS = ("head.", "fc_norm.", "head_dist.", "attn_pool.")


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from an official ``.pth`` (``{'model': sd, 'args': Namespace, ...}``) without running code.

    ``argparse.Namespace`` (stored by the MAE / G2SD training scripts) is the only class
    allowed besides plain tensors and containers; anything else is refused.
    """
    from vlcore.checkpoint import CheckpointError, load_weights

    path = Path(path)
    if path.suffix == ".safetensors":
        return load_weights(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(e).strip().splitlines()[0][:200]})") from None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: no state dict found (expected a mapping of names to tensors)")
    return dict(obj)


def mae_state_dict_from_timm(
    state_dict: Mapping[str, torch.Tensor], model: MaskedAutoencoderViT | None = None
) -> dict[str, torch.Tensor]:
    """A timm ``vit_*`` state dict -> MAE encoder keys (head / fc_norm dropped).

    With ``model`` given, the decoder keys are taken from it (so the result loads strictly)
    and a position table of another grid is resampled to the model's grid.
    """
    out = {k: v for k, v in state_dict.items() if not k.startswith(_TIMM_HEAD_KEYS)}
    if model is not None:
        pe = out.get("pos_embed")
        if pe is not None and pe.shape != model.pos_embed.shape:
            out["pos_embed"] = resample_abs_pos_embed(
                pe, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=1
            )
        own = model.state_dict()
        for k, v in own.items():
            if k.startswith(("decoder_", "mask_token")) and k not in out:
                out[k] = v
    return out


def mae_state_dict_to_timm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MAE (official layout) -> timm ``vit_*`` encoder keys; decoder and G2SD predictor keys dropped.

    The fixed sin-cos table becomes timm's (learnable) ``pos_embed``; load with
    ``strict=False`` or add a head (``head.weight`` / ``head.bias``) for classification.
    """
    drop = ("decoder_", "mask_token", "decoderfeature_pred.", "encoderfeature_pred.")
    return {k: v for k, v in state_dict.items() if not k.startswith(drop)}


def load_mae_checkpoint(
    model: MaskedAutoencoderViT,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    require_decoder: bool = True,
    extra_ok: tuple[str, ...] = (),
) -> dict[str, list[str]]:
    """Load an official MAE / G2SD checkpoint, a timm ``vit_*`` state dict or our own into ``model``.

    Encoder keys must all be present; with ``require_decoder`` (a teacher whose decoder is
    used) every decoder key must be too, which catches encoder-only files such as
    ``mae_pretrain_vit_base.pth`` (the decoder would otherwise silently stay random).
    Keys the model does not have raise unless they start with one of ``extra_ok``.
    Returns ``{"missing": [...], "ignored": [...]}``.
    """
    from vlcore.checkpoint import CheckpointMismatchError

    sd = read_official_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    what = str(source) if isinstance(source, (str, Path)) else "state dict"
    if any(k.startswith("head.") for k in sd) and not isinstance(model.head, nn.Linear):
        sd = mae_state_dict_from_timm(sd)
    own = model.state_dict()
    pe = sd.get("pos_embed")
    if pe is not None and pe.shape != own["pos_embed"].shape:
        sd["pos_embed"] = resample_abs_pos_embed(pe, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=1)
    decoder = ("decoder_", "mask_token")
    missing = [k for k in own if k not in sd]
    bad_missing = [k for k in missing if require_decoder or not k.startswith(decoder)]
    unexpected = [k for k in sd if k not in own]
    ignored = [k for k in unexpected if k.startswith(extra_ok)] if extra_ok else []
    unexpected = [k for k in unexpected if k not in ignored]
    mismatched = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad_missing or unexpected or mismatched:
        hint = ""
        if any(k.startswith(decoder) for k in bad_missing) and not any(k.startswith(decoder) for k in sd):
            hint = " (an encoder-only checkpoint: use the *_full MAE file that holds the decoder)"
        raise CheckpointMismatchError(
            f"{what} does not fit {type(model).__name__}: missing {bad_missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatches {mismatched[:5]}{hint}",
            missing=bad_missing, unexpected=unexpected, mismatched=mismatched,
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return {"missing": missing, "ignored": ignored}
