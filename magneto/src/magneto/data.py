"""Datasets of the four task families on the shared real data (read through ``vlcore.data``).

* ``clm``: next-token blocks of a tokenised corpus;
* ``mlm``: blocks of a tokenised corpus, masked on the fly (``magneto.models.mask_tokens``);
* ``seq2seq``: a translation-style transduction built from real text: the source is a line
  of the corpus, the target the same words in reverse order (the shared data holds no
  parallel corpus; the task exercises the encoder-decoder end to end on real vocabulary);
* ``image_cls``: the CIFAR-10 subset.

Tokenisers: ``char`` (tiny-shakespeare characters), ``word`` (WikiText-2 words) or
``sentencepiece`` (trained on the corpus in use into the run folder, or an existing ``.model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vlcore.data.text import (
    CharTokenizer,
    WordVocab,
    load_tiny_shakespeare,
    load_wikitext2,
    read_text,
    split_ids,
    wikitext2_path,
)
from vlcore.errors import UserError

from magneto.tokenizer import BOS_ID, EOS_ID, PAD_ID, SentencePieceTokenizer, train_sentencepiece


class DataConfigError(UserError, ValueError):
    pass


def corpus_text(corpus: str, root: str | None) -> str:
    """The raw text of a shared corpus (``tiny_shakespeare`` or ``wikitext2``)."""
    if corpus == "tiny_shakespeare":
        return load_tiny_shakespeare(root=root or None)
    if corpus == "wikitext2":
        return read_text(wikitext2_path(root=root or None), what="the WikiText-2 tokens file")
    raise DataConfigError(f"corpus {corpus!r} is not a text corpus (tiny_shakespeare, wikitext2)")


@dataclass
class TextData:
    train: torch.Tensor  # N_train int64
    val: torch.Tensor  # N_val int64
    vocab_size: int
    tokenizer: object
    description: str
    mask_id: int | None = None
    special_ids: tuple[int, ...] = ()


def build_tokenizer(
    *, kind: str, corpus: str, root: str | None, text: str, spm_model: str, spm_vocab_size: int,
    spm_max_sentences: int, work_dir: Path,
):
    """The tokenizer a run uses; a trained SentencePiece model is written to ``work_dir/spm.model``."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "word":
        if corpus != "wikitext2":
            raise DataConfigError("tokenizer 'word' is for wikitext2 (tiny_shakespeare uses 'char' or 'sentencepiece')")
        return WordVocab.from_tokens(load_wikitext2(root=root or None))
    if kind == "sentencepiece":
        if spm_model:
            return SentencePieceTokenizer(spm_model)
        return train_sentencepiece(
            text, work_dir / "spm.model", vocab_size=spm_vocab_size, max_sentences=spm_max_sentences
        )
    raise DataConfigError(f"unknown tokenizer {kind!r} (char, word, sentencepiece)")


def load_text_data(
    *, corpus: str, root: str | None, tokenizer: str, spm_model: str = "", spm_vocab_size: int = 1000,
    spm_max_sentences: int = 20_000, val_fraction: float = 0.1, work_dir: Path,
) -> TextData:
    text = corpus_text(corpus, root)
    tok = build_tokenizer(
        kind=tokenizer, corpus=corpus, root=root, text=text, spm_model=spm_model, spm_vocab_size=spm_vocab_size,
        spm_max_sentences=spm_max_sentences, work_dir=work_dir,
    )
    if isinstance(tok, WordVocab):
        from vlcore.data.text import word_tokens

        ids = tok.encode(word_tokens(text))
        vocab, mask_id, special = len(tok), None, ()
    elif isinstance(tok, CharTokenizer):
        ids = tok.encode(text)
        vocab, mask_id, special = tok.vocab_size, None, ()
    else:
        ids = tok.encode(text)
        vocab, mask_id, special = tok.vocab_size, tok.mask_id, tok.special_ids()
    train, val = split_ids(ids, val_fraction=val_fraction)
    desc = f"real: {corpus} ({tokenizer} tokens, vocab {vocab}; {train.numel():,} train / {val.numel():,} val)"
    return TextData(train, val, vocab, tok, desc, mask_id, special)


class ReversalPairs(Dataset):
    """(source line, target = its words reversed) as padded id tensors for teacher forcing.

    Item: (src # S, tgt_in # T, tgt_out # T), padded with PAD_ID; tgt_in starts with BOS,
    tgt_out ends with EOS. Lines are cut to ``max_words`` words so both sides fit ``max_len``.
    """

    def __init__(self, lines: list[str], tokenizer: SentencePieceTokenizer, *, max_len: int, max_words: int = 12):
        self.pairs: list[tuple[list[int], list[int]]] = []
        for ln in lines:
            words = ln.split()[:max_words]
            if len(words) < 2:
                continue
            src = tokenizer.encode(" ".join(words))
            tgt = tokenizer.encode(" ".join(reversed(words)))
            if len(src) <= max_len and len(tgt) + 1 <= max_len:
                self.pairs.append((src, tgt))
        if not self.pairs:
            raise DataConfigError(f"no line fits max_len {max_len}")
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src, tgt = self.pairs[i]
        s = torch.full((self.max_len,), PAD_ID, dtype=torch.long)
        s[: len(src)] = torch.tensor(src)
        t_in = torch.full((self.max_len,), PAD_ID, dtype=torch.long)
        t_out = torch.full((self.max_len,), PAD_ID, dtype=torch.long)
        t_in[0] = BOS_ID
        t_in[1 : len(tgt) + 1] = torch.tensor(tgt)
        t_out[: len(tgt)] = torch.tensor(tgt)
        t_out[len(tgt)] = EOS_ID
        return s, t_in, t_out


def reversal_splits(text: str, tokenizer: SentencePieceTokenizer, *, max_len: int, val_fraction: float = 0.1):
    """Train / validation ``ReversalPairs`` from the lines of ``text`` (contiguous split)."""
    lines = [ln for ln in text.split("\n") if len(ln.split()) >= 2]
    n_val = max(1, int(len(lines) * val_fraction))
    return (
        ReversalPairs(lines[:-n_val], tokenizer, max_len=max_len),
        ReversalPairs(lines[-n_val:], tokenizer, max_len=max_len),
    )


# --- generated fallback (when the shared data is absent) -------------------------------------

_NOUNS = (("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("king", "kings"), ("horse", "horses"),
          ("child", "children"), ("sailor", "sailors"), ("queen", "queens"))
_VERBS = (("runs", "run"), ("sees", "see"), ("likes", "like"), ("sings", "sing"), ("follows", "follow"),
          ("fears", "fear"))
_ADJS = ("old", "red", "small", "wise", "quiet", "brave")


def _noun_phrase(rng, depth: int) -> tuple[str, bool]:
    singular = rng.random() < 0.5
    words = ["the"]
    if rng.random() < 0.3:
        words.append(rng.choice(_ADJS))
    words.append(rng.choice(_NOUNS)[0 if singular else 1])
    if depth < 3 and rng.random() < 0.35:
        # a bracketed relative clause whose verb agrees with the noun it modifies
        obj, _ = _noun_phrase(rng, depth + 1)
        words += ["(", "that", rng.choice(_VERBS)[0 if singular else 1], obj, ")"]
    return " ".join(words), singular


def grammar_text(n_chars: int = 550_000, seed: int = 0) -> str:
    """Sentences of a small grammar with nested brackets and number agreement (about 30 symbols)."""
    import random

    rng = random.Random(seed)
    lines, total = [], 0
    while total < n_chars:
        subj, singular = _noun_phrase(rng, 0)
        verb = rng.choice(_VERBS)[0 if singular else 1]
        obj = " " + _noun_phrase(rng, 1)[0] if rng.random() < 0.6 else ""
        line = f"{subj} {verb}{obj} ."
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def grammar_char_corpus(*, n_chars: int = 550_000, seed: int = 0, val_fraction: float = 0.1):
    """A ``vlcore.data.text.LMCorpus`` of generated grammar text, character level."""
    from vlcore.data.text import LMCorpus

    text = grammar_text(n_chars, seed)
    tok = CharTokenizer.from_text(text)
    train, val = split_ids(tok.encode(text), val_fraction=val_fraction)
    return LMCorpus(train, val, tok)
