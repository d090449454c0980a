"""SentencePiece: train on the corpus in use, load an existing .model the same way."""

import pytest

from vlcore.data.text import load_tiny_shakespeare
from magneto.tokenizer import MASK_ID, SentencePieceTokenizer, TokenizerError, train_sentencepiece

from magneto.testing import one_torch_thread  # noqa: F401  (autouse)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "shakespeare.model"
    tok = train_sentencepiece(load_tiny_shakespeare(), path, vocab_size=400, max_sentences=3000)
    return path, tok


def test_trained_model_round_trips_and_reloads_identically(spm_model):
    path, tok = spm_model
    assert path.is_file() and tok.vocab_size == 400
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, MASK_ID)
    text = "First Citizen: Before we proceed any further, hear me speak."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text)  # subwords, not characters
    again = SentencePieceTokenizer(path)  # an existing .model loads through the same class
    assert again.encode(text) == ids and again.vocab_size == tok.vocab_size


def test_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        SentencePieceTokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        SentencePieceTokenizer(bad)
    with pytest.raises(TokenizerError, match="empty"):
        train_sentencepiece("\n\n", tmp_path / "e.model")
    with pytest.raises(TokenizerError, match=".model"):
        train_sentencepiece("some text", tmp_path / "x.bin")
