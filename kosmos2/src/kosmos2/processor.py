"""Model inputs for Kosmos-2: ``<s> <image> [64 image slots] </image> text`` plus the square-resized image.

`Kosmos2Processor(tokenizer)(text, image, bboxes=...)` gives

* ``input_ids`` (B, T): the 64 slots carry ids ``first_image_token_id .. +63`` (4 .. 67, as HF and the
  official evaluation do; their embeddings are overwritten by the image latents, so the ids do not matter);
* ``image_embeds_position_mask`` (B, T): 1 on the 64 slots, 0 elsewhere;
* ``attention_mask`` (B, T): 0 on padding;
* ``pixel_values`` (B, 3, S, S): the image resized to S x S without cropping (bicubic), scaled to
  [0, 1] and normalised with the CLIP mean / std. Boxes predicted by the model are fractions of
  this square, so multiply by the original width and height to draw them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vlcore.errors import UserError

from kosmos2.grounding import BOO, EOO, box_to_loc_text, parse_entities
from kosmos2.tokenizer import Kosmos2Tokenizer

__all__ = ["CLIP_MEAN", "CLIP_STD", "load_image", "square_transform", "insert_boxes", "Kosmos2Processor"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_image(image):
    """A PIL RGB image from a path, a PIL image or an HxWx3 uint8 array; a clear error otherwise."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise UserError(f"image not found: {p}")
        try:
            with Image.open(p) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"cannot read image {p}: {e}") from None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        return Image.fromarray(image.astype(np.uint8)).convert("RGB")
    raise UserError(f"unsupported image input of type {type(image).__name__}")


def square_transform(image, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """Resize to size x size (bicubic, no crop), scale to [0, 1], normalise: (3, size, size) float32."""
    from PIL import Image

    im = load_image(image).resize((size, size), resample=Image.BICUBIC)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)  # 3, S, S
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def insert_boxes(text: str, bboxes: Sequence, num_bins: int = 32, rule: str = "hf") -> str:
    """Write ``<object> locs </object>`` after the i-th ``<phrase>...</phrase>`` of `text` for bboxes[i].

    bboxes[i] is None (no box), one box, or a list of boxes; a box is 4 normalised floats or a
    ready (ul, lr) pair. The number of entries must equal the number of phrases.
    """
    phrases = list(re.finditer(r"<phrase>.+?</phrase>", text))
    if len(phrases) != len(bboxes):
        raise UserError(f"{len(bboxes)} box entries for {len(phrases)} <phrase>...</phrase> spans in {text!r}")
    out, cur = [], 0
    for m, boxes in zip(phrases, bboxes):
        out.append(text[cur : m.end()])
        cur = m.end()
        if boxes is None or len(boxes) == 0:
            continue
        if not isinstance(boxes[0], (list, tuple)):
            boxes = [boxes]
        try:
            out.append(BOO + box_to_loc_text(boxes, num_bins, rule) + EOO)
        except ValueError as e:
            raise UserError(f"bad box for {m.group(0)!r}: {e}") from None
    out.append(text[cur:])
    return "".join(out)


class Kosmos2Processor:
    """Tokenise prompts with the image slots and preprocess images (module docstring)."""

    def __init__(
        self,
        tokenizer: Kosmos2Tokenizer,
        image_size: int = 224,
        num_image_tokens: int = 64,
        first_image_token_id: int | None = None,
        box_rule: str = "hf",
    ):
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.num_image_tokens = num_image_tokens
        self.first_image_token_id = tokenizer.unk_id + 1 if first_image_token_id is None else first_image_token_id
        self.box_rule = box_rule

    @classmethod
    def from_spm(cls, spm_model: str | Path, num_bins: int = 32, **kw) -> "Kosmos2Processor":
        return cls(Kosmos2Tokenizer(spm_model, num_bins=num_bins), **kw)

    @property
    def num_bins(self) -> int:
        return self.tokenizer.num_bins

    def prompt_ids(self, text: str, bboxes: Sequence | None = None, add_eos: bool = False) -> tuple[list[int], list[int]]:
        """(input_ids, image_embeds_position_mask) of one prompt, unpadded."""
        tok = self.tokenizer
        if bboxes is not None:
            text = insert_boxes(text, bboxes, tok.num_bins, self.box_rule)
        n = self.num_image_tokens
        head = [tok.bos_id, tok.special_ids["<image>"]]
        slots = list(range(self.first_image_token_id, self.first_image_token_id + n))
        body = [tok.special_ids["</image>"]] + tok.encode(text, add_bos=False, add_eos=add_eos)
        return head + slots + body, [0] * len(head) + [1] * n + [0] * len(body)

    def __call__(self, text, images=None, bboxes=None, add_eos: bool = False, padding_side: str = "right") -> dict:
        """Batch of prompts (a str is a batch of one) and, optionally, their images."""
        texts = [text] if isinstance(text, str) else list(text)
        if bboxes is not None and isinstance(text, str):
            bboxes = [bboxes]
        rows = [self.prompt_ids(t, None if bboxes is None else bboxes[i], add_eos) for i, t in enumerate(texts)]
        T = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_id
        ids_b, mask_b, attn_b = [], [], []
        for ids, mask in rows:
            k = T - len(ids)
            if padding_side == "left":
                ids_b.append([pad] * k + ids), mask_b.append([0] * k + mask), attn_b.append([0] * k + [1] * len(ids))
            else:
                ids_b.append(ids + [pad] * k), mask_b.append(mask + [0] * k), attn_b.append([1] * len(ids) + [0] * k)
        out = {
            "input_ids": torch.tensor(ids_b, dtype=torch.long),
            "attention_mask": torch.tensor(attn_b, dtype=torch.long),
            "image_embeds_position_mask": torch.tensor(mask_b, dtype=torch.long),
        }
        if images is not None:
            imgs = [images] if not isinstance(images, (list, tuple)) else list(images)
            if len(imgs) != len(texts):
                raise UserError(f"{len(imgs)} images for {len(texts)} prompts")
            out["pixel_values"] = torch.stack([square_transform(im, self.image_size) for im in imgs])
        return out

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def post_process_generation(self, text: str, cleanup_and_extract: bool = True):
        """The caption after the last ``</image>``; with cleanup, ``(clean_text, entities)`` as in `parse_entities`."""
        if not cleanup_and_extract:
            return text.split("</image>")[-1]
        return parse_entities(text, self.tokenizer.num_bins)
