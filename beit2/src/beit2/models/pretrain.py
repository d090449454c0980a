"""BEiT v2 masked image modelling: a BEiT ViT that classifies the VQ-KD code of every
masked patch, plus the [CLS]-bottleneck "patch aggregation" branch.

    images --patch embed, masked patches -> mask token, + [CLS]--> blocks (shared rel-pos bias)
        main:        norm(last layer)                                   -> lm_head -> CE on masked patches
        aggregation: [CLS of the last layer ; patches of layer l] -> head_layers blocks -> norm -> lm_head -> CE
    loss = CE(main) + CE(aggregation)

The branch sees only the early layer's patch tokens and the final [CLS], so the [CLS]
has to carry the image's global content for the branch to solve MIM; it is discarded
after pretraining. Parameter names are those of the official pretraining checkpoints
(``cls_token``, ``mask_token``, ``patch_embed``, ``rel_pos_bias``, ``blocks``, ``norm``,
``lm_head``, ``cls_pt_layers``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from vlcore.layers.blocks import EncoderBlock
from vlcore.layers.init import trunc_normal_init_
from vlcore.mim import MIMObjective, build_objective
from vlcore.models.beit import Beit

__all__ = ["BeitV2ForMIM", "MIMOutput"]


class MIMOutput(NamedTuple):
    loss: torch.Tensor
    loss_main: torch.Tensor
    loss_agg: torch.Tensor | None
    acc_main: torch.Tensor  # top-1 code accuracy on masked patches
    acc_agg: torch.Tensor | None


class BeitV2ForMIM(Beit):
    """BEiT v2 pretraining model.

    Args (beyond :class:`vlcore.models.beit.Beit`'s geometry / width arguments):
        vocab_size: codebook size of the tokenizer (8192).
        early_layers: the aggregation branch reads the patch tokens output by this block
            (1-based count: 9 for base, 21 for large); 0 disables the branch.
        head_layers: blocks of the aggregation branch (2).
        shared_lm_head: the branch reuses ``norm`` and ``lm_head`` (True in every official run).
    """

    def __init__(
        self,
        *,
        vocab_size: int = 8192,
        early_layers: int = 9,
        head_layers: int = 2,
        shared_lm_head: bool = True,
        drop_path_rate: float = 0.0,
        init_values: float | None = 0.1,
        init_std: float = 0.02,
        **kwargs,
    ) -> None:
        kwargs.setdefault("rel_pos", "shared")
        super().__init__(
            num_classes=0, global_pool="", use_mask_token=True, init_mode="pretrain", drop_path_rate=drop_path_rate,
            init_values=init_values, init_std=init_std, **kwargs,
        )
        depth = len(self.blocks)
        if early_layers and not 1 <= early_layers <= depth:
            raise ValueError(f"early_layers must be in [1, {depth}] (or 0 to disable the branch), got {early_layers}")
        dim = self.embed_dim
        self.vocab_size = vocab_size
        self.lm_head = nn.Linear(dim, vocab_size)
        self.early_layers = early_layers if head_layers else 0
        self.shared_lm_head = shared_lm_head
        block0 = self.blocks[0]
        # the branch continues the stochastic-depth schedule at positions early_layers, early_layers + 1, ...
        n_rates = max(depth, self.early_layers + head_layers)
        dpr = torch.linspace(0, drop_path_rate, n_rates, device="cpu").tolist()
        self.cls_pt_layers = nn.ModuleList(
            EncoderBlock(
                dim=dim,
                num_heads=block0.attn.num_heads,
                mlp_ratio=block0.mlp.fc1.out_features / dim,
                qkv_bias="qv" if block0.attn.q_bias is not None else "qkv",
                norm_eps=block0.norm1.eps,
                drop_path=dpr[i],
                init_values=init_values or None,
                window_size=self.grid_size if self.rel_pos == "per_layer" else None,
            )
            for i in range(self.early_layers, self.early_layers + head_layers)
        ) if self.early_layers else nn.ModuleList()
        if self.early_layers and not shared_lm_head:
            self.cls_pt_norm = nn.LayerNorm(dim, eps=block0.norm1.eps)
            self.cls_pt_lm_head = nn.Linear(dim, vocab_size)
        else:
            self.cls_pt_norm = self.cls_pt_lm_head = None
        with torch.no_grad():
            extra = [self.lm_head, self.cls_pt_layers] + [m for m in (self.cls_pt_norm, self.cls_pt_lm_head) if m]
            for m in extra:
                trunc_normal_init_(m, std=init_std, cutoff=1.0)
            for i, blk in enumerate(self.cls_pt_layers):
                div = (2.0 * (self.early_layers + i + 1)) ** 0.5
                blk.attn.proj.weight.div_(div)
                blk.mlp.fc2.weight.div_(div)

    def forward_features_mim(
        self, x: torch.Tensor, bool_masked_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised tokens of the main path and of the aggregation branch (B, 1+N, D) each."""
        tokens = self.embed(x, bool_masked_pos)
        collect = (self.early_layers - 1,) if self.early_layers else ()
        x, kept = self.forward_blocks(tokens, collect=collect)
        if not self.early_layers:
            return self.norm(x), None
        agg = torch.cat((x[:, :1], kept[self.early_layers - 1][:, 1:]), dim=1)  # B, 1+N, D
        rel_pos_bias = self.shared_rel_pos_bias()
        for blk in self.cls_pt_layers:
            agg = self._block(blk, agg, rel_pos_bias)
        agg = self.norm(agg) if self.shared_lm_head else self.cls_pt_norm(agg)
        return self.norm(x), agg

    def forward(
        self, x: torch.Tensor, bool_masked_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits over the codebook at the masked positions: (M, V) for the main path and the
        branch (None without it); M = number of masked patches in the batch, in row-major order."""
        main, agg = self.forward_features_mim(x, bool_masked_pos)
        logits = self.lm_head(main[:, 1:][bool_masked_pos])  # M, V
        if agg is None:
            return logits, None
        head = self.lm_head if self.shared_lm_head else self.cls_pt_lm_head
        return logits, head(agg[:, 1:][bool_masked_pos])

    #: the BEiT v2 preset of the shared MIM objective (VQ-KD ids, cross-entropy, masked positions);
    #: the tokenizer stays with the caller, which passes its ids as ``codes``
    objective: MIMObjective = build_objective("beitv2")

    def mim_loss(self, x: torch.Tensor, bool_masked_pos: torch.Tensor, codes: torch.Tensor) -> MIMOutput:
        """CE over the codebook on masked patches (``vlcore.mim``'s ``beitv2`` preset); ``codes``
        (B, N) are the tokenizer's ids of the uncorrupted image; the branch's CE is added with weight 1."""
        obj = self.objective
        target = obj.select(codes, bool_masked_pos)  # M
        logits, logits_agg = self(x, bool_masked_pos)
        loss_main = obj.loss_selected(logits.float(), target)
        acc = (logits.argmax(-1) == target).float().mean()
        if logits_agg is None:
            return MIMOutput(loss_main, loss_main, None, acc, None)
        loss_agg = obj.loss_selected(logits_agg.float(), target)
        acc_agg = (logits_agg.argmax(-1) == target).float().mean()
        return MIMOutput(loss_main + loss_agg, loss_main, loss_agg, acc, acc_agg)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay()
