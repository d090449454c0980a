"""Grounding as text: location tokens, grounded-caption serialisation, and parsing.

A box is written as two location tokens on a P x P grid over the (square-resized)
image: the cell of its upper-left corner and the cell of its lower-right corner,
each indexed row-major, ``index = y_bin * P + x_bin`` (P = 32 in Kosmos-2, so
1,024 tokens ``<patch_index_0000>`` ... ``<patch_index_1023>``).

A text span is linked to its boxes in one of two forms:

* tokens (what the model reads and writes)::

    a photo of<phrase> a dog</phrase><object><patch_index_0044><patch_index_0863></object> in a field

  several boxes for one span are joined by ``</delimiter_of_multi_objects/>``;
* markdown (the paper's way of explaining it)::

    a photo of [a dog](<patch_index_0044><patch_index_0863>) in a field

`parse_entities` turns a generated sequence back into ``(clean_text, entities)``
with each entity ``(phrase, (start, end), [boxes])``: the same result as the HF
``Kosmos2Processor.post_process_generation`` on the same string, and it never
raises, whatever the model produced.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

__all__ = [
    "BOP",
    "EOP",
    "BOO",
    "EOO",
    "DELIM",
    "GROUNDING",
    "BOI",
    "EOI",
    "loc_token",
    "loc_index",
    "box_to_tokens",
    "tokens_to_box",
    "box_to_loc_text",
    "format_entities",
    "parse_entities",
]

BOI, EOI = "<image>", "</image>"
BOP, EOP = "<phrase>", "</phrase>"
BOO, EOO = "<object>", "</object>"
DELIM = "</delimiter_of_multi_objects/>"
GROUNDING = "<grounding>"

# the original training code clips lower-right corners just below 1 so that x2 = 1 lands in the last bin
_ORIGINAL_UPPER_CLIP = 0.99999

_LOC_RE = re.compile(r"<patch_index_(\d+)>")
_PAIR = r"<patch_index_\d+><patch_index_\d+>"
# an optional <phrase>text</phrase> followed by <object>pair(</delim>pair)*</object>; the phrase text has no '<'
_ENTITY_RE = re.compile(
    r"(?:<phrase>(?P<phrase>[^<]+)</phrase>)?<object>(?P<boxes>(?:" + _PAIR + re.escape(DELIM) + r")*" + _PAIR + r")</object>"
)
_ANY_TAG_RE = re.compile(r"<.*?>")
_MD_RE = re.compile(r"\[(?P<phrase>[^\[\]<]+)\]\((?P<boxes>(?:" + _PAIR + re.escape(DELIM) + r")*" + _PAIR + r")\)")


def _check_bins(num_bins: int) -> int:
    if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    return num_bins


def loc_token(index: int) -> str:
    """The text of location token `index` (``<patch_index_0044>``)."""
    if index < 0:
        raise ValueError(f"location index must be >= 0, got {index}")
    return f"<patch_index_{index:04d}>"


def loc_index(token: str) -> int:
    """The index of a location token's text (inverse of `loc_token`)."""
    m = _LOC_RE.fullmatch(token.strip())
    if m is None:
        raise ValueError(f"not a location token: {token!r}")
    return int(m.group(1))


def _check_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"a box is 4 numbers (x1, y1, x2, y2), got {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box must have x2 > x1 and y2 > y1, got {box!r}")
    return x1, y1, x2, y2


def box_to_tokens(box_xyxy01: Sequence[float], num_bins: int = 32, rule: str = "original") -> tuple[int, int]:
    """Quantise a normalised box (x1, y1, x2, y2) in [0, 1] to (upper-left, lower-right) location indices.

    rule="original": upper-left cell = floor(x1 * P), lower-right cell = floor(min(x2, 0.99999) * P)
    (Kosmos-2 training code). rule="hf": lower-right cell = ceil(x2 * P - 1) (transformers'
    ``coordinate_to_patch_index``); the two differ only when x2 * P or y2 * P is an exact integer,
    where "hf" gives one cell less. Coordinates outside [0, 1] are clipped to the grid.
    """
    P = _check_bins(num_bins)
    x1, y1, x2, y2 = _check_box(box_xyxy01)

    def clip(v: int) -> int:
        return min(max(v, 0), P - 1)

    ux, uy = clip(math.floor(max(x1, 0.0) * P)), clip(math.floor(max(y1, 0.0) * P))
    if rule == "original":
        lx = clip(math.floor(min(x2, _ORIGINAL_UPPER_CLIP) * P))
        ly = clip(math.floor(min(y2, _ORIGINAL_UPPER_CLIP) * P))
    elif rule == "hf":
        lx, ly = clip(math.ceil(x2 * P - 1)), clip(math.ceil(y2 * P - 1))
    else:
        raise ValueError(f"rule must be 'original' or 'hf', got {rule!r}")
    return uy * P + ux, ly * P + lx


def tokens_to_box(ul: int, lr: int, num_bins: int = 32) -> tuple[float, float, float, float]:
    """Decode an (upper-left, lower-right) index pair to a normalised box (x1, y1, x2, y2).

    Cell centres when the two cells differ in both row and column; otherwise (same cell, same
    row or same column) the full extent of the cells, so the box never has zero area.
    """
    P = _check_bins(num_bins)
    for i in (ul, lr):
        if not 0 <= int(i) < P * P:
            raise ValueError(f"location index {i} outside the {P}x{P} grid (0..{P * P - 1})")
    c = 1.0 / P
    ux, uy = ul % P, ul // P
    lx, ly = lr % P, lr // P
    if ul == lr or ux == lx or uy == ly:
        return ux * c, uy * c, (lx + 1) * c, (ly + 1) * c
    return (ux + 0.5) * c, (uy + 0.5) * c, (lx + 0.5) * c, (ly + 0.5) * c


def _box_pair(box, num_bins: int, rule: str) -> tuple[int, int]:
    """A box given either as a ready (ul, lr) index pair or as 4 normalised floats."""
    if len(box) == 2:
        ul, lr = (int(v) for v in box)
        for i in (ul, lr):
            if not 0 <= i < num_bins * num_bins:
                raise ValueError(f"location index {i} outside the {num_bins}x{num_bins} grid")
        return ul, lr
    return box_to_tokens(box, num_bins, rule)


def box_to_loc_text(boxes, num_bins: int = 32, rule: str = "original") -> str:
    """``<patch_index_a><patch_index_b>`` for each box, joined by the multi-object delimiter."""
    if len(boxes) == 0:
        raise ValueError("at least one box is needed")
    pairs = [_box_pair(b, num_bins, rule) for b in boxes]
    return DELIM.join(loc_token(a) + loc_token(b) for a, b in pairs)


def _entity_fields(entity) -> tuple[int, int, list]:
    """Accept (phrase, (start, end), boxes) as returned by `parse_entities`, or ((start, end), boxes)."""
    if len(entity) == 3:
        _, span, boxes = entity
    elif len(entity) == 2:
        span, boxes = entity
    else:
        raise ValueError(f"an entity is (phrase, (start, end), boxes) or ((start, end), boxes), got {entity!r}")
    start, end = (int(v) for v in span)
    boxes = list(boxes)
    if boxes and not isinstance(boxes[0], (list, tuple)):
        boxes = [boxes]  # a single flat box
    return start, end, boxes


def format_entities(
    text: str,
    entities: Iterable,
    num_bins: int = 32,
    style: str = "tokens",
    rule: str = "original",
    grounding_prefix: bool = False,
) -> str:
    """Link character spans of `text` to boxes, in the token or markdown form (module docstring).

    entities: (phrase, (start, end), boxes) or ((start, end), boxes), spans into `text`, not
    overlapping; each box is 4 normalised floats or a ready (ul, lr) index pair. In the token form,
    a space just before a span moves inside ``<phrase>`` (as SentencePiece pieces carry their
    leading space), so that the tags add no characters to the clean text.
    """
    P = _check_bins(num_bins)
    if style not in ("tokens", "markdown"):
        raise ValueError(f"style must be 'tokens' or 'markdown', got {style!r}")
    items = sorted((_entity_fields(e) for e in entities), key=lambda t: t[0])
    out, cur = [], 0
    for start, end, boxes in items:
        if not (0 <= start < end <= len(text)):
            raise ValueError(f"span ({start}, {end}) is not inside the text of length {len(text)}")
        if start < cur:
            raise ValueError(f"span ({start}, {end}) overlaps the previous span")
        if not boxes:
            raise ValueError(f"span ({start}, {end}) has no box")
        locs = box_to_loc_text(boxes, P, rule)
        if style == "tokens":
            lead = start
            if lead > cur and text[lead - 1] == " ":
                lead -= 1
            out.append(text[cur:lead])
            out.append(f"{BOP}{text[lead:end]}{EOP}{BOO}{locs}{EOO}")
        else:
            out.append(text[cur:start])
            out.append(f"[{text[start:end]}]({locs})")
        cur = end
    out.append(text[cur:])
    s = "".join(out)
    return (GROUNDING + " " + s) if grounding_prefix else s


def _decode_pairs(boxes_text: str, num_bins: int) -> list[tuple[float, float, float, float]] | None:
    """Boxes of one ``pair(</delim>pair)*`` group; None when an index is off the grid."""
    idx = [int(v) for v in _LOC_RE.findall(boxes_text)]
    if len(idx) % 2 or any(i >= num_bins * num_bins for i in idx):
        return None
    return [tokens_to_box(idx[i], idx[i + 1], num_bins) for i in range(0, len(idx), 2)]


def _strip_entity(name: str, start: int, end: int, lead: int):
    """Remove surrounding spaces of the clean text (`lead` leading ones) and of the entity name."""
    n_lead = len(name) - len(name.lstrip())
    n_trail = len(name) - len(name.rstrip())
    return name.strip(), (start - lead + n_lead, end - lead - n_trail)


def parse_entities(generated_text: str, num_bins: int = 32, style: str = "tokens"):
    """Parse a generated sequence into ``(clean_text, [(phrase, (start, end), [boxes]), ...])``.

    Only the part after the last ``</image>`` is read. clean_text has every ``<...>`` tag removed and
    its ends stripped; spans index into it; boxes are normalised (x1, y1, x2, y2). An ``<object>``
    with no phrase before it gives one entity per box, named after its two indices (as HF does).
    Malformed pieces (unclosed tags, odd numbers of location tokens, indices off the grid) are
    skipped; the function never raises on a string. style="markdown" reads ``[text](locs)`` links.
    """
    P = _check_bins(num_bins)  # a bad grid size is a caller's bug, not a malformed generation
    if not isinstance(generated_text, str):
        generated_text = "" if generated_text is None else str(generated_text)
    text = generated_text.rsplit(EOI, 1)[-1]
    if style == "markdown":
        return _parse_markdown(text, P)

    def clean_len(upto: int) -> int:
        return len(_ANY_TAG_RE.sub("", text[:upto]))

    raw = _ANY_TAG_RE.sub("", text)
    lead = len(raw) - len(raw.lstrip())
    entities = []
    for m in _ENTITY_RE.finditer(text):
        boxes = _decode_pairs(m.group("boxes"), P)
        if boxes is None:
            continue
        if m.group("phrase") is not None:
            s, e = clean_len(m.start("phrase")), clean_len(m.end("phrase"))
            entities.append((*_strip_entity(m.group("phrase"), s, e, lead), boxes))
        else:
            pos = clean_len(m.start())
            idx = [int(v) for v in _LOC_RE.findall(m.group("boxes"))]
            for k, box in enumerate(boxes):
                name = f"<patch_index_{idx[2 * k]}><patch_index_{idx[2 * k + 1]}>"
                entities.append((name, (pos - lead, pos - lead), [box]))
    return raw.strip(), entities


def _parse_markdown(text: str, P: int):
    out, entities, cur, n = [], [], 0, 0
    for m in _MD_RE.finditer(text):
        boxes = _decode_pairs(m.group("boxes"), P)
        if boxes is None:
            continue
        out.append(text[cur : m.start()])
        n += len(text[cur : m.start()])
        phrase = m.group("phrase")
        entities.append((phrase, (n, n + len(phrase)), boxes))
        out.append(phrase)
        n += len(phrase)
        cur = m.end()
    out.append(text[cur:])
    raw = "".join(out)
    lead = len(raw) - len(raw.lstrip())
    entities = [(*_strip_entity(p, s, e, lead), b) for p, (s, e), b in entities]
    return raw.strip(), entities
