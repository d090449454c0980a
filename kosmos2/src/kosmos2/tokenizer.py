"""The Kosmos-2 vocabulary over a SentencePiece model.

Id layout (fairseq dictionary order; with the official 64,000-piece SentencePiece model this is
the 65,037-token vocabulary of the released checkpoint and of HF ``Kosmos2Processor``):

==========================================  ===============================
``<s>`` ``<pad>`` ``</s>`` ``<unk>``         0, 1, 2, 3
SentencePiece pieces (spm ids 3 .. S-1)      spm id + 1  (4 .. S)
``<mask>``                                   S + 1
``</doc> <image> </image> </chunk> </line>`` S + 2 .. S + 6
``<phrase> </phrase> <object> </object>``   S + 7 .. S + 10
``</delimiter_of_multi_objects/>``           S + 11
``<grounding>``                              S + 12
``<patch_index_0000>`` .. (P*P tokens)       S + 13 ..
==========================================  ===============================

where S is the SentencePiece model's size (its own ids 0, 1, 2 are unk, bos, eos). Tag and
location tokens are matched in the text before SentencePiece runs, and whitespace just before
them is dropped (HF's ``lstrip=True``); each stretch of text between them is encoded on its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from vlcore.errors import UserError

from kosmos2.grounding import loc_token

__all__ = ["SPECIAL_TOKENS", "TAG_TOKENS", "UNK_TEXT", "vocab_layout", "Kosmos2Tokenizer"]

UNK_TEXT = " \u2047 "  # how decode writes <unk>

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
TAG_TOKENS = [
    "</doc>",
    "<image>",
    "</image>",
    "</chunk>",
    "</line>",
    "<phrase>",
    "</phrase>",
    "<object>",
    "</object>",
    "</delimiter_of_multi_objects/>",
    "<grounding>",
]


def vocab_layout(spm_size: int = 64000, num_bins: int = 32) -> dict:
    """Ids of every non-SentencePiece token and the vocabulary size, for an spm model of `spm_size` pieces."""
    if spm_size < 4 or num_bins < 1:
        raise ValueError(f"need spm_size >= 4 and num_bins >= 1, got {spm_size}, {num_bins}")
    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    ids["<mask>"] = spm_size + 1
    for k, t in enumerate(TAG_TOKENS):
        ids[t] = spm_size + 2 + k
    loc_offset = spm_size + 2 + len(TAG_TOKENS)
    return {
        "ids": ids,
        "loc_offset": loc_offset,
        "num_loc_tokens": num_bins * num_bins,
        "vocab_size": loc_offset + num_bins * num_bins,
    }


class Kosmos2Tokenizer:
    """Text <-> ids with the Kosmos-2 layout (module docstring) over a SentencePiece model file."""

    def __init__(self, spm_model: str | Path, num_bins: int = 32):
        import sentencepiece as spm

        path = Path(spm_model)
        if not path.is_file():
            raise UserError(f"SentencePiece model not found: {path}")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except Exception as e:  # sentencepiece raises OSError/RuntimeError on corrupt files
            raise UserError(f"cannot read SentencePiece model {path}: {e}") from None
        if self.sp.unk_id() != 0 or self.sp.bos_id() != 1 or self.sp.eos_id() != 2:
            raise UserError(
                f"{path}: expected spm ids unk=0, bos=1, eos=2 (XLM-R layout), got "
                f"{self.sp.unk_id()}, {self.sp.bos_id()}, {self.sp.eos_id()}"
            )
        self.num_bins = num_bins
        self.spm_size = self.sp.get_piece_size()
        lay = vocab_layout(self.spm_size, num_bins)
        self.special_ids: dict[str, int] = dict(lay["ids"])
        self.loc_offset: int = lay["loc_offset"]
        self.vocab_size: int = lay["vocab_size"]
        self.bos_id, self.pad_id, self.eos_id, self.unk_id = 0, 1, 2, 3
        self.mask_id = self.special_ids["<mask>"]
        self._id_to_special = {v: k for k, v in self.special_ids.items()}
        names = sorted(self.special_ids, key=len, reverse=True)
        self._split_re = re.compile(r"\s*(" + "|".join(re.escape(n) for n in names) + r"|<patch_index_(\d+)>)")

    # ids of single tokens
    def token_id(self, token: str) -> int:
        if token in self.special_ids:
            return self.special_ids[token]
        m = re.fullmatch(r"<patch_index_(\d+)>", token)
        if m:
            return self.loc_id(int(m.group(1)))
        sid = self.sp.piece_to_id(token)
        return self.unk_id if sid == self.sp.unk_id() else sid + 1

    def loc_id(self, index: int) -> int:
        if not 0 <= index < self.num_bins * self.num_bins:
            raise ValueError(f"location index {index} outside the {self.num_bins}x{self.num_bins} grid")
        return self.loc_offset + index

    def loc_index(self, token_id: int) -> int | None:
        """The location index of a token id, or None for any other token."""
        i = int(token_id) - self.loc_offset
        return i if 0 <= i < self.num_bins * self.num_bins else None

    def id_to_token(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id in self._id_to_special:
            return self._id_to_special[token_id]
        if (li := self.loc_index(token_id)) is not None:
            return loc_token(li)
        if 4 <= token_id <= self.spm_size:
            return self.sp.id_to_piece(token_id - 1)
        raise ValueError(f"token id {token_id} outside the vocabulary of {self.vocab_size}")

    # text
    def _encode_plain(self, text: str) -> list[int]:
        return [self.unk_id if i == 0 else i + 1 for i in self.sp.encode(text)]

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Ids of `text`; tags and ``<patch_index_XXXX>`` become single tokens."""
        ids = [self.bos_id] if add_bos else []
        cur = 0
        for m in self._split_re.finditer(text):
            if m.start() > cur:
                ids += self._encode_plain(text[cur : m.start()])
            ids.append(self.token_id(m.group(1)))
            cur = m.end()
        if cur < len(text):
            ids += self._encode_plain(text[cur:])
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; tag and location tokens are written out, ``<s> <pad> </s>`` dropped when asked,
        ``<unk>`` written as `` \u2047 `` (so a phrase with an unknown piece still parses)."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if skip_special_tokens and i in (self.bos_id, self.pad_id, self.eos_id):
                continue
            if i == self.unk_id:  # written as SentencePiece does, so that it never looks like a tag
                out.append(UNK_TEXT)
                continue
            tok = self.id_to_token(i)
            out.append(tok.replace("\u2581", " ") if 4 <= i <= self.spm_size else tok)
        return "".join(out)
