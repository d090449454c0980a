"""``BEiTv2ViT``: the BEiT v2 ViT (``vlcore.models.beit.Beit``) as an MMSegmentation backbone.

Outputs the (B, D, H/16, W/16) maps of ``out_indices`` through the timm-style
``forward_intermediates``; the BEiT segmentation pyramid (x4 / x2 / x1 / x1/2) is
MMSegmentation's ``Feature2Pyramid`` neck. Each block has its own relative position
table for the segmentation grid (32 x 32 at 512 px); ``pretrained`` may be an official or
our pretraining checkpoint (the shared table is copied into every block and re-gridded)
or a fine-tuned one.
"""

from __future__ import annotations

from mmseg.registry import MODELS

from vlcore.models.beit import Beit


@MODELS.register_module()
class BEiTv2ViT(Beit):
    """BEiT v2 backbone for dense prediction.

    Args:
        img_size: training crop (fixes the relative position grid).
        out_indices: 0-based blocks whose outputs feed the neck ((3, 5, 7, 11) base,
            (7, 11, 15, 23) large).
        pretrained: checkpoint loaded by :meth:`init_weights` (any layout ``beit2.convert`` reads).
        rel_pos_resize: ``geometric`` (BEiT's rule) or ``bicubic`` for re-gridding tables.
        the rest: :class:`vlcore.models.beit.Beit`.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 512,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        init_values: float | None = 0.1,
        drop_path_rate: float = 0.15,
        out_indices: tuple[int, ...] = (3, 5, 7, 11),
        pretrained: str | None = None,
        rel_pos_resize: str = "geometric",
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                         num_heads=num_heads, mlp_ratio=mlp_ratio, init_values=init_values,
                         drop_path_rate=drop_path_rate, num_classes=0, global_pool="", rel_pos="per_layer")
        if max(out_indices) >= depth:
            raise ValueError(f"out_indices {out_indices} exceed the {depth} blocks")
        self.out_indices = tuple(out_indices)
        self.pretrained = pretrained
        self.rel_pos_resize = rel_pos_resize
        self.init_cfg = init_cfg
        self.is_init = False

    def init_weights(self, *args, **kwargs) -> None:
        """Without arguments (as mmengine calls it): load ``pretrained`` if given; the
        constructor already holds BEiT's initialisation (``Beit.init_weights`` with arguments)."""
        if args or kwargs:
            return super().init_weights(*args, **kwargs)
        if self.pretrained and not self.is_init:
            from beit2.convert import detect_layout, finetune_init_from_pretrain, load_finetune_init, read_checkpoint
            from vlcore.models.beit import beit_state_dict_from_official

            sd = read_checkpoint(self.pretrained)
            if detect_layout(sd) == "pretrain":
                sd, _ = finetune_init_from_pretrain(sd, self)
            else:
                sd = beit_state_dict_from_official(sd, self, rel_pos_resize=self.rel_pos_resize)
            own = self.state_dict()
            sd = {k: v for k, v in sd.items() if k in own and not k.startswith(("head.", "fc_norm.", "norm."))}
            load_finetune_init(self, {**{k: own[k] for k in own if k.startswith("norm.")}, **sd},
                               source=self.pretrained)
        self.is_init = True

    def forward(self, x):  # type: ignore[override]
        return tuple(self.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True))
