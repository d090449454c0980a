"""VQ-KD tokenizer (vlcore.tokenizers.vqkd): sizes, official keys, codebook, losses, teachers."""

import math

import pytest
import torch
import torch.nn.functional as F

from vlcore.checkpoint import load_state_dict_strict
from vlcore.tokenizers import (
    VQKD,
    ClipTeacher,
    ModuleTeacher,
    NormEMAVectorQuantizer,
    TimmTeacher,
    VQKDConfig,
    build_vqkd,
    kmeans_cosine,
    vqkd_state_dict_from_official,
)

TINY = VQKDConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=2, num_codes=16, code_dim=8, target_dim=12)


def official_keys(depth: int, decoder_depth: int) -> set[str]:
    """The key layout of an official unilm VQ-KD checkpoint (beit2/modeling_vqkd.py), teacher removed."""
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.q_bias", "attn.v_bias", "attn.proj.weight",
             "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
             "mlp.fc2.bias"]
    keys = set()
    for part, n in (("encoder", depth), ("decoder", decoder_depth)):
        keys |= {f"{part}.{k}" for k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                                         "fc_norm.weight", "fc_norm.bias")}
        keys |= {f"{part}.blocks.{i}.{b}" for i in range(n) for b in block}
    for layer in ("encode_task_layer", "decode_task_layer"):
        keys |= {f"{layer}.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")}
    keys |= {"quantize.embedding.weight", "quantize.embedding.cluster_size", "quantize.embedding.embed_avg",
             "quantize.embedding.initted", "quantize.cluster_size"}
    return keys


@pytest.mark.unit
def test_paper_scale_sizes():
    with torch.device("meta"):
        m = build_vqkd("vqkd_encoder_base_decoder_3x768x12_clip")
        m1 = build_vqkd("vqkd_encoder_base_decoder_1x768x12_dino")
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert round(count(m.encoder) / 1e6, 2) == 85.79
    assert round(count(m.decoder) / 1e6, 2) == 21.44 and round(count(m1.decoder) / 1e6, 2) == 7.27
    assert round(count(m) / 1e6, 1) == 108.8
    assert m.quantize.embedding.weight.shape == (8192, 32)  # a buffer: no gradient, not counted
    assert m.decode_task_layer[2].out_features == 512 and m1.decode_task_layer[2].out_features == 768
    assert not any("quantize" in n for n, _ in m.named_parameters())


@pytest.mark.convert
def test_official_key_layout_loads_without_missing_or_unexpected_keys():
    torch.manual_seed(0)
    src = VQKD(TINY)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    assert set(sd) == official_keys(2, 1)
    # an official training checkpoint also carries the teacher and its input scaling
    sd["teacher_model.visual.proj"] = torch.zeros(4, 4)
    sd["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    dst = VQKD(TINY)
    load_state_dict_strict(dst, vqkd_state_dict_from_official(sd))
    assert dst.quantize.initted is False  # the tiny source never trained: flag carried over
    x = torch.rand(2, 3, 32, 32)
    src.eval(), dst.eval()
    assert torch.equal(src.encode(x).indices, dst.encode(x).indices)


@pytest.mark.unit
def test_kmeans_converges_to_normalised_cluster_means():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    pts = F.normalize(centres.repeat_interleave(50, 0) + 0.05 * torch.randn(200, 16, generator=g), dim=-1)
    means, bins = kmeans_cosine(pts, 4, num_iters=20, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(means.norm(dim=-1), torch.ones(4), atol=1e-5) and bins.sum() == 200
    assign = (pts @ means.t()).argmax(-1)
    for k in range(4):  # a fixed point: each centroid is the normalised mean of its points
        if bins[k] > 0:
            assert torch.allclose(means[k], F.normalize(pts[assign == k].mean(0), dim=-1), atol=1e-5)
    # fewer points than clusters: centroids are drawn with replacement; the empty ones keep their value
    few = pts[:3]
    means, bins = kmeans_cosine(few, 5, generator=torch.Generator().manual_seed(0))
    assert bins.sum() == 3 and (bins == 0).sum() >= 2
    assert all(((few @ m) > 1 - 1e-5).any() for m in means)


@pytest.mark.unit
def test_quantizer_kmeans_init_ema_update_and_straight_through():
    torch.manual_seed(0)
    q = NormEMAVectorQuantizer(num_codes=8, code_dim=4, decay=0.9).train()
    assert not q.initted
    z = torch.randn(3, 10, 4, requires_grad=True)
    out = q(z)
    assert q.initted
    w = q.embedding.weight.clone()
    assert torch.allclose(w.norm(dim=-1), torch.ones(8), atol=1e-5)
    # commitment loss: mse between the normalised input and its (detached) codeword
    zn = F.normalize(z.detach(), dim=-1)
    assert out.loss.item() == pytest.approx(F.mse_loss(w[out.indices].view_as(zn), zn).item(), rel=1e-5)
    # nearest codeword by cosine
    assert torch.equal(out.indices.view(-1), (zn.reshape(-1, 4) @ w.t()).argmax(-1))
    # straight-through: d z_q / d l2(z) is the identity
    g = torch.randn_like(out.z_q)
    (out.z_q * g).sum().backward()
    want = torch.autograd.grad((F.normalize(z, dim=-1) * g).sum(), z)[0]
    assert torch.allclose(z.grad, want, atol=1e-6)

    # one more step: e <- l2(0.9 e + 0.1 l2(mean of assigned)), empty codes unchanged
    z2 = torch.randn(2, 6, 4)
    zn2 = F.normalize(z2, dim=-1).reshape(-1, 4)
    idx = (zn2 @ w.t()).argmax(-1)
    expect = w.clone()
    for k in range(8):
        sel = zn2[idx == k]
        if len(sel):
            expect[k] = F.normalize(0.9 * w[k] + 0.1 * F.normalize(sel.mean(0), dim=-1), dim=-1)
    q(z2)
    assert torch.allclose(q.embedding.weight, expect, atol=1e-5)
    # eval mode never moves the codebook
    q.eval()
    q(torch.randn(2, 6, 4))
    assert torch.allclose(q.embedding.weight, expect, atol=1e-5)


@pytest.mark.unit
def test_usage_statistics_are_exact():
    q = NormEMAVectorQuantizer(num_codes=4, code_dim=2, kmeans_init=False).eval()
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]]))
    q.reset_usage()
    q(torch.tensor([[[1.0, 0.1], [0.1, 1.0], [1.0, -0.1], [0.9, 0.0]]]))  # codes 0, 1, 0, 0
    u = q.usage()
    assert (u["used"], u["unused"], u["usage"], u["assignments"]) == (2, 2, 0.5, 4)
    assert u["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert q.cluster_size.sum().item() == pytest.approx(0.01 * 4)  # the official EMA counter, decay 0.99


@pytest.mark.unit
def test_cosine_reconstruction_loss():
    t = torch.randn(2, 5, 6)
    assert VQKD.rec_loss(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert VQKD.rec_loss(-t, t).item() == pytest.approx(2.0, abs=1e-6)
    a, b = torch.zeros(1, 1, 2), torch.zeros(1, 1, 2)
    a[..., 0], b[..., 1] = 1, 1
    assert VQKD.rec_loss(a, b).item() == pytest.approx(1.0)


@pytest.mark.unit
def test_gradients_reach_every_trainable_parameter_and_training_reduces_the_loss():
    torch.manual_seed(0)
    model = VQKD(TINY).train()
    teacher = ModuleTeacher(torch.nn.Conv2d(3, 12, 8, stride=8), out_dim=12)
    x = torch.rand(8, 3, 32, 32)
    out = model(x, teacher(x))
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    assert out.indices.shape == (8, 16) and out.rec.shape == (8, 16, 12)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = out.rec_loss.item()
    for _ in range(20):
        opt.zero_grad()
        o = model(x, teacher(x))
        o.loss.backward()
        opt.step()
    assert o.rec_loss.item() < first - 0.1


@pytest.mark.unit
def test_teachers_are_frozen_and_give_patch_features():
    import timm
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=12)
    clip = ClipTeacher(CLIPVisionModelWithProjection(cfg))
    x = torch.rand(2, 3, 32, 32)
    feats = clip(x)
    assert feats.shape == (2, 16, 12) and clip.out_dim == 12
    # the same numbers by hand: CLIP-normalised input, post-LN on all tokens, projection, class token dropped
    m = clip.model
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[None, :, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[None, :, None, None]
    with torch.no_grad():
        h = m.vision_model(pixel_values=(x - mean) / std).last_hidden_state
        want = m.visual_projection(m.vision_model.post_layernorm(h))[:, 1:]
    assert torch.allclose(feats, want, atol=1e-5)
    dino = TimmTeacher(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                         num_classes=0))
    assert dino(x).shape == (2, 16, 192)
    for t in (clip, dino):
        t.train()
        assert not t.training and not any(p.requires_grad for p in t.parameters())
