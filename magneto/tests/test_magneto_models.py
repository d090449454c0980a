"""Models: parameter counts against their sources, gradients, KV-cache generation, timm parity, errors."""

import math
import warnings

import pytest
import torch

from magneto.models import (
    REGISTRY,
    ArchitectureError,
    MagnetoBert,
    MagnetoGPT,
    MagnetoSeq2Seq,
    MagnetoViT,
    convert_timm_vit,
    mask_tokens,
    norm_from_torchscale_flags,
    resolve_init,
    to_timm_vit,
)

from magneto.testing import one_torch_thread  # noqa: F401  (autouse)

NORMS = ["post", "pre", "deepnorm", "subln"]


@pytest.mark.unit
def test_registered_sizes_match_their_sources():
    rows = {r["name"]: r for r in REGISTRY.table()}
    with_source = [r for r in rows.values() if r["paper_params_m"] is not None]
    assert len(with_source) >= 8
    for r in with_source:
        assert r["matches_paper"], f"{r['name']}: {r['params_m']} M vs {r['paper_params_m']} M"
    # Magneto's extra norms: 10 d per layer over the same Pre-LN model (2 d on heads, 2 x 4 d on the FFN)
    with torch.device("meta"):
        sub = REGISTRY.build("magneto_bert_base")
        pre = REGISTRY.build("magneto_bert_base", norm="pre")
    extra = sum(p.numel() for p in sub.parameters()) - sum(p.numel() for p in pre.parameters())
    assert extra == 12 * 10 * 768


def _tiny(kind: str, norm: str):
    kw = dict(dim=16, num_heads=2, norm=norm)
    if kind == "gpt":
        return MagnetoGPT(vocab_size=23, max_seq_len=12, depth=2, **kw)
    if kind == "bert":
        return MagnetoBert(vocab_size=23, max_seq_len=12, depth=2, **kw)
    if kind == "seq2seq":
        return MagnetoSeq2Seq(vocab_size=23, max_seq_len=12, encoder_depth=2, decoder_depth=2, **kw)
    return MagnetoViT(img_size=8, patch_size=4, num_classes=5, depth=2, **kw)


def _loss(kind: str, model) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "vit":
        out = model(torch.randn(2, 3, 8, 8, generator=g))
    elif kind == "seq2seq":
        src = torch.randint(3, 23, (2, 7), generator=g)
        src[1, -2:] = 0  # padding
        out = model(src, torch.randint(3, 23, (2, 5), generator=g))
    elif kind == "bert":
        out = model(torch.randint(0, 23, (2, 7), generator=g), token_type_ids=torch.ones(2, 7, dtype=torch.long))
    else:
        out = model(torch.randint(0, 23, (2, 7), generator=g))
    return out.square().mean() + out.mean()


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["gpt", "bert", "seq2seq", "vit"])
@pytest.mark.parametrize("norm", NORMS)
def test_gradients_reach_every_parameter(kind, norm):
    torch.manual_seed(0)
    model = _tiny(kind, norm)
    if kind == "vit":
        torch.nn.init.normal_(model.head.weight)  # the zero-initialised head would block the trunk's gradients
    loss = _loss(kind, model)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"{kind}/{norm}: no gradient for {missing}"
    has_subln_norms = any(n.endswith("attn.norm.weight") for n, _ in model.named_parameters())
    assert has_subln_norms == (norm == "subln")


@pytest.mark.unit
def test_gpt_cached_generation_equals_uncached():
    torch.manual_seed(0)
    model = MagnetoGPT(vocab_size=23, max_seq_len=32, depth=3, dim=16, num_heads=2).eval()
    prompt = torch.randint(0, 23, (3, 5))
    fast = model.generate(prompt, 12, temperature=0.0)
    slow = model.generate(prompt, 12, temperature=0.0, use_cache=False)
    assert fast.shape == (3, 17) and torch.equal(fast, slow) and torch.equal(fast[:, :5], prompt)
    # sampling with the same generator seed is reproducible and stays in the vocabulary
    a = model.generate(prompt, 8, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 8, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and int(a.max()) < 23
    with pytest.raises(ValueError, match="context"):
        model.generate(prompt, 40)


@pytest.mark.unit
def test_seq2seq_cached_generation_equals_uncached():
    torch.manual_seed(0)
    model = MagnetoSeq2Seq(vocab_size=23, max_seq_len=16, encoder_depth=2, decoder_depth=3, dim=16, num_heads=2)
    src = torch.randint(5, 23, (3, 6))
    src[2, -3:] = 0
    fast = model.generate(src, bos_id=1, eos_id=2, max_new_tokens=10)
    slow = model.generate(src, bos_id=1, eos_id=2, max_new_tokens=10, use_cache=False)
    assert torch.equal(fast, slow) and bool((fast[:, 0] == 1).all())


@pytest.mark.convert
def test_vit_matches_timm_sub_ln_vision_transformer_both_ways():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    timm_vit = VisionTransformer(
        img_size=16, patch_size=4, num_classes=7, embed_dim=32, depth=3, num_heads=4, scale_attn_norm=True,
        scale_mlp_norm=True,
    ).eval()
    with torch.no_grad():
        for p in timm_vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = MagnetoViT(img_size=16, patch_size=4, num_classes=7, dim=32, depth=3, num_heads=4).eval()
    ours.load_state_dict(convert_timm_vit(timm_vit.state_dict()), strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref, out = timm_vit(x), ours(x)
        feats = ours.forward_head(ours.forward_features(x), pre_logits=True)
        ref_feats = timm_vit.forward_head(timm_vit.forward_features(x), pre_logits=True)
    assert (out - ref).abs().max().item() < 1e-5 and (feats - ref_feats).abs().max().item() < 1e-5
    back = VisionTransformer(img_size=16, patch_size=4, num_classes=7, embed_dim=32, depth=3, num_heads=4,
                             scale_attn_norm=True, scale_mlp_norm=True).eval()
    back.load_state_dict(to_timm_vit(ours.state_dict()), strict=True)
    with torch.no_grad():
        assert (back(x) - out).abs().max().item() < 1e-5
    final, inter = ours.forward_intermediates(x, indices=2)
    assert len(inter) == 2 and final.shape == (2, 17, 32)


@pytest.mark.unit
def test_mask_tokens_follows_bert_proportions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (64, 256), generator=g)
    ids[:, 0] = 1  # a special token is never masked
    corrupted, labels = mask_tokens(ids, mask_id=4, vocab_size=1000, special_ids=(1,), generator=g)
    chosen = labels != -100
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    assert not chosen[:, 0].any()
    assert torch.equal(labels[chosen], ids[chosen])
    frac_mask = (corrupted[chosen] == 4).float().mean().item()
    frac_same = (corrupted[chosen] == ids[chosen]).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.02 and 0.08 < frac_same < 0.13  # 10 % kept (+ random hits)
    assert torch.equal(corrupted[~chosen], ids[~chosen])


@pytest.mark.unit
def test_contradictory_settings_are_errors_not_rewrites():
    assert resolve_init("subln") == "magneto" and resolve_init("deepnorm") == "deepnet"
    assert resolve_init("pre") == "none" and resolve_init("subln", "none") == "none"  # gamma = 1 ablation
    for norm, init in (("pre", "magneto"), ("post", "magneto"), ("subln", "deepnet"), ("pre", "deepnet")):
        with pytest.raises(ArchitectureError):
            resolve_init(norm, init)
    with pytest.raises(ArchitectureError, match="exclude each other"):
        norm_from_torchscale_flags(subln=True, deepnorm=True, normalize_before=True)
    with pytest.raises(ArchitectureError, match="normalize_before"):
        norm_from_torchscale_flags(subln=True, deepnorm=False, normalize_before=False)
    with pytest.raises(ArchitectureError, match="normalize_before"):
        norm_from_torchscale_flags(subln=False, deepnorm=True, normalize_before=True)
    assert norm_from_torchscale_flags(subln=False, deepnorm=False, normalize_before=False) == "post"
    with pytest.raises(ArchitectureError):
        MagnetoGPT(vocab_size=5, depth=2, dim=8, num_heads=2, norm="pre", init="magneto")
    with pytest.raises(ArchitectureError):
        MagnetoGPT(vocab_size=5, depth=2, dim=8, num_heads=2, norm="sandwich")


@pytest.mark.unit
def test_post_ln_output_is_normalised_and_subln_has_final_norm():
    torch.manual_seed(0)
    post = MagnetoGPT(vocab_size=23, max_seq_len=8, depth=3, dim=16, num_heads=2, norm="post")
    with torch.no_grad():
        h = post.forward_features(torch.randint(0, 23, (2, 8)))
    assert h.mean(-1).abs().max() < 1e-4 and (h.var(-1, unbiased=False) - 1).abs().max() < 1e-2
    sub = MagnetoGPT(vocab_size=23, max_seq_len=8, depth=3, dim=16, num_heads=2, norm="subln")
    assert isinstance(sub.decoder.norm, torch.nn.LayerNorm) and isinstance(post.decoder.norm, torch.nn.Identity)
    assert sub.gain == pytest.approx(math.sqrt(math.log(6)))
