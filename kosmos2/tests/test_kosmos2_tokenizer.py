"""The Kosmos-2 id layout over a SentencePiece model, and agreement with transformers' tokenizer + processor."""

import random

import pytest

from kosmos2.testing_text import WORDS, random_grounded_caption, train_tiny_sentencepiece
from kosmos2.tokenizer import TAG_TOKENS, Kosmos2Tokenizer, vocab_layout
from vlcore.errors import UserError


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    return train_tiny_sentencepiece(tmp_path_factory.mktemp("spm"))


@pytest.mark.unit
def test_paper_layout_has_the_card_ids():
    lay = vocab_layout(64000, 32)
    ids = lay["ids"]
    assert [ids[t] for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 64001]
    assert [ids[t] for t in TAG_TOKENS] == list(range(64002, 64013))
    assert (ids["<phrase>"], ids["</phrase>"], ids["<object>"], ids["</object>"]) == (64007, 64008, 64009, 64010)
    assert (ids["</delimiter_of_multi_objects/>"], ids["<grounding>"], ids["<image>"], ids["</image>"]) == (64011, 64012, 64003, 64004)
    assert lay["loc_offset"] == 64013 and lay["vocab_size"] == 65037 == 64013 + 1024
    assert vocab_layout(64000, 16)["vocab_size"] == 64013 + 256


@pytest.mark.unit
def test_tokenizer_layout_and_round_trip(spm_file):
    tok = Kosmos2Tokenizer(spm_file, num_bins=32)
    S = tok.spm_size
    assert tok.vocab_size == S + 13 + 1024 and tok.mask_id == S + 1
    assert tok.token_id("<grounding>") == S + 12 and tok.loc_id(0) == S + 13 and tok.loc_id(1023) == tok.vocab_size - 1
    assert tok.loc_index(tok.loc_id(77)) == 77 and tok.loc_index(5) is None
    assert tok.token_id("\u2581dog") == tok.sp.piece_to_id("\u2581dog") + 1
    s = "<grounding> a photo of<phrase> a dog</phrase><object><patch_index_0044><patch_index_0863></object> in the snow"
    ids = tok.encode(s)
    assert ids[0] == 0 and ids[-1] == 2 and ids[1] == S + 12
    assert tok.loc_id(44) in ids and tok.loc_id(863) in ids
    assert tok.decode(ids, skip_special_tokens=True) == "<grounding> a photo of<phrase> a dog</phrase><object><patch_index_0044><patch_index_0863></object> in the snow"
    with pytest.raises(ValueError):
        tok.loc_id(1024)
    with pytest.raises(ValueError):
        tok.id_to_token(tok.vocab_size)


@pytest.mark.unit
def test_missing_or_corrupt_spm_file_names_it(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Kosmos2Tokenizer(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="bad.model"):
        Kosmos2Tokenizer(bad)


@pytest.mark.unit
def test_ids_agree_with_hf_xlmr_tokenizer_with_kosmos2_tokens(spm_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    from transformers.models.kosmos2.processing_kosmos2 import Kosmos2Processor as HFProcessor

    d = tmp_path / "hf"
    d.mkdir()
    (d / "sentencepiece.bpe.model").write_bytes(spm_file.read_bytes())
    hf_tok = transformers.XLMRobertaTokenizer.from_pretrained(str(d))
    HFProcessor(transformers.CLIPImageProcessor(), hf_tok)  # adds the 11 tags and 1,024 location tokens
    ours = Kosmos2Tokenizer(spm_file, num_bins=32)
    assert len(hf_tok) == ours.vocab_size
    for t in ["<mask>", *TAG_TOKENS, "<patch_index_0000>", "<patch_index_1023>", "\u2581dog", "\u2581the"]:
        assert hf_tok.convert_tokens_to_ids(t) == ours.token_id(t), t
    rng = random.Random(0)
    texts = [random_grounded_caption(rng) for _ in range(150)]
    texts += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) for _ in range(50)]
    texts += ["An image of<phrase> a snowman</phrase> warming by <phrase>a fire</phrase>.", "a  dog  with the cat"]
    for t in texts:
        assert ours.encode(t) == hf_tok(t)["input_ids"], t
