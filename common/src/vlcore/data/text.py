"""Text corpora for language-model minis: tiny-shakespeare (characters) and WikiText-2 (words).

Both are read as strict UTF-8: a stray byte raises `TextDecodeError` naming the file
and the byte offset instead of being replaced silently. Splits are contiguous (first
part train, last part validation), so they are the same on every run.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.utils.data import Dataset

from vlcore.data.paths import DataFormatError, dataset_dir, require_dir, require_file

SHAKESPEARE_FOLDER = "text_tinyshakespeare"
SHAKESPEARE_FILE = "input.txt"
WIKITEXT2_FOLDER = "wikitext2"
WIKITEXT2_FILE = "wiki.valid.tokens"
EOS = "<eos>"
UNK = "<unk>"


class TextDecodeError(DataFormatError):
    """A text file is not valid UTF-8; the message names the file and the first bad byte."""


def read_text(path: str | os.PathLike[str], *, what: str = "a UTF-8 text file") -> str:
    """The whole file as str; strict UTF-8. Newlines are kept as stored."""
    p = require_file(path, what)
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise TextDecodeError(
            f"{p}: not valid UTF-8 at byte {e.start} (line {line}): {e.reason} {raw[e.start:e.start + 4]!r}"
        ) from None


def tiny_shakespeare_path(*, root: str | os.PathLike[str] | None = None) -> Path:
    folder = require_dir(dataset_dir(SHAKESPEARE_FOLDER, root=root), f"tiny-shakespeare ({SHAKESPEARE_FILE})")
    return require_file(folder / SHAKESPEARE_FILE, "the tiny-shakespeare corpus")


def load_tiny_shakespeare(*, root: str | os.PathLike[str] | None = None) -> str:
    """The 1,115,394-character corpus."""
    return read_text(tiny_shakespeare_path(root=root), what="the tiny-shakespeare corpus")


def wikitext2_path(*, root: str | os.PathLike[str] | None = None) -> Path:
    folder = require_dir(dataset_dir(WIKITEXT2_FOLDER, root=root), f"WikiText-2 ({WIKITEXT2_FILE})")
    return require_file(folder / WIKITEXT2_FILE, "the WikiText-2 tokens file")


def word_tokens(text: str, *, eos: str | None = EOS) -> list[str]:
    """WikiText convention: whitespace tokens, plus `eos` after every line (blank lines too)."""
    out: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    for line in lines:
        out.extend(line.split())
        if eos is not None:
            out.append(eos)
    return out


def load_wikitext2(*, root: str | os.PathLike[str] | None = None) -> list[str]:
    """WikiText-2 (validation split) as word tokens with one <eos> per line: 217,646 tokens."""
    return word_tokens(read_text(wikitext2_path(root=root), what="the WikiText-2 tokens file"))


@dataclass(frozen=True)
class CharTokenizer:
    """Characters <-> ids; the vocabulary is the sorted set of characters seen."""

    chars: tuple[str, ...]
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharTokenizer: characters must be distinct")
        object.__setattr__(self, "stoi", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(tuple(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary of {self.vocab_size}") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


@dataclass(frozen=True)
class WordVocab:
    """Words <-> ids: the specials first, then descending frequency (ties alphabetical); unknown words map to <unk>."""

    words: tuple[str, ...]
    unk: str = UNK
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unk not in self.words:
            raise ValueError(f"WordVocab: the unknown token {self.unk!r} must be in the vocabulary")
        if len(set(self.words)) != len(self.words):
            raise ValueError("WordVocab: words must be distinct")
        object.__setattr__(self, "stoi", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def from_tokens(
        cls,
        tokens: Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (UNK, EOS),
    ) -> "WordVocab":
        counts = Counter(tokens)
        kept = (w for w, n in counts.items() if n >= min_freq and w not in specials)
        ranked = sorted(kept, key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(specials))]
        return cls(tuple(specials) + tuple(ranked), unk=specials[0] if UNK not in specials else UNK)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def unk_id(self) -> int:
        return self.stoi[self.unk]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        u = self.unk_id
        return [self.stoi.get(t, u) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]


def split_ids(ids: torch.Tensor | Sequence[int], *, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous split of a 1-D id sequence: first (1 - val_fraction) train, the rest validation."""
    t = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_train = int(round(t.numel() * (1.0 - val_fraction)))
    return t[:n_train], t[n_train:]


class TokenBlockDataset(Dataset):
    """Fixed-length blocks for next-token prediction: item i is (x, y) # T each, y = x shifted by one.

    Blocks start every `stride` tokens (default: block_size, i.e. non-overlapping); a tail
    shorter than block_size + 1 tokens is dropped.
    """

    def __init__(self, ids: torch.Tensor | Sequence[int], *, block_size: int, stride: int | None = None) -> None:
        self.ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self.stride = stride or block_size
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        usable = self.ids.numel() - (block_size + 1)
        self.n = 0 if usable < 0 else usable // self.stride + 1
        if self.n == 0:
            raise ValueError(f"{self.ids.numel()} tokens cannot fill one block of {block_size} + 1")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        s = (i % self.n) * self.stride
        chunk = self.ids[s : s + self.block_size + 1]
        return chunk[:-1], chunk[1:]


def random_blocks(
    ids: torch.Tensor, *, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of blocks at random offsets (x, y # B, T); seeded through `generator`."""
    if ids.numel() < block_size + 1:
        raise ValueError(f"{ids.numel()} tokens cannot fill one block of {block_size} + 1")
    starts = torch.randint(0, ids.numel() - block_size, (batch_size,), generator=generator)
    offs = torch.arange(block_size + 1)
    chunk = ids[starts[:, None] + offs]  # B, T + 1
    return chunk[:, :-1], chunk[:, 1:]


@dataclass(frozen=True)
class LMCorpus:
    """A tokenised corpus with its contiguous train / validation split."""

    train: torch.Tensor  # N_train int64
    val: torch.Tensor  # N_val int64
    tokenizer: CharTokenizer | WordVocab

    @property
    def vocab_size(self) -> int:
        t = self.tokenizer
        return t.vocab_size if isinstance(t, CharTokenizer) else len(t)


def shakespeare_char_corpus(*, root: str | os.PathLike[str] | None = None, val_fraction: float = 0.1) -> LMCorpus:
    """tiny-shakespeare, character level (65 symbols), first 90% train by default."""
    text = load_tiny_shakespeare(root=root)
    tok = CharTokenizer.from_text(text)
    train, val = split_ids(tok.encode(text), val_fraction=val_fraction)
    return LMCorpus(train, val, tok)


def wikitext2_word_corpus(
    *, root: str | os.PathLike[str] | None = None, val_fraction: float = 0.1, min_freq: int = 1
) -> LMCorpus:
    """WikiText-2 validation file, word level; the vocabulary comes from the whole file (already closed with <unk>)."""
    tokens = load_wikitext2(root=root)
    vocab = WordVocab.from_tokens(tokens, min_freq=min_freq)
    train, val = split_ids(vocab.encode(tokens), val_fraction=val_fraction)
    return LMCorpus(train, val, vocab)
