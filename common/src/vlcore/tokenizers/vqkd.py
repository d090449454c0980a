"""VQ-KD visual tokenizer (BEiT v2): vector-quantised knowledge distillation.

    images in [0, 1] --(x * 2 - 1)--> ViT encoder --fc_norm(patch tokens)--> Linear-tanh-Linear -> z (B, N, d)
    z --l2--> nearest of K unit-norm codewords (cosine) --straight-through--> z_q
    z_q as a (d, h, w) map --> ViT decoder (1x1 "patches") --fc_norm--> Linear-tanh-Linear -> o (B, N, D_t)
    loss = mean(1 - cos(o, t)) + beta * mse(l2(z), sg[e])        t = frozen teacher's patch features

The codebook gets no gradient. After k-means initialisation (cosine, 10 iterations, on
the first training batch) every training step moves each codeword towards the
l2-normalised mean of the vectors assigned to it, e <- l2(lambda e + (1 - lambda) m),
codes without assignments keep their value (BEiT v2's "normalised EMA"; there is no
codebook loss and no restart of dead codes). Assignment counts are all-reduced over
processes, so every rank applies the same update; the k-means result is broadcast from
rank 0 for the same reason.

Usage statistics: ``quantize.cluster_size`` is the official EMA of per-code counts;
``quantize.usage()`` reports exact counts since the last ``reset_usage()`` (used codes,
unused codes, perplexity), which is how code usage on an evaluation set is measured.

Keys match the official unilm checkpoints (``encoder.*``, ``decoder.*``,
``encode_task_layer.*``, ``decode_task_layer.*``, ``quantize.embedding.{weight,
cluster_size, embed_avg, initted}``, ``quantize.cluster_size``); the official loader
drops ``teacher*``, ``scaling*`` and ``loss*`` keys and so does
:func:`vqkd_state_dict_from_official`. Teachers are kept outside the tokenizer's state
dict, behind :class:`Teacher`: images in [0, 1] -> (B, N, D_t) patch features on the
tokenizer's grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from vlcore import kernels
from vlcore.dist import all_reduce_sum, is_initialized
from vlcore.models.beit import Beit

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ClipTeacher",
    "ModuleTeacher",
    "NormEMAVectorQuantizer",
    "QuantizerOutput",
    "Teacher",
    "TimmTeacher",
    "VQKD",
    "VQKDConfig",
    "VQKDOutput",
    "VQKD_CONFIGS",
    "build_vqkd",
    "kmeans_cosine",
    "vqkd_state_dict_from_official",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def l2norm(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t, p=2, dim=-1)


@torch.no_grad()
def kmeans_cosine(
    samples: torch.Tensor, num_clusters: int, *, num_iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means on unit vectors (M, d): returns (centroids (K, d), counts (K,)).

    Initial centroids are sampled from the data (with replacement when M < K); a
    cluster that loses all its points keeps its previous centroid.
    """
    m, d = samples.shape
    if m >= num_clusters:
        idx = torch.randperm(m, generator=generator, device="cpu")[:num_clusters].to(samples.device)
    else:
        idx = torch.randint(0, m, (num_clusters,), generator=generator, device="cpu").to(samples.device)
    means = samples[idx]  # K, d
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = (samples @ means.t()).argmax(dim=-1)  # M
        bins = torch.bincount(buckets, minlength=num_clusters)
        empty = bins == 0
        sums = torch.zeros(num_clusters, d, dtype=samples.dtype, device=samples.device)
        sums.index_add_(0, buckets, samples)
        new = l2norm(sums / bins.clamp(min=1)[:, None])
        means = torch.where(empty[:, None], means, new)
    return means, bins


class QuantizerOutput(NamedTuple):
    z_q: torch.Tensor  # same layout as the input, straight-through gradient to the normalised input
    loss: torch.Tensor  # commitment: beta * mse(l2(z), sg[e])
    indices: torch.Tensor  # (B, N) code ids


class _Codebook(nn.Module):
    """Holds the official ``quantize.embedding.*`` state: unit codewords, an init flag and
    two statistics the official code keeps in its files but does not use (kept so
    checkpoints round-trip)."""

    def __init__(self, num_codes: int, code_dim: int, kmeans_init: bool) -> None:
        super().__init__()
        weight = torch.zeros(num_codes, code_dim) if kmeans_init else l2norm(torch.randn(num_codes, code_dim))
        self.register_buffer("weight", weight)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_avg", weight.clone())
        self.register_buffer("initted", torch.tensor([float(not kmeans_init)]))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.weight)


class NormEMAVectorQuantizer(nn.Module):
    """Cosine nearest-codeword quantiser with a normalised-EMA codebook (see the module docstring).

    Args:
        num_codes, code_dim: codebook size K and dimension d (BEiT v2: 8192 x 32).
        beta: commitment weight (1.0).
        decay: EMA decay lambda of the codewords and of ``cluster_size`` (0.99).
        kmeans_init: initialise the codebook by spherical k-means on the first training batch.
        kmeans_iters: k-means iterations (10).
    """

    def __init__(
        self,
        *,
        num_codes: int = 8192,
        code_dim: int = 32,
        beta: float = 1.0,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        self.num_codes, self.code_dim = num_codes, code_dim
        self.beta, self.decay, self.kmeans_iters = beta, decay, kmeans_iters
        self.update = True  # set False to freeze the codebook while training the rest
        self.embedding = _Codebook(num_codes, code_dim, kmeans_init)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("code_counts", torch.zeros(num_codes, dtype=torch.float64), persistent=False)

    @property
    def initted(self) -> bool:
        return bool(self.embedding.initted.item())

    @torch.no_grad()
    def init_codebook_(self, flat: torch.Tensor) -> None:
        means, bins = kmeans_cosine(flat.float(), self.num_codes, num_iters=self.kmeans_iters)
        if is_initialized() and torch_dist.get_world_size() > 1:
            torch_dist.broadcast(means, src=0)
            torch_dist.broadcast(bins, src=0)
        self.embedding.weight.copy_(means)
        self.embedding.cluster_size.copy_(bins.float())
        self.embedding.initted.fill_(1.0)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        bins = all_reduce_sum(torch.bincount(indices, minlength=self.num_codes).float())  # K
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
        sums = torch.zeros(self.num_codes, self.code_dim, dtype=torch.float32, device=flat.device)
        sums = all_reduce_sum(sums.index_add_(0, indices, flat.float()))  # K, d
        empty = bins == 0
        means = l2norm(sums / bins.clamp(min=1)[:, None])
        means = torch.where(empty[:, None], self.embedding.weight, means)
        w = self.embedding.weight
        w.mul_(self.decay).add_(means, alpha=1 - self.decay)
        w.copy_(l2norm(w))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z: (B, N, d) tokens or (B, d, H, W) maps (then N = H*W, row-major)."""
        spatial = z.dim() == 4
        if spatial:
            B, d, H, W = z.shape
            z = z.permute(0, 2, 3, 1).reshape(B, H * W, d)  # B, N, d
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"quantizer expects {self.code_dim}-d vectors, got {z.shape[-1]}")
        z = l2norm(z)
        flat = z.reshape(-1, self.code_dim)  # B*N, d
        if self.training and not self.initted:
            self.init_codebook_(flat.detach())
        codebook = self.embedding.weight
        # on unit vectors the smallest squared distance is the largest cosine
        if kernels.use_triton(flat, codebook):
            # tiled kernel: the B*N x K similarity matrix is never held in memory
            indices, _ = kernels.nearest_code(flat.detach(), codebook)  # B*N
        else:
            indices = (flat.detach().float() @ codebook.t().float()).argmax(dim=-1)  # B*N
        with torch.no_grad():
            self.code_counts += torch.bincount(indices, minlength=self.num_codes).double()
            if self.training and self.update:
                self._ema_update(flat.detach(), indices)
            elif not self.training:
                bins = all_reduce_sum(torch.bincount(indices, minlength=self.num_codes).float())
                self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
        z_q = self.embedding(indices).view_as(z).to(z.dtype)  # B, N, d
        loss = self.beta * F.mse_loss(z_q.detach(), z)
        z_q = z + (z_q - z).detach()  # straight-through
        indices = indices.view(z.shape[0], -1)
        if spatial:
            z_q = z_q.reshape(B, H, W, d).permute(0, 3, 1, 2)  # B, d, H, W
        return QuantizerOutput(z_q, loss, indices)

    def reset_usage(self) -> None:
        """Zero the exact counters of :meth:`usage` (e.g. before an evaluation pass)."""
        self.code_counts.zero_()

    def usage(self) -> dict[str, float]:
        """Exact code usage since the last reset: used / unused codes, fraction, perplexity."""
        counts = all_reduce_sum(self.code_counts)
        total = float(counts.sum())
        used = int((counts > 0).sum())
        p = counts / max(total, 1.0)
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum()) if total > 0 else 0.0
        return {
            "used": used,
            "unused": self.num_codes - used,
            "usage": used / self.num_codes,
            "perplexity": math.exp(entropy),
            "assignments": total,
        }


# --- teachers ---------------------------------------------------------------


class Teacher(nn.Module):
    """A frozen feature extractor: images in [0, 1] (B, 3, H, W) -> patch features (B, N, out_dim).

    Subclasses implement :meth:`features`; parameters are frozen and the module stays in
    eval mode whatever ``train()`` is called with.
    """

    out_dim: int

    def freeze_(self) -> "Teacher":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "Teacher":  # noqa: ARG002 - a teacher never trains
        return super().train(False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


class _Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(std)[None, :, None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.clamp(0, 1) - self.mean) / self.std


class ClipTeacher(Teacher):
    """CLIP image tower (transformers ``CLIPVisionModelWithProjection``): every patch token
    after CLIP's final LayerNorm, through the visual projection (768 -> 512 for ViT-B/16);
    the class token is dropped. Inputs are normalised with CLIP's mean / std."""

    def __init__(self, model: nn.Module, *, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD):
        super().__init__()
        self.model = model
        self.norm = _Normalize(mean, std)
        self.out_dim = int(model.config.projection_dim)
        self.freeze_()

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> "ClipTeacher":
        """A local folder or a hub id already in the local cache (nothing is downloaded)."""
        from transformers import CLIPVisionModelWithProjection

        return cls(CLIPVisionModelWithProjection.from_pretrained(name_or_path, local_files_only=True), **kwargs)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        vision = self.model.vision_model
        hidden = vision(pixel_values=self.norm(images)).last_hidden_state  # B, 1+N, 768
        return self.model.visual_projection(vision.post_layernorm(hidden))[:, 1:]  # B, N, 512


class TimmTeacher(Teacher):
    """A timm ViT (e.g. DINO ``vit_base_patch16_224.dino``): patch tokens after its final norm."""

    def __init__(
        self, model: nn.Module, *, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ):
        super().__init__()
        self.model = model
        self.norm = _Normalize(mean, std)
        self.out_dim = int(model.num_features)
        self.freeze_()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.model.forward_features(self.norm(images))  # B, P+N, D
        return tokens[:, getattr(self.model, "num_prefix_tokens", 1) :]


class ModuleTeacher(Teacher):
    """Any module mapping normalised images to (B, N, D) or (B, D, h, w) features."""

    def __init__(
        self,
        model: nn.Module,
        *,
        out_dim: int,
        mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        std: tuple[float, ...] = (1.0, 1.0, 1.0),
    ):
        super().__init__()
        self.model = model
        self.norm = _Normalize(mean, std)
        self.out_dim = out_dim
        self.freeze_()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(self.norm(images))
        return out.flatten(2).transpose(1, 2) if out.dim() == 4 else out  # B, N, D


# --- the tokenizer ----------------------------------------------------------


@dataclass(frozen=True)
class VQKDConfig:
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 768
    decoder_depth: int = 3
    decoder_num_heads: int = 12
    num_codes: int = 8192
    code_dim: int = 32
    target_dim: int = 512  # CLIP ViT-B/16 projection; 768 for DINO
    decay: float = 0.99
    beta: float = 1.0
    kmeans_init: bool = True
    drop_path_rate: float = 0.0
    teacher: str = "clip"  # what the decoder regresses (documentation; the teacher lives outside)


VQKD_CONFIGS: dict[str, VQKDConfig] = {
    "vqkd_encoder_base_decoder_3x768x12_clip": VQKDConfig(),
    "vqkd_encoder_base_decoder_1x768x12_clip": VQKDConfig(decoder_depth=1),
    "vqkd_encoder_base_decoder_1x768x12_dino": VQKDConfig(decoder_depth=1, target_dim=768, teacher="dino"),
}


class VQKDOutput(NamedTuple):
    loss: torch.Tensor
    rec_loss: torch.Tensor
    commit_loss: torch.Tensor
    indices: torch.Tensor  # B, N
    rec: torch.Tensor  # B, N, target_dim


class VQKD(nn.Module):
    """The VQ-KD tokenizer; see the module docstring. ``config``: a :class:`VQKDConfig`."""

    def __init__(self, config: VQKDConfig = VQKDConfig()) -> None:
        super().__init__()
        c = self.config = config
        if c.img_size % c.patch_size:
            raise ValueError(f"img_size {c.img_size} is not a multiple of patch_size {c.patch_size}")
        self.grid = c.img_size // c.patch_size
        vit = dict(num_classes=0, global_pool="avg", init_values=None, use_abs_pos_emb=True, rel_pos="none",
                   mlp_ratio=c.mlp_ratio, norm_eps=1e-6)
        self.encoder = Beit(img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans, embed_dim=c.embed_dim,
                            depth=c.depth, num_heads=c.num_heads, drop_path_rate=c.drop_path_rate, **vit)
        self.decoder = Beit(img_size=self.grid, patch_size=1, in_chans=c.code_dim, embed_dim=c.decoder_embed_dim,
                            depth=c.decoder_depth, num_heads=c.decoder_num_heads, **vit)
        self.quantize = NormEMAVectorQuantizer(num_codes=c.num_codes, code_dim=c.code_dim, beta=c.beta,
                                               decay=c.decay, kmeans_init=c.kmeans_init)
        self.encode_task_layer = nn.Sequential(
            nn.Linear(c.embed_dim, c.embed_dim), nn.Tanh(), nn.Linear(c.embed_dim, c.code_dim)
        )
        self.decode_task_layer = nn.Sequential(
            nn.Linear(c.decoder_embed_dim, c.decoder_embed_dim), nn.Tanh(), nn.Linear(c.decoder_embed_dim, c.target_dim)
        )
        for m in (*self.encode_task_layer, *self.decode_task_layer):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"encoder.cls_token", "encoder.pos_embed", "decoder.cls_token", "decoder.pos_embed"}

    @property
    def num_tokens(self) -> int:
        return self.config.num_codes

    @staticmethod
    def pre_process(images: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> [-1, 1], the tokenizer's input range (images must not be mean/std normalised)."""
        return images * 2.0 - 1.0

    def encode(self, images: torch.Tensor) -> QuantizerOutput:
        """Images in [0, 1] -> quantised codes (z_q (B, N, d), commitment loss, indices (B, N))."""
        enc = self.encoder
        feats = enc.fc_norm(enc.forward_features(self.pre_process(images))[:, 1:])  # B, N, D
        # the projection into the codebook space runs in fp32, as in the official code
        with torch.autocast(device_type=feats.device.type, enabled=False):
            z = self.encode_task_layer(feats.float())  # B, N, d
        return self.quantize(z)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, N, d) codes -> (B, N, target_dim) predicted teacher features."""
        B, N, d = z_q.shape
        side = math.isqrt(N)
        code_map = z_q.transpose(1, 2).reshape(B, d, side, N // side)  # B, d, h, w
        dec = self.decoder
        feats = dec.fc_norm(dec.forward_features(code_map)[:, 1:])  # B, N, D'
        return self.decode_task_layer(feats)

    @torch.no_grad()
    def get_codebook_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> (B, N) code ids: the MIM targets."""
        return self.encode(images).indices

    @staticmethod
    def rec_loss(rec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """mean over batch and patches of 1 - cos(rec, target)."""
        return (1 - (l2norm(rec.float()) * l2norm(target.float())).sum(-1)).mean()

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> VQKDOutput:
        """images in [0, 1] (B, 3, H, W); target (B, N, target_dim) teacher features."""
        q = self.encode(images)
        rec = self.decode(q.z_q)
        if target.shape != rec.shape:
            raise ValueError(f"teacher features {tuple(target.shape)} do not match the decoder's {tuple(rec.shape)}")
        rec_loss = self.rec_loss(rec, target)
        return VQKDOutput(rec_loss + q.loss, rec_loss, q.loss, q.indices, rec)


def build_vqkd(name: str = "vqkd_encoder_base_decoder_3x768x12_clip", **overrides) -> VQKD:
    """A named configuration (``VQKD_CONFIGS``) with field overrides."""
    if name not in VQKD_CONFIGS:
        raise KeyError(f"unknown VQ-KD configuration '{name}'; known: {', '.join(VQKD_CONFIGS)}")
    return VQKD(replace(VQKD_CONFIGS[name], **overrides))


def vqkd_state_dict_from_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official VQ-KD checkpoint (``model`` / ``state_dict`` already unwrapped) -> ours:
    the teacher, its scaling layer and loss modules are dropped, as the official loader does."""
    drop = ("teacher", "scaling", "loss")
    return {k: v for k, v in state_dict.items() if not k.startswith(drop)}
