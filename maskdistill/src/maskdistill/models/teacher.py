"""The frozen CLIP teacher, through transformers' ``CLIPVisionModel`` code path.

Which CLIP tensor is the target is not fixed by public material (paper card section 2.3);
``tensor`` chooses it:

* ``last_hidden`` (default): the last transformer block's tokens, *before* CLIP's
  ``post_layernorm`` and before the visual projection (768-d for ViT-B/16, 1024-d for
  ViT-L/14); both public re-implementations use this tensor;
* ``post_ln``: the same tokens after ``post_layernorm`` (with MaskDistill's affine-free
  LayerNorm of the targets this differs from ``last_hidden`` only through CLIP's final
  per-channel scale / shift);
* ``projected``: ``post_ln`` through ``visual_projection`` (512-d / 768-d; what BEiT v2's
  VQ-KD regressed); needs a ``CLIPVisionModelWithProjection``;
* ``layer:<k>``: the output of block ``k`` (1-based) before any norm.

The [CLS] token is dropped (``keep_cls=False``): the loss is on patch positions only.
Inputs are images in [0, 1], resized to ``image_size`` (the teacher grid must equal the
student grid: a /14 teacher under a /16 student at 224 runs at 196) and normalised with
CLIP's mean / std, independently of the student's normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.tokenizers.vqkd import CLIP_MEAN, CLIP_STD, Teacher

__all__ = ["TEACHERS", "TEACHER_FOR_SIZE", "ClipFeatureTeacher", "tiny_clip_config"]

# CLIP image towers, by the name used in configs (local folders only: nothing is downloaded)
TEACHERS: dict[str, dict] = {
    "clip_vit_base_patch16": dict(hub="openai/clip-vit-base-patch16", dim=768, proj_dim=512, patch=16),
    "clip_vit_large_patch14": dict(hub="openai/clip-vit-large-patch14", dim=1024, proj_dim=768, patch=14),
}
# the default teacher per student size (an open choice, paper card 2.3): CLIP-B/16 for B and L
# (the B/16 number is quoted with CLIP-B/16; for L our recollection of the paper), a CLIP-L/14-class
# teacher for H/14 (its grid matches at 224: 16 x 16).
TEACHER_FOR_SIZE: dict[str, str] = {"base": "clip_vit_base_patch16", "large": "clip_vit_base_patch16",
                                    "huge": "clip_vit_large_patch14"}


class ClipFeatureTeacher(Teacher):
    def __init__(self, model: nn.Module, *, tensor: str = "last_hidden", image_size: int | None = None,
                 keep_cls: bool = False, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD):
        super().__init__()
        self.model = model
        cfg = model.config
        # transformers 5: CLIPVisionModel is the tower itself; WithProjection wraps it as vision_model
        self.vision = getattr(model, "vision_model", model)
        self.tensor = tensor
        self.layer = None
        if tensor.startswith("layer:"):
            self.layer = int(tensor.split(":", 1)[1])
            if not 1 <= self.layer <= cfg.num_hidden_layers:
                raise ValueError(f"layer must be in [1, {cfg.num_hidden_layers}], got {self.layer}")
        elif tensor not in ("last_hidden", "post_ln", "projected"):
            raise ValueError(f"tensor must be last_hidden, post_ln, projected or layer:<k>, got {tensor!r}")
        if tensor == "projected" and not hasattr(model, "visual_projection"):
            raise ValueError("tensor 'projected' needs a CLIPVisionModelWithProjection")
        self.image_size = image_size or cfg.image_size
        self.keep_cls = keep_cls
        self.out_dim = int(cfg.projection_dim if tensor == "projected" else cfg.hidden_size)
        self.register_buffer("mean", torch.tensor(mean)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(std)[None, :, None, None], persistent=False)
        self.freeze_()

    @classmethod
    def from_pretrained(cls, path: str, **kw) -> "ClipFeatureTeacher":
        """A local transformers folder (or a hub id already cached); nothing is downloaded."""
        from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

        klass = CLIPVisionModelWithProjection if kw.get("tensor") == "projected" else CLIPVisionModel
        return cls(klass.from_pretrained(path, local_files_only=True), **kw)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.clamp(0, 1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
            x = x.clamp(0, 1)
        x = (x - self.mean) / self.std
        # CLIP's position embedding is built for config.image_size; other sizes interpolate it
        kw = {"interpolate_pos_encoding": True} if self.image_size != self.model.config.image_size else {}
        out = self.vision(pixel_values=x, output_hidden_states=self.layer is not None, **kw)
        if self.layer is not None:
            h = out.hidden_states[self.layer]  # hidden_states[0] = embeddings (after pre_layrnorm)
        else:
            h = out.last_hidden_state  # before post_layernorm
            if self.tensor in ("post_ln", "projected"):
                h = self.vision.post_layernorm(h)
            if self.tensor == "projected":
                h = self.model.visual_projection(h)
        return h if self.keep_cls else h[:, 1:]


def tiny_clip_config(image_size: int = 32, patch_size: int = 8, hidden_size: int = 32, layers: int = 2):
    """A transformers ``CLIPVisionConfig`` at test size (randomly initialised, no download)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                            intermediate_size=2 * hidden_size, num_hidden_layers=layers, num_attention_heads=2,
                            projection_dim=16)
