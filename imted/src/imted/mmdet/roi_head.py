"""imTED RoI path: single-scale RoI features from the last ViT map, the multi-scale feature modulator
(MFM), and the box head built from the MAE decoder (``MAEBBoxHead``)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead
from mmdet.registry import MODELS
from timm.models.vision_transformer import Block
from torch import nn

from vlcore.layers.pos_embed import sincos_2d_pos_embed


@MODELS.register_module()
class MAEBBoxHead(BBoxHead):
    """Box head = encoder-final LayerNorm -> ``decoder_embed`` -> + decoder sin-cos table -> MAE decoder
    blocks -> token mean -> new LayerNorm -> ``fc_cls`` / ``fc_reg``.

    Every layer up to the token mean keeps the MAE checkpoint's name (``norm``, ``decoder_embed``,
    ``decoder_pos_embed``, ``decoder_blocks.i``), so the pretrained decoder loads by name. The position
    table is stored at the pre-training grid (1, 1 + G*G, D_dec) as in MAE and resized to the RoI grid
    bicubically; it is a buffer (fixed, as in MAE), not a parameter.
    """

    def __init__(
        self,
        *,
        in_channels: int = 768,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        pretrain_grid: int = 14,
        roi_feat_size: int = 7,
        **kwargs,
    ) -> None:
        # The classifier reads the pooled decoder_embed_dim vector (with_avg_pool keeps BBoxHead from
        # multiplying in_channels by the RoI area).
        super().__init__(with_avg_pool=True, roi_feat_size=roi_feat_size, in_channels=decoder_embed_dim, **kwargs)
        self.roi_in_channels = in_channels
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm = norm(in_channels)
        self.decoder_embed = nn.Linear(in_channels, decoder_embed_dim)
        self.register_buffer(
            "decoder_pos_embed",
            sincos_2d_pos_embed(decoder_embed_dim, pretrain_grid, cls_token=True)[None].float(),
            persistent=True,
        )
        self.decoder_blocks = nn.ModuleList(
            [Block(dim=decoder_embed_dim, num_heads=decoder_num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                   norm_layer=norm) for _ in range(decoder_depth)]
        )
        self.decoder_box_norm = norm(decoder_embed_dim)
        del self.avg_pool  # the decoder tokens are averaged, not the RoI map

    def roi_pos_embed(self) -> torch.Tensor:
        """The decoder table without its class slot, resized to the RoI grid: # 1, S*S, D_dec."""
        pe = self.decoder_pos_embed[:, 1:]
        g = int(round(pe.shape[1] ** 0.5))
        s = self.roi_feat_size
        if (g, g) == tuple(s):
            return pe
        pe = pe.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # 1, D, g, g
        pe = F.interpolate(pe, size=tuple(s), mode="bicubic", align_corners=False)
        return pe.flatten(2).transpose(1, 2)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """RoI features # R, C, S, S -> decoder tokens # R, S*S, D_dec (before the token mean)."""
        x = x.flatten(2).transpose(1, 2)  # R, S*S, C
        x = self.decoder_embed(self.norm(x)) + self.roi_pos_embed()
        for blk in self.decoder_blocks:
            x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        feat = self.decoder_box_norm(self.forward_tokens(x).mean(dim=1))  # R, D_dec
        cls_score = self.fc_cls(feat) if self.with_cls else None
        bbox_pred = self.fc_reg(feat) if self.with_reg else None
        return cls_score, bbox_pred


@MODELS.register_module()
class ImTEDRoIHead(StandardRoIHead):
    """RoI head reading ``x = (N2..N6, V)`` from ``ImTED``.

    Box path: RoIAlign on V (``bbox_roi_extractor``, one stride-16 input) plus, with ``mfm_roi_extractor``,
    ``mfm_factor * RoIAlign(mfm_fc(N2..N5))``; ``mfm_factor`` starts at zero so training starts from the
    pure pretrained path. Mask path (if any) pools the first ``mask_roi_extractor.num_inputs`` maps, the
    ordinary pyramid.
    """

    def __init__(self, *, mfm_roi_extractor: dict | None = None, mfm_in_channels: int = 256,
                 vit_channels: int = 768, **kwargs) -> None:
        super().__init__(**kwargs)
        self.with_mfm = mfm_roi_extractor is not None
        if self.with_mfm:
            self.mfm_roi_extractor = MODELS.build(mfm_roi_extractor)
            self.mfm_fc = nn.Conv2d(mfm_in_channels, vit_channels, 1)
            self.mfm_factor = nn.Parameter(torch.zeros(vit_channels))

    def _bbox_forward(self, x: tuple[torch.Tensor, ...], rois: torch.Tensor) -> dict:
        feats = self.bbox_roi_extractor([x[-1]], rois)  # R, C, S, S from the ViT map
        if self.with_mfm:
            n = self.mfm_roi_extractor.num_inputs
            ms = self.mfm_roi_extractor([self.mfm_fc(p) for p in x[:n]], rois)  # R, C, S, S
            feats = feats + self.mfm_factor[None, :, None, None] * ms
        cls_score, bbox_pred = self.bbox_head(feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=feats)
