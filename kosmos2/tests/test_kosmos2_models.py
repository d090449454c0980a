"""kosmos2 model: registry counts, shapes, gradients, image slots, KV cache, several images."""

import pytest
import torch

from kosmos2.models import REGISTRY, build_model
from kosmos2.models.kosmos2 import Kosmos2Config, Kosmos2Model, sinusoidal_positions
from kosmos2.testing import tiny_inputs, tiny_model


@pytest.mark.unit
def test_paper_configuration_has_the_card_parameter_count():
    row = {r["name"]: r for r in REGISTRY.table()}["kosmos2_patch14_224"]
    assert row["params"] == 1_664_485_376 and row["matches_paper"]
    with torch.device("meta"):
        m = REGISTRY.build("kosmos2_patch14_224")
    count = lambda prefix: sum(p.numel() for n, p in m.named_parameters() if n.startswith(prefix))  # noqa: E731
    assert count("vision.") == 303_179_776
    assert count("connector.") == 19_015_680
    assert count("embed_tokens.") == 133_195_776
    assert count("decoder.") == 1_342_289_920 - 133_195_776
    assert m.num_image_tokens == 64 and m.cfg.vocab_size == 65037


@pytest.mark.unit
def test_models_cli_lists_configurations(capsys):
    from vlcore.cli import models_main

    assert models_main(REGISTRY, ["--json"]) in (0, None)
    out = capsys.readouterr().out
    assert "kosmos2_patch14_224" in out and "1664485376" in out.replace(",", "")


@pytest.mark.unit
@pytest.mark.parametrize("name", ["kosmos2_tiny_patch8_32", "kosmos2_mini_convstem_32"])
def test_forward_shapes_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    m = build_model(name)
    px, ids, mask = tiny_inputs(m, vocab=m.cfg.vocab_size)
    logits = m(px, ids, mask)
    assert logits.shape == (*ids.shape, m.cfg.vocab_size) and torch.isfinite(logits).all()
    logits.logsumexp(-1).mean().backward()
    dead = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    # the pad row of the embedding gets gradient only through the tied head: it is fine either way
    assert dead == [], dead


@pytest.mark.unit
def test_image_slots_change_only_later_positions_and_mask_count_is_checked():
    m = tiny_model().eval()
    px, ids, mask = tiny_inputs(m)
    with torch.no_grad():
        a = m(px, ids, mask)
        b = m(px.flip(0), ids, mask)
    first_slot = int(mask[0].nonzero()[0])
    assert torch.allclose(a[:, :first_slot], b[:, :first_slot])  # causal: tokens before the image
    assert not torch.allclose(a[:, first_slot:], b[:, first_slot:])
    with pytest.raises(ValueError, match="marks"):
        m(px[:1], ids, mask)


@pytest.mark.unit
def test_positions_follow_fairseq_and_skip_padding():
    m = tiny_model()
    ids = torch.tensor([[1, 1, 0, 5, 6], [0, 5, 6, 7, 8]])
    assert m.position_ids(ids).tolist() == [[1, 1, 2, 3, 4], [2, 3, 4, 5, 6]]
    table = sinusoidal_positions(10, 8, 1)
    assert torch.equal(table[1], torch.zeros(8)) and torch.allclose(table[0, :4], torch.zeros(4))
    assert torch.allclose(table[0, 4:], torch.ones(4))  # cos(0)


@pytest.mark.unit
def test_left_padding_does_not_change_logits():
    m = tiny_model().eval()
    px, ids, mask = tiny_inputs(m, batch=1)
    pad = torch.ones(1, 3, dtype=torch.long)
    ids_p = torch.cat([pad, ids], 1)
    mask_p = torch.cat([torch.zeros_like(pad), mask], 1)
    att = ids_p.ne(1).long()
    with torch.no_grad():
        a = m(px, ids, mask)
        b = m(px, ids_p, mask_p, att)[:, 3:]
    assert (a - b).abs().max() < 1e-5


@pytest.mark.unit
def test_kv_cache_matches_full_forward():
    m = tiny_model().eval()
    px, ids, mask = tiny_inputs(m, length=20)
    with torch.no_grad():
        full = m.forward_hidden(px, ids, mask)
        cache = m.decoder.new_cache()
        k = 14
        h1 = m.forward_hidden(px, ids[:, :k], mask[:, :k], cache=cache)
        steps = [h1]
        past = ids[:, :k].ne(1).sum(1)
        for t in range(k, ids.shape[1]):
            steps.append(m.forward_hidden(None, ids[:, t : t + 1], None, cache=cache, past=past))
            past = past + 1
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5


@pytest.mark.unit
def test_several_images_per_sequence_fill_their_slots_in_order():
    m = tiny_model().eval()
    px, ids, mask = tiny_inputs(m, images_per_row=2)
    assert px.shape[0] == 4 and int(mask.sum()) == 4 * m.num_image_tokens
    with torch.no_grad():
        a = m(px, ids, mask)
        swapped = px.view(2, 2, 3, 32, 32).flip(1).reshape(4, 3, 32, 32)  # swap the two images of each row
        b = m(swapped, ids, mask)
        emb = m.encode_images(px)
    assert not torch.allclose(a, b)
    second = int(mask[0].nonzero()[m.num_image_tokens])  # first slot of the second image
    assert torch.allclose(a[:, : second - m.num_image_tokens - 2], b[:, : second - m.num_image_tokens - 2])
    assert emb.shape == (4, m.num_image_tokens, m.cfg.embed_dim)


@pytest.mark.unit
def test_config_validation_and_freeze():
    with pytest.raises(ValueError, match="vision"):
        Kosmos2Config(vision="resnet")
    with pytest.raises(ValueError, match="connector"):
        Kosmos2Config(connector="qformer")
    m = tiny_model(freeze_vision=True)
    assert not any(p.requires_grad for p in m.vision.parameters())
    assert all(p.requires_grad for p in m.connector.parameters())
    mini = build_model("kosmos2_mini_convstem_32")
    assert mini.num_image_tokens == 65 and isinstance(mini, Kosmos2Model)
    assert build_model("kosmos2_mini_convstem_32", stem_stride=8).num_image_tokens == 17
