"""G2SD generic distillation: a small MAE student with feature predictors, and a frozen MAE teacher.

The student sees the same masked image as the teacher (one ``noise`` tensor drives both);
its decoder output after *all* its blocks (no ``decoder_norm``) goes through
``decoderfeature_pred`` (Linear -> GELU -> Linear, output width = the teacher decoder
width) and regresses the teacher decoder's residual stream after block ``layer_index``
(no norm), layer-normalised without affine. ``encoderfeature_pred`` exists as in the
official model; its loss enters with weight 0 by default.

    imgs # B, 3, H, W  --noise # B, L-->  student encoder # B, 1 + L_keep, D_s
        -> student decoder (all blocks) # B, 1 + L, D_sd -> decoderfeature_pred # B, 1 + L, D_td
    teacher encoder -> teacher decoder blocks 1..layer_index # B, 1 + L, D_td   (the target)
"""

from __future__ import annotations

import torch
from timm.layers import Mlp
from torch import nn

from vlcore.models.mae import MaskedAutoencoderViT


class G2SDStudentMAE(MaskedAutoencoderViT):
    """MAE student of generic distillation (official ``teacher=False`` model).

    Args:
        target_dim: teacher decoder width (512 for MAE-B / L teachers).
        encoder_target_dim: teacher encoder width (the weight-0 encoder term).
        **kwargs: ``MaskedAutoencoderViT`` arguments.
    """

    def __init__(self, *, target_dim: int = 512, encoder_target_dim: int = 768, **kwargs) -> None:
        super().__init__(**kwargs)
        self.target_dim = target_dim
        self.encoderfeature_pred = Mlp(self.embed_dim, encoder_target_dim, encoder_target_dim)
        self.decoderfeature_pred = Mlp(self.decoder_embed_dim, target_dim, target_dim)
        for m in (self.encoderfeature_pred, self.decoderfeature_pred):
            for lin in (m.fc1, m.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward_distill(
        self, imgs: torch.Tensor, noise: torch.Tensor, mask_ratio: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Predictions for the teacher's features under the mask given by ``noise`` (B, L).

        Returns ``decoder`` (B, 1 + L, target_dim), ``encoder`` (B, 1 + L_keep, encoder_target_dim),
        ``mask`` (B, L bool) and ``ids_restore`` (B, L).
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        hidden = self.forward_decoder_hidden(latent, ids_restore)  # B, 1 + L, D_sd: no decoder_norm
        return {
            "decoder": self.decoderfeature_pred(hidden),
            "encoder": self.encoderfeature_pred(latent),
            "mask": mask,
            "ids_restore": ids_restore,
        }

    def forward(  # type: ignore[override]
        self, imgs: torch.Tensor, noise: torch.Tensor, mask_ratio: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Generic distillation is this model's training step: see ``forward_distill``.

        (``forward_encoder`` / ``forward_decoder`` / ``forward_loss`` still give MAE pixels.)
        """
        return self.forward_distill(imgs, noise, mask_ratio)


@torch.no_grad()
def teacher_features(
    teacher: MaskedAutoencoderViT, imgs: torch.Tensor, noise: torch.Tensor, *, layer_index: int,
    mask_ratio: float | None = None,
) -> dict[str, torch.Tensor]:
    """The frozen teacher's targets: decoder stream after block ``layer_index`` (1-based) and the
    encoder's pre-norm output, both without normalisation: ``decoder`` (B, 1 + L, D_td),
    ``encoder`` (B, 1 + L_keep, D_t), ``mask`` (B, L)."""
    if not 1 <= layer_index <= len(teacher.decoder_blocks):
        raise ValueError(f"layer_index must be in [1, {len(teacher.decoder_blocks)}], got {layer_index}")
    latent, mask, ids_restore, prenorm = teacher.forward_encoder(imgs, mask_ratio, noise, return_prenorm=True)
    hidden = teacher.forward_decoder_hidden(latent, ids_restore, num_blocks=layer_index)
    return {"decoder": hidden, "encoder": prenorm, "mask": mask}


def freeze(module: nn.Module) -> nn.Module:
    """requires_grad False everywhere and eval mode (no dropout / drop path in a teacher)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()
