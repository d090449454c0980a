"""Students, pretraining model and the CLIP teacher (transformers code path, tiny random weights)."""

import json
import subprocess
import sys

import pytest
import torch

from vlcore.mim import build_objective
from vlcore.models.beit import Beit

from maskdistill.models import REGISTRY, TEACHER_FOR_SIZE, TEACHERS, MaskDistillForMIM
from maskdistill.testing import ClipFeatureTeacher, tiny_batch, tiny_clip, tiny_student

PAPER_COUNTS = {
    "maskdistill_vit_base_patch16_224": 86_530_984,
    "maskdistill_vit_large_patch16_224": 304_430_568,
    "maskdistill_vit_huge_patch14_224": 632_251_368,
}


@pytest.mark.unit
def test_students_match_the_paper_parameter_counts():
    rows = {r["name"]: r for r in REGISTRY.table()}
    for name, count in PAPER_COUNTS.items():
        assert rows[name]["params"] == count
        assert rows[name]["matches_paper"], rows[name]
    assert round(rows["maskdistill_vit_base_patch16_224"]["params"] / 1e6, 1) == 86.5
    assert round(rows["maskdistill_vit_large_patch16_224"]["params"] / 1e6, 1) == 304.4
    assert round(rows["maskdistill_vit_huge_patch14_224"]["params"] / 1e6, 1) == 632.3
    # pretraining modules: shared rel-pos table, mask token, FC head to the default teacher's width
    assert rows["maskdistill_vit_base_patch16_224_pt"]["params"] == 86_256_720
    assert rows["maskdistill_vit_huge_patch14_224_pt"]["params"] == 631_805_248


@pytest.mark.unit
def test_models_cli_lists_the_three_students():
    out = subprocess.run([sys.executable, "-m", "maskdistill.models", "--json"], capture_output=True, text=True,
                         check=True, timeout=300)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    for name, count in PAPER_COUNTS.items():
        assert rows[name]["params"] == count


@pytest.mark.unit
def test_huge_student_geometry_and_default_teachers():
    with torch.device("meta"):
        h = REGISTRY.build("maskdistill_vit_huge_patch14_224")
        hp = REGISTRY.build("maskdistill_vit_huge_patch14_224_pt")
    assert isinstance(h, Beit) and h.grid_size == (16, 16) and len(h.blocks) == 32
    assert isinstance(hp, MaskDistillForMIM) and hp.head_distill.out_features == 1024
    assert TEACHERS[TEACHER_FOR_SIZE["huge"]]["patch"] == 14 and TEACHER_FOR_SIZE["base"] == "clip_vit_base_patch16"
    # 40% block-wise masking: 102 of 256 patches at 224 / 14, 75 (rounded 78) of 196 at 224 / 16
    assert round(0.4 * 256) == 102


@pytest.mark.unit
def test_student_masks_patches_and_head_maps_to_teacher_width():
    student = tiny_student(target_dim=24).eval()
    images, mask = tiny_batch()
    pred = student(images, mask)
    assert pred.shape == (3, 16, 24)
    # a masked patch's input is the mask token: changing its pixels cannot change the head inputs' embedding
    other = images.clone()
    b, i = mask.nonzero()[0].tolist()
    r, c = divmod(i, 4)
    other[b, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = 0.5
    assert torch.equal(student.embed(images, mask), student.embed(other, mask))
    assert not torch.equal(student.embed(images), student.embed(other))


def _vision(clip):
    return getattr(clip, "vision_model", clip)


def _clip_input(images, size=32):
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073))[None, :, None, None]
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711))[None, :, None, None]
    return (images - mean) / std


@pytest.mark.unit
def test_clip_teacher_tensor_options_follow_the_transformers_model():
    images, _ = tiny_batch()
    clip = tiny_clip(with_projection=True)
    with torch.no_grad():
        out = _vision(clip)(pixel_values=_clip_input(images), output_hidden_states=True)
    last = ClipFeatureTeacher(clip, tensor="last_hidden")(images)
    assert last.shape == (3, 16, 32)
    assert torch.allclose(last, out.last_hidden_state[:, 1:], atol=1e-6)  # before post_layernorm
    post = ClipFeatureTeacher(clip, tensor="post_ln")(images)
    assert torch.allclose(post, _vision(clip).post_layernorm(out.last_hidden_state)[:, 1:], atol=1e-6)
    proj = ClipFeatureTeacher(clip, tensor="projected")
    assert proj.out_dim == 16 and proj(images).shape == (3, 16, 16)
    layer1 = ClipFeatureTeacher(clip, tensor="layer:1")(images)
    assert torch.allclose(layer1, out.hidden_states[1][:, 1:], atol=1e-6)
    assert ClipFeatureTeacher(clip, keep_cls=True)(images).shape == (3, 17, 32)
    # with MaskDistill's affine-free LayerNorm, pre- and post-ln_post targets differ only through CLIP's
    # final affine, which is the identity at initialisation
    ln = lambda t: torch.nn.functional.layer_norm(t, t.shape[-1:], eps=1e-6)  # noqa: E731
    assert torch.equal(_vision(clip).post_layernorm.weight, torch.ones(32))
    assert torch.allclose(ln(last), ln(post), atol=1e-3)
    with pytest.raises(ValueError):
        ClipFeatureTeacher(tiny_clip(), tensor="projected")
    with pytest.raises(ValueError):
        ClipFeatureTeacher(clip, tensor="layer:9")
    assert not any(p.requires_grad for p in ClipFeatureTeacher(clip).parameters())


@pytest.mark.unit
def test_clip_teacher_resizes_its_view_to_keep_the_student_grid():
    # a /14-style teacher (patch 7 at 28 px) under a /8 student at 32 px: 4x4 grid needs a 28 px view
    clip = tiny_clip(image_size=28, patch_size=7)
    teacher = ClipFeatureTeacher(clip, image_size=28)
    images, _ = tiny_batch()
    assert teacher(images).shape == (3, 16, 32)
    resized = torch.nn.functional.interpolate(images, size=(28, 28), mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        ref = _vision(clip)(pixel_values=_clip_input(resized)).last_hidden_state[:, 1:]
    assert torch.allclose(teacher(images), ref, atol=1e-6)


@pytest.mark.unit
def test_maskdistill_loss_with_clip_teacher_matches_formula():
    images, mask = tiny_batch()
    teacher = ClipFeatureTeacher(tiny_clip())
    student = tiny_student(target_dim=teacher.out_dim)
    obj = build_objective("maskdistill", teacher=teacher, beta=2.0)
    target = obj.targets(images)
    out = student.mim_loss(images, mask, target, obj)
    t = torch.nn.functional.layer_norm(teacher(images), (32,), eps=1e-6)
    ref = torch.nn.functional.smooth_l1_loss(student(images, mask)[mask], t[mask], beta=2.0)
    assert torch.allclose(out.loss, ref, atol=1e-6)
    out.loss.backward()
    assert student.head_distill.weight.grad.abs().sum() > 0 and student.mask_token.grad.abs().sum() > 0
