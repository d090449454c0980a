"""Model definitions: paper sizes, the distillation-token ViT, the GD student and the teacher cut."""

import json

import pytest
import torch

from vlcore.cli import models_main

from g2sd.models import REGISTRY, DistilledVisionTransformer, build_classifier, teacher_features

from g2sd.testing import tiny_batch, tiny_student, tiny_teacher


@pytest.mark.unit
def test_registry_matches_paper_sizes(capsys):
    assert models_main(REGISTRY, ["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    # Students / teachers with 1000-class heads, as the paper counts them.
    for name, want in [("vit_tiny_patch16_224", 5.72), ("vit_small_patch16_224", 22.05),
                       ("vit_base_patch16_224", 86.57), ("g2sd_vit_small_patch16_224_dist", 22.44),
                       ("mae_vit_base_patch16_dec512d8b", 111.91)]:
        assert rows[name]["params_m"] == pytest.approx(want, abs=0.006), name
    assert all(r["matches_paper"] for r in rows.values() if r["paper_params_m"] is not None)
    assert rows["g2sd_mae_vit_small_patch16_dec256d4b"]["params_m"] == pytest.approx(26.45, abs=0.01)


def _dist_vit(**kw) -> DistilledVisionTransformer:
    return build_classifier(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32, num_classes=10,
                            distilled=True, **kw)


@pytest.mark.unit
def test_distillation_token_is_appended_last_without_position_embedding():
    torch.manual_seed(0)
    m = _dist_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    # By hand: [cls, patches] + pos, then the distillation token, then blocks and norm.
    tokens = m.patch_embed(x)
    seq = torch.cat((m.cls_token.expand(2, -1, -1), tokens), 1) + m.pos_embed
    seq = torch.cat((seq, m.dist_token.expand(2, -1, -1)), 1)
    feats = m.norm(m.blocks(seq))
    with torch.no_grad():
        got = m(x)
        want = (m.head(feats[:, 0]) + m.head_dist(feats[:, -1])) / 2
    assert feats.shape[1] == 2 + 16 and torch.allclose(got, want, atol=1e-6)
    m.train()
    cls, dist = m(x)
    assert cls.shape == dist.shape == (2, 10)
    (cls.sum() + dist.sum()).backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.unit
def test_teacher_stops_at_the_chosen_decoder_block():
    x, noise = tiny_batch()
    torch.manual_seed(1)
    t = tiny_teacher().eval()
    out = teacher_features(t, x, noise, layer_index=2)
    assert out["decoder"].shape == (3, 17, 32) and out["encoder"].shape == (3, 5, 48)
    # Blocks after the target and the decoder norm / pixel head play no part.
    before = out["decoder"].clone()
    with torch.no_grad():
        for blk in t.decoder_blocks[2:]:
            for p in blk.parameters():
                p.add_(1.0)
        t.decoder_norm.weight.mul_(3.0)
    assert torch.equal(teacher_features(t, x, noise, layer_index=2)["decoder"], before)
    with pytest.raises(ValueError, match="layer_index"):
        teacher_features(t, x, noise, layer_index=5)


@pytest.mark.unit
def test_student_predicts_every_token_and_trains():
    x, noise = tiny_batch()
    torch.manual_seed(2)
    s = tiny_student()
    out = s(x, noise)
    assert out["decoder"].shape == (3, 17, 32) and out["encoder"].shape == (3, 5, 48)
    assert out["mask"].sum().item() == 3 * 12
    (out["decoder"].square().mean() + out["encoder"].square().mean()).backward()
    unused = ("decoder_norm.", "decoder_pred.")  # the official student never uses them either
    for n, p in s.named_parameters():
        if p.requires_grad and not n.startswith(unused):
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        if n.startswith(unused):
            assert p.grad is None, n
