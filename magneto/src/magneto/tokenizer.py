"""SentencePiece tokenisation: train a model on the corpus in use, or load an existing ``.model``.

Both paths give the same ``SentencePieceTokenizer``; a trained model is written to a file
first (the run folder), so the run that trained it and any later evaluation load the
identical bytes. Special ids follow fairseq / torchscale: pad 0, bos 1, eos 2, unk 3;
user-defined ``<mask>`` is id 4 (masked language modelling).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable

from vlcore.data.paths import DataNotFoundError
from vlcore.errors import UserError

PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 4
MASK_PIECE = "<mask>"


class TokenizerError(UserError, ValueError):
    pass


class SentencePieceTokenizer:
    """A loaded SentencePiece model; ``encode`` / ``decode`` on str, ids as Python ints."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sentencepiece as spm

        p = Path(path)
        if not p.is_file():
            raise DataNotFoundError(f"SentencePiece model not found: {p}", p)
        self.path = p
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(p))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{p}: not a SentencePiece model ({str(e).splitlines()[0]})") from None
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (
            self.sp.pad_id(), self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()
        )
        mask = self.sp.piece_to_id(MASK_PIECE)
        self.mask_id = mask if mask != self.unk_id else None

    @property
    def vocab_size(self) -> int:
        return int(self.sp.GetPieceSize())

    def encode(self, text: str) -> list[int]:
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.DecodeIds([int(i) for i in ids])

    def special_ids(self) -> tuple[int, ...]:
        ids = [self.pad_id, self.bos_id, self.eos_id, self.unk_id, self.mask_id]
        return tuple(i for i in ids if i is not None and i >= 0)


def train_sentencepiece(
    text: str,
    model_path: str | os.PathLike[str],
    *,
    vocab_size: int = 1000,
    model_type: str = "unigram",
    max_sentences: int = 200_000,
    seed_sentencepiece_size: int = 200_000,
) -> SentencePieceTokenizer:
    """Train on the lines of ``text``; write ``model_path`` (``.model``) and return it loaded.

    Training reads at most ``max_sentences`` lines (deterministically the first ones), so
    it takes seconds on the shared corpora.
    """
    import sentencepiece as spm

    lines = [ln for ln in text.split("\n") if ln.strip()][:max_sentences]
    if not lines:
        raise TokenizerError("cannot train a SentencePiece model on empty text")
    path = Path(model_path)
    if path.suffix != ".model":
        raise TokenizerError(f"model_path must end in .model, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(lines),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            user_defined_symbols=[MASK_PIECE],
            input_sentence_size=max_sentences,
            shuffle_input_sentence=False,
            seed_sentencepiece_size=seed_sentencepiece_size,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        # e.g. a vocab_size larger than the text supports; sentencepiece says why on one line
        raise TokenizerError(f"SentencePiece training failed: {str(e).strip().splitlines()[-1]}") from None
    tmp = path.with_suffix(".model.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return SentencePieceTokenizer(path)
