"""Compositional instruction-tuning data (card §4.3) as a pipeline with pluggable components.

Paper: caption an image (BLIP-2) -> extract entity tags (MPT-7B-Instruct) -> segment each tag
(CLIPSeg: sigmoid > 0.3, grey dilation, largest connected component, square box) -> two entity
images per tag (square crop with its background, and the crop with everything outside the mask
white) -> training sequence: the caption cut after each entity with the entity's image inserted
right after it, entity words dropped with probability 0.5, background / white crop chosen 50/50;
target = the original image.

Components are plain callables, so the paper's networks or simple stand-ins (the tests and the
mini world use a vocabulary extractor and a colour segmenter) can be plugged in:

* ``EntityExtractor``: caption -> candidate tags (strings)
* ``Segmenter``: (image (3, H, W) in [0, 1], tag) -> soft mask (H, W) in [0, 1]
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

COLOUR_WORDS = frozenset(
    "red orange yellow green blue purple pink brown black white grey gray magenta cyan violet gold silver".split())


class EntityExtractor(Protocol):
    def __call__(self, caption: str) -> list[str]: ...


class Segmenter(Protocol):
    def __call__(self, image: torch.Tensor, tag: str) -> torch.Tensor: ...


class VocabularyEntityExtractor:
    """Stand-in for the LLM tagger: the nouns of a known vocabulary that occur in the caption."""

    def __init__(self, nouns: Sequence[str]):
        self.nouns = list(nouns)

    def __call__(self, caption: str) -> list[str]:
        return [n for n in self.nouns if re.search(rf"\b{re.escape(n)}\b", caption)]


def filter_tags(caption: str, tags: Sequence[str]) -> list[str]:
    """The loader's tag filter: drop colour words and tags that are not whole words of the caption,
    drop tags contained in another tag, sort by first position in the caption."""
    keep = []
    for t in dict.fromkeys(x.strip() for x in tags):
        if not t or t.lower() in COLOUR_WORDS or "#" in t:
            continue
        if re.search(rf"\b{re.escape(t)}\b", caption) is None:
            continue
        keep.append(t)
    keep = [t for t in keep if not any(t != o and re.search(rf"\b{re.escape(t)}\b", o) for o in keep)]
    return sorted(keep, key=lambda t: re.search(rf"\b{re.escape(t)}\b", caption).start())


def largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, lab, index=range(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def mask_to_entity(image: torch.Tensor, soft_mask: torch.Tensor, *, threshold: float = 0.3,
                   dilation: int | None = None, out_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Threshold -> grey dilation -> largest component -> square box around it -> (crop, white-bg crop).

    Returns None when the mask is empty. ``dilation`` defaults to max(1, H // 100) (card §4.3)."""
    from scipy import ndimage

    h, w = soft_mask.shape
    m = soft_mask.detach().cpu().numpy() > threshold
    if not m.any():
        return None
    k = dilation if dilation is not None else max(1, h // 100)
    if k > 1:
        m = ndimage.grey_dilation(m.astype(np.uint8), size=(k, k)) > 0
    m = largest_component(m)
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top = int(round(min(max(cy - side / 2, 0), max(h - side, 0))))
    left = int(round(min(max(cx - side / 2, 0), max(w - side, 0))))
    side = min(side, h, w)
    crop = image[:, top: top + side, left: left + side]
    mt = torch.from_numpy(m[top: top + side, left: left + side]).to(image.dtype)
    white = crop * mt + (1 - mt)
    if out_size is not None and side != out_size:
        crop, white = (F.interpolate(x[None], size=(out_size, out_size), mode="bilinear", align_corners=False)[0]
                       for x in (crop, white))
    return crop, white


@dataclass
class EntityRecord:
    tag: str
    crop: torch.Tensor  # with background
    crop_white: torch.Tensor  # outside the mask set to white


@dataclass
class CompositionalRecord:
    """What the construction stores per image (card §4.3 step 4)."""

    image: torch.Tensor
    caption: str
    entities: list[EntityRecord] = field(default_factory=list)


@dataclass
class CompositionalBuilder:
    """Offline construction: caption (given or from ``captioner``) -> tags -> entity images."""

    extractor: Callable[[str], list[str]]
    segmenter: Callable[[torch.Tensor, str], torch.Tensor]
    captioner: Callable[[torch.Tensor], str] | None = None
    threshold: float = 0.3
    dilation: int | None = None
    entity_size: int | None = None

    def __call__(self, image: torch.Tensor, caption: str | None = None) -> CompositionalRecord:
        if caption is None:
            if self.captioner is None:
                raise ValueError("no caption given and no captioner plugged in")
            caption = self.captioner(image)
        rec = CompositionalRecord(image=image, caption=caption)
        for tag in filter_tags(caption, self.extractor(caption)):
            ent = mask_to_entity(image, self.segmenter(image, tag), threshold=self.threshold,
                                 dilation=self.dilation, out_size=self.entity_size)
            if ent is not None:
                rec.entities.append(EntityRecord(tag, *ent))
        return rec


def interleave_caption(rec: CompositionalRecord, *, drop_words_prob: float = 0.5, white_prob: float = 0.5,
                       rng: random.Random | None = None) -> list:
    """Training prompt on the fly: the caption cut after each entity and the entity image inserted
    right after it; with ``drop_words_prob`` (per sample) the entity words are removed so only the
    image stands for the entity; per entity the white-background crop is used with ``white_prob``.
    Returns a list of str and image tensors; the target is ``rec.image``."""
    rng = rng or random.Random()
    drop = rng.random() < drop_words_prob
    out: list = []
    pos = 0
    for ent in rec.entities:
        m = re.search(rf"\b{re.escape(ent.tag)}\b", rec.caption[pos:])
        if m is None:
            continue
        start, end = pos + m.start(), pos + m.end()
        text = rec.caption[pos:start] if drop else rec.caption[pos:end]
        if text.strip():
            out.append(text.strip())
        out.append(ent.crop_white if rng.random() < white_prob else ent.crop)
        pos = end
    tail = rec.caption[pos:].strip()
    if tail:
        out.append(tail)
    return out


class ColourSegmenter:
    """Stand-in segmenter for generated scenes: soft mask of pixels far from the border colour."""

    def __call__(self, image: torch.Tensor, tag: str) -> torch.Tensor:
        border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)
        bg = border.median(dim=1).values.view(3, 1, 1)
        return ((image - bg).abs().amax(0) > 0.2).float()
