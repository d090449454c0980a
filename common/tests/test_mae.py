"""MAE (vlcore.models.mae): timm parity, official key layout, masking, loss, sizes."""

import argparse

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from vlcore.checkpoint import CheckpointMismatchError
from vlcore.masking import random_masking
from vlcore.models import (
    MaskedAutoencoderViT,
    build_mae,
    load_mae_checkpoint,
    mae_state_dict_from_timm,
    mae_state_dict_to_timm,
    masking_from_noise,
)


def tiny_mae(**kw) -> MaskedAutoencoderViT:
    cfg = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16,
               decoder_depth=2, decoder_num_heads=2)
    cfg.update(kw)
    return MaskedAutoencoderViT(**cfg)


def official_keys(depth: int, decoder_depth: int) -> set[str]:
    """Parameter names of the official MAE `MaskedAutoencoderViT` (models_mae.py)."""
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
            "decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_pos_embed", "decoder_norm.weight",
            "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    keys |= {f"blocks.{i}.{b}" for i in range(depth) for b in block}
    keys |= {f"decoder_blocks.{i}.{b}" for i in range(decoder_depth) for b in block}
    return keys


@pytest.mark.convert
def test_encoder_matches_timm_vit_base_from_random_init():
    torch.manual_seed(0)
    ref = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    # The decoder plays no part here; one block keeps the test quick.
    ours = build_mae("mae_vit_base_patch16_dec512d8b", decoder_depth=1).eval()
    load_mae_checkpoint(ours, mae_state_dict_from_timm(ref.state_dict(), ours))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = ref.forward_features(x)
        got = ours.forward_features(x)
        # The MAE path with nothing masked and the identity order is the same computation.
        latent, mask, ids_restore = ours.forward_encoder(x, 0.0, noise=torch.arange(196.0)[None])
    assert (got - want).abs().max().item() < 1e-5
    assert (latent - want).abs().max().item() < 1e-5
    assert not mask.any() and torch.equal(ids_restore[0], torch.arange(196))

    # Back to timm: the encoder plus a head loads strictly and gives the same features and logits.
    with torch.device("meta"):
        back = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    sd = mae_state_dict_to_timm(ours.state_dict())
    sd.update({k: v for k, v in ref.state_dict().items() if k.startswith("head.")})
    back.load_state_dict(sd, strict=True, assign=True)
    with torch.no_grad():
        assert (back(x) - ref.forward_head(want)).abs().max().item() < 1e-5


def reference_decoder(model: MaskedAutoencoderViT, latent, ids_keep, num_blocks=None):
    """The official decoder written per sample: visible tokens at their positions, mask tokens elsewhere."""
    B, L = ids_keep.shape[0], model.patch_embed.num_patches
    x = model.decoder_embed(latent)
    seq = model.mask_token.expand(B, L, -1).clone()
    for b in range(B):
        for j, pos in enumerate(ids_keep[b].tolist()):
            seq[b, pos] = x[b, 1 + j]
    h = torch.cat((x[:, :1], seq), dim=1) + model.decoder_pos_embed
    blocks = model.decoder_blocks if num_blocks is None else model.decoder_blocks[:num_blocks]
    for blk in blocks:
        n = blk.norm1(h)
        q, k, v = blk.attn.qkv(n).reshape(B, L + 1, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v
        h = h + blk.attn.proj(a.transpose(1, 2).reshape(B, L + 1, -1))
        h = h + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(h))))
    return h


@pytest.mark.unit
def test_decoder_matches_a_per_sample_reference():
    torch.manual_seed(1)
    m = tiny_mae().eval()
    x = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)
    with torch.no_grad():
        latent, mask, ids_restore = m.forward_encoder(x, 0.75, noise)
        ids_keep = torch.argsort(noise, dim=1)[:, :4]
        for k in (1, 2):
            got = m.forward_decoder_hidden(latent, ids_restore, num_blocks=k)
            assert (got - reference_decoder(m, latent, ids_keep, k)).abs().max() < 1e-5
        pred = m.forward_decoder(latent, ids_restore)
        want = m.decoder_pred(m.decoder_norm(reference_decoder(m, latent, ids_keep)))[:, 1:]
    assert pred.shape == (3, 16, 8 * 8 * 3) and (pred - want).abs().max() < 1e-5


@pytest.mark.convert
def test_official_layout_checkpoint_round_trip(tmp_path):
    torch.manual_seed(2)
    m = tiny_mae(norm_pix_loss=True)
    assert set(m.state_dict()) == official_keys(2, 2)
    # The official training scripts save {'model', 'optimizer', 'epoch', 'scaler', 'args'}.
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": m.state_dict(), "optimizer": {}, "epoch": 799, "scaler": {},
                "args": argparse.Namespace(model="mae_vit_tiny", norm_pix_loss=True)}, path)
    fresh = tiny_mae(norm_pix_loss=True)
    report = load_mae_checkpoint(fresh, path)
    assert report == {"missing": [], "ignored": []}
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    with torch.no_grad():
        assert torch.equal(m(x, noise=noise)[1], fresh(x, noise=noise)[1])

    # An encoder-only file cannot feed a teacher whose decoder is used.
    enc_only = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": mae_state_dict_to_timm(m.state_dict())}, enc_only)
    with pytest.raises(CheckpointMismatchError, match="_full"):
        load_mae_checkpoint(tiny_mae(), enc_only)
    assert load_mae_checkpoint(tiny_mae(), enc_only, require_decoder=False)["missing"]
    # Foreign keys are errors unless declared.
    sd = dict(m.state_dict(), **{"decoderfeature_pred.fc1.weight": torch.zeros(4, 16)})
    with pytest.raises(CheckpointMismatchError, match="decoderfeature_pred"):
        load_mae_checkpoint(tiny_mae(), sd)
    assert load_mae_checkpoint(tiny_mae(), sd, extra_ok=("decoderfeature_pred.",))["ignored"] == [
        "decoderfeature_pred.fc1.weight"]


@pytest.mark.unit
def test_masking_invariants_and_shared_noise():
    torch.manual_seed(3)
    x = torch.randn(4, 16, 5)
    noise = torch.rand(4, 16)
    m = masking_from_noise(x, 0.75, noise)
    assert m.x_kept.shape == (4, 4, 5) and m.mask.sum(1).tolist() == [12] * 4
    # Kept tokens are the un-masked ones, in increasing-noise order.
    for b in range(4):
        assert torch.equal(torch.sort(m.ids_keep[b]).values, torch.nonzero(~m.mask[b]).flatten())
        assert torch.equal(m.x_kept[b], x[b, m.ids_keep[b]])
        assert torch.all(noise[b, m.ids_keep[b]].max() < noise[b, m.mask[b]])
    # Appending anything for the removed tokens and gathering with ids_restore restores the order.
    filled = torch.cat((m.x_kept, torch.zeros(4, 12, 5)), dim=1)
    restored = torch.gather(filled, 1, m.ids_restore[..., None].expand(-1, -1, 5))
    assert torch.equal(restored[~m.mask], x[~m.mask]) and restored[m.mask].abs().sum() == 0
    # Same generator seed: the same masks as vlcore.masking.random_masking.
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    model = tiny_mae()
    a, b = model.random_masking(x, 0.75, generator=g1), random_masking(x, 0.75, generator=g2)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_restore, b.ids_restore)
    # Two models given one noise tensor see the same visible patches.
    imgs = torch.randn(4, 3, 32, 32)
    _, m1, _ = tiny_mae().forward_encoder(imgs, 0.75, noise)
    _, m2, _ = tiny_mae(embed_dim=64).forward_encoder(imgs, 0.75, noise)
    assert torch.equal(m1, m2)
    with pytest.raises(ValueError, match="noise must have shape"):
        masking_from_noise(x, 0.75, torch.rand(4, 15))


@pytest.mark.unit
@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_equals_hand_computation(norm_pix):
    torch.manual_seed(4)
    m = tiny_mae(norm_pix_loss=norm_pix)
    imgs = torch.randn(2, 3, 32, 32)
    pred = torch.randn(2, 16, 192)
    mask = torch.rand(2, 16) < 0.7
    got = m.forward_loss(imgs, pred, mask)
    total, count = 0.0, 0
    for b in range(2):
        for i in range(4):
            for j in range(4):
                patch = imgs[b, :, 8 * i : 8 * i + 8, 8 * j : 8 * j + 8].permute(1, 2, 0).reshape(-1).double()
                if norm_pix:
                    mu = patch.mean()
                    var = ((patch - mu) ** 2).sum() / (patch.numel() - 1)
                    patch = (patch - mu) / torch.sqrt(var + 1e-6)
                if mask[b, 4 * i + j]:
                    total += ((pred[b, 4 * i + j].double() - patch) ** 2).mean().item()
                    count += 1
    assert got.item() == pytest.approx(total / count, rel=1e-5)
    assert torch.equal(m.unpatchify(m.patchify(imgs)), imgs)


@pytest.mark.unit
def test_fixed_tables_follow_the_official_sincos_formula():
    m = tiny_mae()

    def official(d, gs):  # numpy, as MAE's util/pos_embed.py computes it
        gh, gw = np.arange(gs, dtype=np.float32), np.arange(gs, dtype=np.float32)
        grid = np.stack(np.meshgrid(gw, gh)).reshape(2, 1, gs, gs)

        def one(dd, pos):
            omega = 1.0 / 10000 ** (np.arange(dd // 2, dtype=np.float64) / (dd / 2.0))
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)

        emb = np.concatenate([one(d // 2, grid[0]), one(d // 2, grid[1])], axis=1)
        return np.concatenate([np.zeros([1, d]), emb], axis=0)

    assert np.allclose(m.pos_embed[0].numpy(), official(32, 4), atol=1e-6)
    assert np.allclose(m.decoder_pos_embed[0].numpy(), official(16, 4), atol=1e-6)
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad


@pytest.mark.unit
def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(5)
    m = tiny_mae(norm_pix_loss=True)
    loss, _, _ = m(torch.randn(2, 3, 32, 32))
    loss.backward()
    for n, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.unit
@pytest.mark.parametrize(
    "name, encoder_m, total_m",
    [
        ("mae_vit_tiny_patch16_dec128d4b", 5.52, 6.47),
        ("mae_vit_small_patch16_dec256d4b", 21.67, 25.17),
        ("mae_vit_base_patch16_dec512d8b", 85.80, 111.91),
        ("mae_vit_large_patch16_dec512d8b", 303.30, 329.54),
        ("mae_vit_huge_patch14_dec512d8b", 630.76, 657.07),
    ],
)
def test_model_sizes(name, encoder_m, total_m):
    with torch.device("meta"):
        m = timm.create_model(name)
    enc = sum(p.numel() for k, p in m.named_parameters() if not k.startswith(("decoder_", "mask_token")))
    assert enc / 1e6 == pytest.approx(encoder_m, abs=0.01)
    assert sum(p.numel() for p in m.parameters()) / 1e6 == pytest.approx(total_m, abs=0.01)
    with pytest.raises(ValueError, match="unknown MAE variant"):
        build_mae("mae_vit_base_patch16_dec100d1b")
