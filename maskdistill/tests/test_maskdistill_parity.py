"""One implementation, not two: beit2's pretraining loss is vlcore.mim's BEiT v2 preset."""

import pytest
import torch

from vlcore.mim import build_objective
from vlcore.tokenizers.vqkd import VQKD, VQKDConfig

from beit2.models.pretrain import BeitV2ForMIM

from maskdistill.testing import tiny_batch


def _tokenizer():
    torch.manual_seed(1)
    return VQKD(VQKDConfig(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=16,
                           decoder_depth=1, decoder_num_heads=2, num_codes=11, code_dim=4, target_dim=8)).eval()


@pytest.mark.unit
@pytest.mark.parametrize("early_layers", [0, 1])
def test_beitv2_preset_equals_beit2_pretraining_loss(early_layers):
    images, mask = tiny_batch(batch=4)
    tok = _tokenizer()
    torch.manual_seed(0)
    model = BeitV2ForMIM(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, vocab_size=11,
                         early_layers=early_layers, head_layers=1).eval()
    assert model.objective.name == "beitv2"  # beit2 computes its loss through vlcore.mim
    obj = build_objective("beitv2", tokenizer=tok)
    codes = obj.targets(images)
    out = model.mim_loss(images, mask, codes)
    # the preset on dense head outputs (every patch), then restricted to masked patches by the objective
    main, agg = model.forward_features_mim(images, mask)
    dense = model.lm_head(main[:, 1:]).float()
    loss_main = obj.loss(dense, codes, mask)
    assert torch.allclose(out.loss_main, loss_main, rtol=0, atol=1e-6)
    # and bit-identical on the same gathered logits
    logits, logits_agg = model(images, mask)
    assert torch.equal(out.loss_main, obj.loss_selected(logits.float(), obj.select(codes, mask)))
    ref = torch.nn.functional.cross_entropy(logits.float(), codes[mask])
    assert torch.equal(out.loss_main, ref)
    if early_layers:
        assert torch.equal(out.loss, out.loss_main + obj.loss_selected(logits_agg.float(), codes[mask]))
    else:
        assert out.loss_agg is None and torch.equal(out.loss, out.loss_main)
