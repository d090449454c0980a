"""BEiT-3 Multiway Transformer and its task heads.

Two layouts of the Multiway layer:

* ``decoupled`` (the released base/large checkpoints, torchscale ``multiway=True``):
  every parameterised sub-module of a layer (norms, q/k/v/out projections, the
  attention inner norm, the FFN) has a vision copy ``A`` and a language copy ``B``;
  only the softmax over the joint ``[image; text]`` sequence is shared.
* ``shared_attention`` (the paper's giant model): one self-attention for all tokens,
  V-FFN / L-FFN experts in every layer and, in the top ``vl_layers`` layers, a
  VL-FFN that takes every token of an image-text input.

Both use Sub-LN (Magneto) with gamma = sqrt(log 2N) on fc1/fc2/out_proj/v_proj and
learned per-modality position tables whose indices start at 2 (fairseq), separately
for the image part and the text part.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import nn

from vlcore.layers import TransformerStack
from vlcore.layers.multiway import ALL_A, ALL_B, MultiwayNetwork, set_split_position

POS_OFFSET = 2  # fairseq: positions 0 and 1 are never used
VOCAB_SIZE = 64010  # 64k sentencepiece pieces + specials (XLM-R layout)
PAD_ID, BOS_ID, EOS_ID, MASK_ID = 1, 0, 2, 64001


class BEiT3(nn.Module):
    """The Multiway backbone: vision embedding, text embedding, Multiway Sub-LN encoder.

    Args:
        img_size, patch_size, in_chans: square input images.
        embed_dim, depth, num_heads, mlp_ratio: encoder shape.
        vocab_size: text vocabulary (64010 for the released sentencepiece model).
        max_text_len: rows of the language position table (torchscale max_source_positions).
        multiway: ``decoupled`` (released), ``shared_attention`` (paper) or ``none`` (a dense
            Transformer of the same depth and width: one set of weights for every token; ablation).
        vl_layers: top layers with a VL-FFN expert (paper: 3 for giant); shared_attention only.
        normalize_output: final (Multiway) LayerNorm (off for the ImageNet / VQA heads).
        drop_path_rate: stochastic depth.
        magneto_init: apply the Sub-LN gain sqrt(log 2N) after the trunc-normal init.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        vocab_size: int = VOCAB_SIZE,
        max_text_len: int = 1024,
        multiway: Literal["decoupled", "shared_attention", "none"] = "decoupled",
        vl_layers: int = 0,
        normalize_output: bool = True,
        drop_path_rate: float = 0.0,
        magneto_init: bool = True,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if vl_layers and multiway != "shared_attention":
            raise ValueError("a VL-FFN expert belongs to the paper's shared_attention layout")
        if not 0 <= vl_layers <= depth:
            raise ValueError(f"vl_layers must be in [0, {depth}], got {vl_layers}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid = img_size // patch_size
        self.num_patches = self.grid**2
        self.embed_dim = self.num_features = embed_dim
        self.depth, self.multiway, self.vl_layers = depth, multiway, vl_layers
        self.vocab_size, self.max_text_len = vocab_size, max_text_len

        self.patch_embed = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.text_embed = nn.Embedding(vocab_size, embed_dim)
        self.pos_embed_image = nn.Embedding(self.num_patches + 1 + POS_OFFSET, embed_dim)
        self.pos_embed_text = nn.Embedding(max_text_len, embed_dim)
        self.encoder = TransformerStack(
            depth=depth,
            dim=embed_dim,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            norm_layout="subln",
            qkv_bias="qkv",
            norm_eps=1e-5,
            drop_path_rate=drop_path_rate,
            final_norm=normalize_output,
            multiway=None if multiway == "none" else multiway,
            value_init=None,  # applied below, after the trunc-normal init
        )
        hidden = int(embed_dim * mlp_ratio)
        # VL experts of the top layers: their own pre-FFN norm and FFN (with Sub-LN norm)
        self.vl_norm = nn.ModuleList(nn.LayerNorm(embed_dim, eps=1e-5) for _ in range(vl_layers))
        self.vl_mlp = nn.ModuleList(
            Mlp(in_features=embed_dim, hidden_features=hidden, norm_layer=nn.LayerNorm) for _ in range(vl_layers)
        )
        self.init_weights(magneto_init=magneto_init)

    # ------------------------------------------------------------------ init
    def init_weights(self, *, magneto_init: bool = True) -> None:
        """trunc-normal(0.02) everywhere, THEN the Magneto gain.

        The official fine-tuning wrapper applies its trunc-normal init after torchscale's
        gain and so erases it; from scratch the gain must come last.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.text_embed.weight, std=self.embed_dim**-0.5)
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.mask_token, std=0.02)
        if magneto_init:
            self.apply_magneto_gain_()

    @property
    def magneto_gain(self) -> float:
        return math.sqrt(math.log(2.0 * self.depth))

    @torch.no_grad()
    def apply_magneto_gain_(self) -> None:
        """Scale fc1, fc2, out_proj and the v part of qkv by sqrt(log 2N) (torchscale Encoder)."""
        g = self.magneto_gain
        dim = self.embed_dim
        for name, p in self.named_parameters():
            if not name.startswith(("encoder.blocks.", "vl_mlp.")):
                continue
            if ".mlp." in name or name.startswith("vl_mlp.") or ".attn.proj." in name:
                if (".fc1." in name or ".fc2." in name or ".attn.proj." in name) and name.endswith("weight"):
                    p.mul_(g)
            elif ".attn.qkv." in name and name.endswith("weight"):
                p[2 * dim :].mul_(g)

    # ------------------------------------------------------------------ API
    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "mask_token", "pos_embed_image.weight", "pos_embed_text.weight"}

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^cls_token|^mask_token|^patch_embed|^text_embed|^pos_embed", "blocks": r"^encoder\.blocks\.(\d+)"}

    def embed_image(self, image: torch.Tensor, masked_position: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, 3, H, W), masked_position (B, N) bool -> (B, 1 + N, C) with positions."""
        if image.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"image size {tuple(image.shape[-2:])} != model size {self.img_size}")
        x = self.patch_embed(image).flatten(2).transpose(1, 2)  # B, N, C
        if masked_position is not None:
            w = masked_position.unsqueeze(-1).type_as(x)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)  # B, 1+N, C
        pos = torch.arange(POS_OFFSET, x.shape[1] + POS_OFFSET, device=x.device)
        return x + self.pos_embed_image(pos)

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """text (B, T) ids -> (B, T, C) with positions."""
        if text.shape[1] + POS_OFFSET > self.max_text_len:
            raise ValueError(f"text of {text.shape[1]} tokens exceeds {self.max_text_len - POS_OFFSET}")
        pos = torch.arange(POS_OFFSET, text.shape[1] + POS_OFFSET, device=text.device)
        return self.text_embed(text) + self.pos_embed_text(pos)

    def forward_features(
        self,
        image: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        *,
        text_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        masked_position: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Image-only, text-only or ``[image; text]``; returns (B, N, C) and the split position.

        ``text_padding_mask``: (B, T), True = padding. ``attn_mask``: additive (N, N) or bool
        (True = may attend).
        """
        if image is None and text is None:
            raise ValueError("give an image, a text or both")
        if text is None:
            x, split, kpm = self.embed_image(image, masked_position), ALL_A, None
        elif image is None:
            x, split, kpm = self.embed_text(text), ALL_B, text_padding_mask
        else:
            xi = self.embed_image(image, masked_position)
            x = torch.cat((xi, self.embed_text(text)), dim=1)  # B, 1+N+T, C
            split = xi.shape[1]
            kpm = None
            if text_padding_mask is not None:
                kpm = torch.cat((text_padding_mask.new_zeros(xi.shape[:2]), text_padding_mask), dim=1)
        if kpm is not None:
            kpm = kpm.bool()
            x = x * (~kpm).unsqueeze(-1).to(x.dtype)  # torchscale zeroes padded embeddings
        set_split_position(self.encoder, split)
        first_vl = self.depth - self.vl_layers
        for i, blk in enumerate(self.encoder.blocks):
            if i >= first_vl and split > 0:
                # paper's fusion layers: shared attention, then every token through the VL-FFN
                j = i - first_vl
                x = blk._residual(
                    x,
                    lambda h: blk.attn(h, attn_mask=attn_mask, key_padding_mask=kpm),
                    blk.norm1,
                    blk.gamma_1,
                    blk.drop_path1,
                )
                x = x + blk.drop_path2(self.vl_mlp[j](self.vl_norm[j](x)))
            else:
                x = blk(x, attn_mask=attn_mask, key_padding_mask=kpm)
        x = self.encoder.norm(x)
        set_split_position(self.encoder, ALL_A)
        return x, split

    def forward(self, image=None, text=None, **kwargs) -> torch.Tensor:
        return self.forward_features(image, text, **kwargs)[0]


# ---------------------------------------------------------------------- heads
class BEiT3Pretrain(nn.Module):
    """Masked data modelling: untied MLM head (text ids) and MIM head (visual token ids)."""

    def __init__(self, *, num_visual_tokens: int = 8192, **kwargs) -> None:
        super().__init__()
        self.beit3 = BEiT3(**kwargs)
        d = self.beit3.embed_dim
        self.mlm_head = nn.Linear(d, self.beit3.vocab_size)
        self.mim_head = nn.Linear(d, num_visual_tokens)
        for h in (self.mlm_head, self.mim_head):
            trunc_normal_(h.weight, std=0.02)
            nn.init.zeros_(h.bias)

    def forward_mim(self, image, masked_position, targets) -> torch.Tensor:
        """image-only masked image modelling: CE of visual ids at masked patches."""
        x, _ = self.beit3.forward_features(image, masked_position=masked_position)
        logits = self.mim_head(x[:, 1:][masked_position])
        return F.cross_entropy(logits, targets[masked_position])

    def forward_mlm(self, text, labels, image=None, text_padding_mask=None) -> torch.Tensor:
        """text-only or image-text MLM: labels (B, T) with -100 at unmasked positions."""
        x, split = self.beit3.forward_features(image, text, text_padding_mask=text_padding_mask)
        xt = x[:, max(split, 0) :]  # B, T, C
        sel = labels != -100
        return F.cross_entropy(self.mlm_head(xt[sel]), labels[sel])


class BEiT3ForRetrieval(nn.Module):
    """Dual encoder: image-only and text-only passes, linear heads, InfoNCE."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.beit3 = BEiT3(**kwargs)
        d = self.beit3.embed_dim
        self.vision_head = nn.Linear(d, d, bias=False)
        self.language_head = nn.Linear(d, d, bias=False)
        trunc_normal_(self.vision_head.weight, std=0.02)
        trunc_normal_(self.language_head.weight, std=0.02)
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    def embed_images(self, image):
        return F.normalize(self.vision_head(self.beit3(image)[:, 0]), dim=-1)

    def embed_texts(self, text, text_padding_mask=None):
        return F.normalize(self.language_head(self.beit3(text=text, text_padding_mask=text_padding_mask)[:, 0]), dim=-1)

    def forward(self, image, text, text_padding_mask=None) -> torch.Tensor:
        zi, zt = self.embed_images(image), self.embed_texts(text, text_padding_mask)
        logits = self.logit_scale.exp() * zi @ zt.t()
        y = torch.arange(len(zi), device=zi.device)
        return (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2


class Pooler(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dense = nn.Linear(dim, dim)

    def forward(self, x):  # B, C (position 0)
        return torch.tanh(self.dense(self.norm(x)))


class BEiT3ForVQA(nn.Module):
    """Fused input, image-[CLS] pooler, MLP over the answer vocabulary, BCE x num_answers."""

    def __init__(self, *, num_answers: int = 3129, **kwargs) -> None:
        super().__init__()
        kwargs.setdefault("normalize_output", False)
        self.beit3 = BEiT3(**kwargs)
        d = self.beit3.embed_dim
        self.pooler = Pooler(d)
        self.head = nn.Sequential(nn.Linear(d, 2 * d), nn.LayerNorm(2 * d), nn.GELU(), nn.Linear(2 * d, num_answers))
        self.num_answers = num_answers

    def forward(self, image, text, text_padding_mask=None) -> torch.Tensor:
        x = self.beit3(image, text, text_padding_mask=text_padding_mask)
        return self.head(self.pooler(x[:, 0]))

    def loss(self, logits, soft_targets) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, soft_targets) * self.num_answers


class BEiT3ForNLVR2(nn.Module):
    """Two fused passes (image_a, text), (image_b, text); concat image-CLS and text-CLS of both."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.beit3 = BEiT3(**kwargs)
        d = self.beit3.embed_dim
        self.head = nn.Sequential()
        self.head.add_module("norm1", nn.LayerNorm(4 * d))
        self.head.add_module("dense1", nn.Linear(4 * d, 2 * d))
        self.head.add_module("norm2", nn.LayerNorm(2 * d))
        self.head.add_module("act", nn.GELU())
        self.head.add_module("dense2", nn.Linear(2 * d, 2))
        with torch.no_grad():
            self.head.dense1.weight.mul_(0.001)
            self.head.dense2.weight.mul_(0.001)

    def forward(self, image_a, image_b, text, text_padding_mask=None) -> torch.Tensor:
        b = image_a.shape[0]
        img = torch.cat((image_a, image_b))
        txt = torch.cat((text, text))
        pm = None if text_padding_mask is None else torch.cat((text_padding_mask, text_padding_mask))
        x, split = self.beit3.forward_features(img, txt, text_padding_mask=pm)
        feats = torch.cat((x[:, 0], x[:, split]), dim=-1)  # 2B, 2C
        return self.head(torch.cat((feats[:b], feats[b:]), dim=-1))


def caption_attn_mask(num_image: int, num_text: int, device=None) -> torch.Tensor:
    """Additive mask: image<->image full, text->image full, text->text causal, image->text none."""
    n = num_image + num_text
    allow = torch.zeros(n, n, dtype=torch.bool, device=device)
    allow[:, :num_image] = True
    allow[num_image:, num_image:] = torch.ones(num_text, num_text, dtype=torch.bool, device=device).tril()
    return torch.zeros(n, n, device=device).masked_fill(~allow, float("-inf"))


class BEiT3ForCaptioning(nn.Module):
    """Masked LM inside captions under a causal text mask; greedy autoregressive decoding."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.beit3 = BEiT3(**kwargs)
        self.mlm_head = nn.Linear(self.beit3.embed_dim, self.beit3.vocab_size)
        trunc_normal_(self.mlm_head.weight, std=0.02)
        nn.init.zeros_(self.mlm_head.bias)

    def logits(self, image, text, text_padding_mask=None) -> torch.Tensor:
        mask = caption_attn_mask(self.beit3.num_patches + 1, text.shape[1], image.device)
        x, split = self.beit3.forward_features(image, text, attn_mask=mask, text_padding_mask=text_padding_mask)
        return self.mlm_head(x[:, split:])  # B, T, V

    def loss(self, image, text, labels, text_padding_mask=None, label_smoothing: float = 0.1) -> torch.Tensor:
        lg = self.logits(image, text, text_padding_mask)
        sel = labels != -100
        return F.cross_entropy(lg[sel], labels[sel], label_smoothing=label_smoothing)

    @torch.no_grad()
    def generate(self, image, *, max_len: int = 16, bos_id: int = BOS_ID, eos_id: int = EOS_ID, mask_id: int = MASK_ID):
        """Greedy decoding: at each step append [MASK] and predict it (the official scheme)."""
        b = image.shape[0]
        out = torch.full((b, 1), bos_id, dtype=torch.long, device=image.device)
        done = torch.zeros(b, dtype=torch.bool, device=image.device)
        for _ in range(max_len):
            inp = torch.cat((out, torch.full((b, 1), mask_id, dtype=torch.long, device=image.device)), dim=1)
            nxt = self.logits(image, inp)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            out = torch.cat((out, nxt[:, None]), dim=1)
            done |= nxt == eos_id
            if done.all():
                break
        return out

    @torch.no_grad()
    def generate_beam(self, image, *, num_beams: int = 3, length_penalty: float = 1.0, max_len: int = 16,
                      bos_id: int = BOS_ID, eos_id: int = EOS_ID, mask_id: int = MASK_ID) -> torch.Tensor:
        """Beam search with the same [MASK]-appending step as :meth:`generate`.

        A hypothesis is ranked by its summed token log-probability divided by
        (number of generated tokens) ** ``length_penalty``; a beam is finished when it emits
        ``eos_id``. Each image keeps the ``num_beams`` best unfinished prefixes per step and
        stops once ``num_beams`` hypotheses are finished (or after ``max_len`` tokens). Returns
        (B, 1 + max generated length) ids, ``bos_id`` first, padded with ``eos_id``;
        ``num_beams=1`` is greedy decoding."""
        if num_beams < 1:
            raise ValueError("num_beams must be >= 1")
        results = []
        for img in image:  # one image at a time, its beams batched
            alive = [([bos_id], 0.0)]
            finished: list[tuple[list[int], float]] = []
            for step in range(max_len):
                seqs = torch.tensor([s for s, _ in alive], dtype=torch.long, device=image.device)
                inp = torch.cat((seqs, torch.full((len(alive), 1), mask_id, dtype=torch.long, device=image.device)), 1)
                logp = self.logits(img[None].expand(len(alive), *img.shape), inp)[:, -1].float().log_softmax(-1)
                total = logp + torch.tensor([sc for _, sc in alive], device=logp.device)[:, None]  # beams, V
                top, idx = total.flatten().topk(min(2 * num_beams, total.numel()))
                nxt = []
                for sc, i in zip(top.tolist(), idx.tolist()):
                    beam, tok = divmod(i, total.shape[1])
                    seq = alive[beam][0] + [tok]
                    if tok == eos_id:
                        finished.append((seq, sc / (step + 1) ** length_penalty))
                    else:
                        nxt.append((seq, sc))
                    if len(nxt) == num_beams:
                        break
                if len(finished) >= num_beams or not nxt:
                    break
                alive = nxt
            else:
                finished += [(s, sc / (len(s) - 1) ** length_penalty) for s, sc in alive]
            results.append(max(finished, key=lambda t: t[1])[0])
        width = max(len(s) for s in results)
        out = torch.full((len(results), width), eos_id, dtype=torch.long, device=image.device)
        for i, s in enumerate(results):
            out[i, : len(s)] = torch.tensor(s, device=image.device)
        return out


class BEiT3ForImageClassification(nn.Module):
    """Vision branch only: mean of patch tokens -> LayerNorm -> Linear (x0.001 at init)."""

    def __init__(self, *, num_classes: int = 1000, **kwargs) -> None:
        super().__init__()
        kwargs.setdefault("normalize_output", False)
        self.beit3 = BEiT3(**kwargs)
        d = self.beit3.embed_dim
        self.fc_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        with torch.no_grad():
            self.head.weight.mul_(0.001)
        nn.init.zeros_(self.head.bias)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.fc_norm(x[:, 1:].mean(1))
        return x if pre_logits else self.head(x)

    def forward(self, image):
        return self.forward_head(self.beit3(image))
