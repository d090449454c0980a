"""`ConformerDet`: the Conformer CNN branch as an MMDetection 3.x backbone feeding an FPN.

As in the official MMDetection 2.8 backbone, only CNN-branch maps go to the neck: the
outputs of the last block of c2 (stride 4), of c3 (stride 8), of the block before the
last (stride 16) and of the last block (stride 32), i.e. blocks 4 / 8 / 11 / 12 at depth
12. The classifier heads and `trans_norm` are dropped, so the backbone's state dict has
the official detector's `backbone.*` names.

`init_cfg=dict(type='Pretrained', checkpoint=PATH)` loads ImageNet weights in any layout
`conformer.convert` reads (official `{'model': ...}`, mmpretrain, a detector, ours) and
fails naming the keys when the backbone is not fully covered, where mmengine's
`strict=False` loader would silently load nothing from a `{'model': ...}` file.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from conformer.models.conformer import Conformer

try:
    from mmdet.registry import MODELS
except ImportError as e:  # pragma: no cover - mmdet is part of the stack
    raise ImportError("conformer.mmdet needs MMDetection 3.x (pip install mmdet==3.3.0)") from e


@MODELS.register_module()
class ConformerDet(Conformer):
    """Conformer backbone for detectors.

    Args:
        out_indices: feature levels returned (0..3 = strides 4, 8, 16, 32).
        norm_eval: keep every BatchNorm (CNN branch, stem and FCUUp) in eval mode while training.
        frozen_stages: -1 trains everything; >= 0 freezes the stem conv and its BatchNorm
            (the official backbone freezes nothing more for any value).
        init_cfg: None (our initialisation) or dict(type='Pretrained', checkpoint=PATH).
        Other arguments: those of `Conformer` (official detector: patch_size=32, channel_ratio=4,
            embed_dim=384, depth=12, num_heads=6, qkv_bias=True).
    """

    def __init__(
        self,
        *,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_eval: bool = True,
        frozen_stages: int = 1,
        init_cfg: dict | None = None,
        patch_size: int = 32,
        channel_ratio: float = 4,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        **kwargs,
    ) -> None:
        kwargs.pop("num_classes", None)
        super().__init__(patch_size=patch_size, channel_ratio=channel_ratio, embed_dim=embed_dim, depth=depth,
                         num_heads=num_heads, num_classes=0, **kwargs)
        self.trans_norm = nn.Identity()  # unused without the transformer head; absent from detector checkpoints
        n = len(self.feature_info)
        self.out_indices = tuple(sorted(i % n for i in out_indices))
        if any(not -n <= i < n for i in out_indices):
            raise ValueError(f"out_indices={tuple(out_indices)}: ConformerDet has {n} levels (0..{n - 1})")
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.init_cfg = init_cfg
        if init_cfg is not None and init_cfg.get("type") != "Pretrained":
            raise ValueError(f"ConformerDet init_cfg must be None or type='Pretrained', got {init_cfg}")
        self.out_channels = [self.feature_info[i]["num_chs"] for i in self.out_indices]
        self._freeze_stages()

    def init_weights(self) -> None:
        """Called by mmengine before training: load the pretrained checkpoint, if any."""
        if not self.init_cfg:
            return  # the constructor already initialised the weights
        from vlcore.checkpoint import load_state_dict_strict

        from conformer.convert import load_state_dict_any, ours_to_mmdet_backbone

        path = self.init_cfg["checkpoint"]
        sd = ours_to_mmdet_backbone(load_state_dict_any(path))
        load_state_dict_strict(self, sd, source=str(path))

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.bn1.eval()
            for m in (self.conv1, self.bn1):
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True) -> "ConformerDet":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # B, C_i, H / s_i, W / s_i for the selected levels
        return tuple(self.forward_intermediates(x, indices=list(self.out_indices), stop_early=True,
                                                intermediates_only=True))
