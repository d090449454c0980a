"""beit2 model configurations: paper parameter counts, the MIM model and its [CLS]-bottleneck branch."""

import pytest
import torch

from beit2.models import REGISTRY, BeitV2ForMIM

PAPER_COUNTS = {  # name -> (paper's number in M, our exact count where the paper gives one to 0.01 M)
    "beitv2_base_patch16_224": 86.53,
    "beitv2_large_patch16_224": 304.43,
    "upernet_beitv2_base_ade20k_512": 163.0,
    "upernet_beitv2_large_ade20k_512": 441.0,
}


@pytest.mark.unit
def test_registry_lists_paper_models_with_matching_counts():
    table = {r["name"]: r for r in REGISTRY.table()}
    for name, paper in PAPER_COUNTS.items():
        assert table[name]["paper_params_m"] == paper and table[name]["matches_paper"], table[name]
    assert table["beitv2_base_patch16_224"]["params"] == 86_530_984
    assert table["beitv2_large_patch16_224"]["params_m"] == 304.43
    assert table["vqkd_encoder_base_decoder_3x768x12_clip"]["params_m"] == 108.83
    # pretraining models: main path + aggregation branch (2 blocks), computed from the official modules
    assert table["beitv2_base_patch16_224_pt"]["params_m"] == 106.14
    assert table["beitv2_large_patch16_224_pt"]["params_m"] == 336.73


@pytest.mark.unit
def test_pretraining_model_keys_follow_the_official_layout():
    with torch.device("meta"):
        m = REGISTRY.build("beitv2_base_patch16_224_pt")
    keys = set(m.state_dict())
    assert {"cls_token", "mask_token", "patch_embed.proj.weight", "rel_pos_bias.relative_position_bias_table",
            "norm.weight", "lm_head.weight", "cls_pt_layers.1.gamma_2", "blocks.11.attn.q_bias"} <= keys
    assert not any(k.startswith(("head.", "fc_norm.")) or "attn.rel_pos_bias" in k for k in keys)
    assert m.lm_head.out_features == 8192 and m.early_layers == 9 and len(m.cls_pt_layers) == 2
    agg = sum(p.numel() for n, p in m.named_parameters() if n.startswith("cls_pt_layers"))
    assert round(agg / 1e6, 2) == 14.18


def tiny_mim(**kw) -> BeitV2ForMIM:
    cfg = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=4, vocab_size=16, early_layers=2,
               head_layers=2, init_values=0.1)
    cfg.update(kw)
    return BeitV2ForMIM(**cfg)


@pytest.mark.unit
def test_aggregation_branch_reads_last_cls_and_early_patches():
    torch.manual_seed(0)
    m = tiny_mim().eval()
    x = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 3:9] = True
    with torch.no_grad():
        main, agg = m.forward_features_mim(x, mask)
        tokens = m.embed(x, mask)
        bias = m.shared_rel_pos_bias()
        h = tokens
        for i, blk in enumerate(m.blocks):
            h = blk(h, rel_pos_bias=bias)
            if i == 1:
                early = h
        want = torch.cat((h[:, :1], early[:, 1:]), 1)
        for blk in m.cls_pt_layers:
            want = blk(want, rel_pos_bias=bias)
    assert torch.allclose(main, m.norm(h), atol=1e-6)
    assert torch.allclose(agg, m.norm(want), atol=1e-6)


@pytest.mark.unit
def test_mim_loss_is_main_plus_branch_and_reaches_every_parameter():
    torch.manual_seed(0)
    m = tiny_mim().train()
    x = torch.randn(4, 3, 32, 32)
    mask = torch.zeros(4, 16, dtype=torch.bool)
    mask[:, ::3] = True
    codes = torch.randint(0, 16, (4, 16))
    out = m.mim_loss(x, mask, codes)
    logits, logits_agg = m(x, mask)
    assert logits.shape == logits_agg.shape == (int(mask.sum()), 16)
    assert out.loss.item() == pytest.approx(out.loss_main.item() + out.loss_agg.item(), rel=1e-5)
    assert out.loss_main.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, codes[mask]).item(), rel=1e-4)
    out.loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    plain = tiny_mim(head_layers=0)
    assert plain.early_layers == 0 and len(plain.cls_pt_layers) == 0
    assert plain.mim_loss(x, mask, codes).loss_agg is None


@pytest.mark.unit
def test_branch_init_continues_the_depth_rescale():
    torch.manual_seed(0)
    m = BeitV2ForMIM(img_size=32, patch_size=8, embed_dim=256, depth=4, num_heads=4, vocab_size=8, early_layers=3,
                     head_layers=2)
    # block l is divided by sqrt(2 l): the branch's blocks are layers 4 and 5 of the schedule
    trunk = m.blocks[3].attn.proj.weight.std().item()
    assert m.cls_pt_layers[0].attn.proj.weight.std().item() == pytest.approx(trunk, rel=0.08)
    assert m.cls_pt_layers[1].attn.proj.weight.std().item() == pytest.approx(trunk * (8 / 10) ** 0.5, rel=0.08)
    with pytest.raises(ValueError, match="early_layers"):
        BeitV2ForMIM(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, early_layers=5)
