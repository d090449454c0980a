"""BEiT-style ViT (vlcore.models.beit): timm parity at paper scale, conversions, hooks, init."""

import math

import pytest
import timm
import torch

from vlcore.checkpoint import load_state_dict_strict
from vlcore.models.beit import (
    Beit,
    beit_state_dict_from_official,
    beit_state_dict_to_timm,
    expand_shared_rel_pos_bias,
)
from vlcore.train.optim import param_groups_lrd


def tiny(**kw) -> Beit:
    cfg = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=3, num_heads=4, init_values=0.1)
    cfg.update(kw)
    return Beit(**cfg)


@torch.no_grad()
def randomise_(model: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere, including the zero-initialised tables / biases and a
    non-trivial layer scale, so a parity test sees every parameter."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("gamma_1") or name.endswith("gamma_2"):
            p.copy_(0.2 + 0.3 * torch.rand(p.shape, generator=g))
        elif p.ndim == 1 and "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.02 * torch.randn(p.shape, generator=g) * (10 if "relative_position" in name else 1))


def timm_on_cpu(name: str) -> torch.nn.Module:
    # built on the meta device: timm's own init of 300 M parameters would dominate the test
    model = timm.create_model(name, pretrained=False, device="meta").to_empty(device="cpu")
    for m in model.modules():
        if hasattr(m, "init_non_persistent_buffers"):
            m.init_non_persistent_buffers()
    randomise_(model)
    return model.eval()


@pytest.mark.convert
@pytest.mark.parametrize(
    "name,cfg",
    [
        ("beitv2_base_patch16_224", dict(embed_dim=768, depth=12, num_heads=12, init_values=1e-5)),
        ("beitv2_large_patch16_224", dict(embed_dim=1024, depth=24, num_heads=16, init_values=1e-5)),
    ],
)
def test_parity_with_timm_beitv2_and_back(name, cfg):
    ref = timm_on_cpu(name)
    with torch.device("meta"):
        ours = Beit(**cfg)
    ours = ours.to_empty(device="cpu")
    for m in ours.modules():  # buffers built on meta hold nothing: rebuild the index tables
        if hasattr(m, "relative_position_index"):
            from vlcore.layers.relpos import relative_position_index

            m.relative_position_index = relative_position_index(m.window_size)
    load_state_dict_strict(ours, beit_state_dict_from_official(ref.state_dict(), ours), source=name)
    ours.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_f, got_f = ref.forward_features(x), ours.forward_features(x)
        want, got = ref.forward_head(want_f), ours.forward_head(got_f)
    assert want.shape == got.shape == (1, 1000)
    assert want.abs().max() > 0.1  # the head is not the 0.001-scaled init: logits carry signal
    assert (got_f - want_f).abs().max().item() < 1e-4
    assert (got - want).abs().max().item() < 1e-4
    back = beit_state_dict_to_timm(ours.state_dict())
    ref_sd = ref.state_dict()
    assert set(back) == set(ref_sd)
    assert all(torch.equal(back[k], ref_sd[k]) for k in ref_sd)


@pytest.mark.unit
def test_paper_parameter_counts():
    with torch.device("meta"):
        base = Beit(embed_dim=768, depth=12, num_heads=12)
        large = Beit(embed_dim=1024, depth=24, num_heads=16)
    assert sum(p.numel() for p in base.parameters()) == 86_530_984
    assert round(sum(p.numel() for p in large.parameters()) / 1e6, 2) == 304.43


@pytest.mark.convert
def test_shared_table_expands_per_layer_with_identical_outputs():
    torch.manual_seed(0)
    shared = tiny(rel_pos="shared", use_mask_token=True).eval()
    randomise_(shared)
    sd = shared.state_dict()
    assert "rel_pos_bias.relative_position_bias_table" in sd
    # the official pretraining layout also stores the (persistent) index buffer
    sd["rel_pos_bias.relative_position_index"] = torch.zeros(17, 17, dtype=torch.long)
    sd.pop("mask_token")
    per_layer = tiny(rel_pos="per_layer").eval()
    converted = beit_state_dict_from_official(sd, per_layer)
    load_state_dict_strict(per_layer, converted)
    table = sd["rel_pos_bias.relative_position_bias_table"]
    for blk in per_layer.blocks:
        assert torch.equal(blk.attn.rel_pos_bias.relative_position_bias_table, table)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, _ = shared.forward_blocks(shared.embed(x))
        b, _ = per_layer.forward_blocks(per_layer.embed(x))
    assert (a - b).abs().max().item() < 1e-6
    # the helper alone: one copy per block in the official naming, the shared key dropped
    expanded = expand_shared_rel_pos_bias({"rel_pos_bias.relative_position_bias_table": table}, 3)
    assert sorted(expanded) == [f"blocks.{i}.attn.relative_position_bias_table" for i in range(3)]


@pytest.mark.convert
def test_tables_and_pos_embed_resize_to_a_new_grid():
    src = tiny(rel_pos="per_layer", use_abs_pos_emb=True)
    randomise_(src)
    dst = tiny(img_size=48, rel_pos="per_layer", use_abs_pos_emb=True)  # 4x4 -> 6x6 grid
    sd = beit_state_dict_from_official(beit_state_dict_to_timm(src.state_dict()), dst)
    load_state_dict_strict(dst, sd)
    t = dst.blocks[0].attn.rel_pos_bias.relative_position_bias_table
    assert t.shape == ((2 * 6 - 1) ** 2 + 3, 4)
    # class-token rows are carried over unchanged
    assert torch.equal(t[-3:], src.blocks[0].attn.rel_pos_bias.relative_position_bias_table[-3:])
    assert dst.pos_embed.shape == (1, 37, 32)
    assert dst(torch.randn(1, 3, 48, 48)).shape == (1, 5)


@pytest.mark.unit
def test_forward_intermediates_match_the_trunk():
    model = tiny(global_pool="token", rel_pos="shared").eval()
    randomise_(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, feats = model.forward_intermediates(x, indices=[0, 2])
        nlc = model.forward_intermediates(x, indices=1, output_fmt="NLC", intermediates_only=True, norm=True)
        early = model.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True,
                                            return_prefix_tokens=True)
        full = model.forward_features(x)
        tokens, kept = model.forward_blocks(model.embed(x), collect=(0,))
    assert [f.shape for f in feats] == [(2, 32, 4, 4)] * 2
    assert torch.allclose(final, full)
    assert torch.allclose(nlc[0], full[:, 1:], atol=1e-6)
    assert torch.allclose(feats[0].flatten(2).transpose(1, 2), kept[0][:, 1:])
    assert torch.allclose(early[0][1], kept[0][:, :1])
    assert model.prune_intermediate_layers([1]) == [1] and len(model.blocks) == 2


@pytest.mark.unit
def test_mask_token_hides_masked_patches_and_gradients_reach_every_parameter():
    model = tiny(rel_pos="shared", use_mask_token=True, global_pool="", num_classes=0).train()
    x = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    x2 = x.clone()
    x2[:, :, :8, :8] += 3.0  # patch 0 is masked: its pixels must not matter
    with torch.no_grad():
        model.eval()
        assert torch.allclose(model.forward_features(x, mask), model.forward_features(x2, mask), atol=1e-6)
        assert not torch.allclose(model.forward_features(x), model.forward_features(x2), atol=1e-3)
    model.train()
    out = model.forward_features(x, mask)
    out[:, 1:][mask].pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


@pytest.mark.unit
def test_init_rescales_residual_outputs_and_head():
    torch.manual_seed(0)
    model = Beit(embed_dim=192, depth=4, num_heads=3, num_classes=10, init_mode="pretrain")
    std = [b.attn.proj.weight.std().item() for b in model.blocks]
    # trunc-normal at +-1 std has std 0.02 * 0.538; block l is further divided by sqrt(2 l)
    for l, s in enumerate(std, start=1):
        assert s == pytest.approx(0.02 * 0.5379 / math.sqrt(2 * l), rel=0.05)
    assert model.mask_token is None and model.cls_token.abs().max() <= 0.02 + 1e-7
    assert model.head.weight.abs().max() < 1e-4  # 0.001 head scale
    ft = Beit(embed_dim=192, depth=2, num_heads=3, num_classes=10)
    assert ft.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.unit
def test_layer_decay_groups_and_no_weight_decay():
    model = tiny(rel_pos="shared", use_mask_token=True)
    groups = param_groups_lrd(model, 0.05, 0.5)
    layer = {n: g["layer_id"] for g in groups for n in g["param_names"]}
    assert layer["patch_embed.proj.weight"] == 0 and layer["mask_token"] == 0
    assert layer["blocks.2.mlp.fc1.weight"] == 3 and layer["head.weight"] == 4
    nwd = {n for g in groups if g["weight_decay"] == 0 for n in g["param_names"]}
    assert {"cls_token", "mask_token", "rel_pos_bias.relative_position_bias_table", "blocks.0.gamma_1"} <= nwd
    assert "blocks.0.attn.qkv.weight" not in nwd
    assert model.group_matcher()["stem"].startswith("^cls_token")
