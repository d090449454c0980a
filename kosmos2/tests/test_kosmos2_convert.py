"""Conversion to / from transformers' Kosmos2ForConditionalGeneration and the official layout."""

import pytest
import torch

from vlcore.checkpoint import CheckpointError

from kosmos2.convert import (
    OFFICIAL_IGNORED_KEYS,
    from_hf,
    hf_to_official_keys,
    load_official_checkpoint,
    ours_to_hf,
    to_hf,
)
from kosmos2.testing import tiny_hf_model, tiny_inputs


@pytest.fixture(scope="module")
def pair():
    hf = tiny_hf_model()
    return hf, from_hf(hf).eval()


@pytest.mark.convert
def test_hf_to_ours_gives_the_same_logits(pair):
    hf, ours = pair
    px, ids, mask = tiny_inputs(ours.num_image_tokens, batch=3, length=14)
    with torch.no_grad():
        ref = hf(pixel_values=px, input_ids=ids, image_embeds_position_mask=mask).logits
        out = ours(px, ids, mask)
    assert (ref - out).abs().max() < 1e-5
    assert ref.abs().max() > 0.1  # not a degenerate comparison


@pytest.mark.convert
def test_hf_to_ours_gives_the_same_greedy_generation(pair):
    hf, ours = pair
    px, ids, mask = tiny_inputs(ours.num_image_tokens, batch=2, length=12, seed=3)
    with torch.no_grad():
        ref = hf.generate(pixel_values=px, input_ids=ids, image_embeds_position_mask=mask, max_new_tokens=10,
                          do_sample=False, num_beams=1, use_cache=True)
        out = ours.generate(px, ids, mask, max_new_tokens=10, eos_token_id=-1)
    assert ref.shape == out.shape == (2, ids.shape[1] + 10)
    assert torch.equal(ref, out)


@pytest.mark.convert
def test_ours_to_hf_is_loss_free(pair):
    hf, ours = pair
    ref = hf.state_dict()
    back = ours_to_hf(ours.state_dict())
    assert set(back) == set(ref)
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    hf2 = to_hf(ours)
    assert all(torch.equal(hf2.state_dict()[k], ref[k]) for k in ref)


@pytest.mark.convert
def test_official_layout_checkpoint_loads_strictly(tmp_path, pair):
    hf, ours = pair
    official = hf_to_official_keys({k: v for k, v in hf.state_dict().items()})
    assert "gpt_model.decoder.layers.0.self_attn.inner_attn_ln.weight" in official
    assert "img_model.visual.transformer.resblocks.1.ts_attn.q_proj.weight" in official
    assert "img_model.visual.transformer.resblocks.0.mlp.c_fc.weight" in official
    assert "img_connector.x_attn.k_proj.bias" in official and "img_model.visual.ln_post.weight" in official
    official[OFFICIAL_IGNORED_KEYS[0]] = torch.zeros(1)
    official[OFFICIAL_IGNORED_KEYS[1]] = torch.ones(4)
    path = tmp_path / "kosmos-2.pt"
    torch.save({"model": official, "args": None}, path)
    m = load_official_checkpoint(path, ours.cfg).eval()
    px, ids, mask = tiny_inputs(ours.num_image_tokens)
    with torch.no_grad():
        assert torch.equal(m(px, ids, mask), ours(px, ids, mask))


@pytest.mark.convert
def test_wrong_checkpoints_fail_with_the_file_name(tmp_path, pair):
    _, ours = pair
    bad = tmp_path / "resnet50.pt"
    torch.save({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="resnet50.pt.*not a Kosmos-2"):
        load_official_checkpoint(bad, ours.cfg)
    partial = tmp_path / "partial.pt"
    hf = tiny_hf_model()
    sd = hf_to_official_keys(hf.state_dict())
    sd.pop("img_connector.latent_query")
    sd["gpt_model.decoder.extra.weight"] = torch.zeros(2)
    torch.save({"model": sd}, partial)
    with pytest.raises(CheckpointError, match="partial.pt"):
        load_official_checkpoint(partial, ours.cfg)
