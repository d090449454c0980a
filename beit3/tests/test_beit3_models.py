"""Parameter counts at paper scale, Multiway routing, the Magneto init, every head training."""

import math

import pytest
import torch

from vlcore.registry import count_parameters

from beit3.metrics import corpus_bleu, recall_at_k, vqa_accuracy, vqa_soft_score
from beit3.models import (
    REGISTRY,
    BEiT3,
    BEiT3ForCaptioning,
    BEiT3ForImageClassification,
    BEiT3ForNLVR2,
    BEiT3ForRetrieval,
    BEiT3ForVQA,
    BEiT3Pretrain,
)
from beit3.testing import TINY, tiny_inputs

# counts measured with `python -m beit3.models` (README table); the card's arithmetic gives the same
EXPECTED_M = {
    "beit3_base_patch16_224": 220.99,
    "beit3_base_itc_patch16_224": 222.17,
    "beit3_base_pretrain_patch16_224": 276.51,
    "beit3_large_patch16_224": 672.70,
    "beit3_large_itc_patch16_224": 674.80,
    "beit3_large_pretrain_patch16_224": 746.71,
    "beit3_giant_patch14_224": 1848.43,
}


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(EXPECTED_M))
def test_param_counts_match_paper(name):
    e = next(x for x in REGISTRY if x.name == name)
    n = e.count_params() / 1e6
    assert abs(n - EXPECTED_M[name]) < 0.01
    assert abs(n - e.paper_params_m) / e.paper_params_m <= e.tolerance


@pytest.mark.unit
def test_giant_split_matches_paper():
    with torch.device("meta"):
        m = next(x for x in REGISTRY if x.name == "beit3_giant_patch14_224").builder()
    count = lambda f: count_parameters(m, f) / 1e6  # noqa: E731
    attn = count(lambda n: ".attn.qkv." in n or ".attn.proj." in n)
    v_ffn = count(lambda n: ".mlp.A.fc" in n)
    l_ffn = count(lambda n: ".mlp.B.fc" in n)
    vl_ffn = count(lambda n: n.startswith("vl_mlp.") and ".fc" in n)
    assert abs(attn - 317.4) < 0.5 and abs(v_ffn - 692.4) < 0.5 and abs(l_ffn - 692.4) < 0.5 and abs(vl_ffn - 51.9) < 0.1


@pytest.mark.unit
def test_multiway_routing_uses_the_right_expert():
    m = BEiT3(**TINY).eval()
    image, text, _ = tiny_inputs()
    ref_img = m(image)
    with torch.no_grad():  # language experts must not influence an image-only pass
        for n, p in m.named_parameters():
            if ".B." in n:
                p.add_(1.0)
    assert torch.allclose(m(image), ref_img)
    assert not torch.allclose(m(image, text)[:, :17], ref_img)  # fused: attention mixes text in


@pytest.mark.unit
def test_shared_attention_vl_ffn_only_for_pairs():
    m = BEiT3(**TINY, multiway="shared_attention", vl_layers=1).eval()
    image, text, _ = tiny_inputs()
    a_img, a_txt, a_pair = m(image), m(text=text), m(image, text)
    with torch.no_grad():
        m.vl_mlp[0].fc2.bias.add_(1.0)
    assert torch.allclose(m(image), a_img) and torch.allclose(m(text=text), a_txt)
    assert not torch.allclose(m(image, text), a_pair)


@pytest.mark.unit
def test_magneto_gain_survives_init():
    """The official wrapper's trunc-normal re-init erases torchscale's gain; ours applies it last."""
    torch.manual_seed(0)
    m = BEiT3(embed_dim=256, depth=6, num_heads=4, vocab_size=50, img_size=32, patch_size=16)
    g = math.sqrt(math.log(12))
    assert abs(m.magneto_gain - g) < 1e-9
    fc1 = m.encoder.blocks[0].mlp.B.fc1.weight.std().item()
    qkv = m.encoder.blocks[0].attn.qkv.A.weight
    q_std, v_std = qkv[:256].std().item(), qkv[512:].std().item()
    assert abs(fc1 / 0.02 - g) < 0.1  # trunc-normal(0.02) truncated at 2 std has std ~0.0176
    assert abs(v_std / q_std - g) < 0.1
    plain = BEiT3(embed_dim=256, depth=6, num_heads=4, vocab_size=50, img_size=32, patch_size=16, magneto_init=False)
    assert abs(plain.encoder.blocks[0].mlp.B.fc1.weight.std().item() / fc1 - 1 / g) < 0.05


@pytest.mark.unit
def test_gradients_reach_every_parameter():
    m = BEiT3Pretrain(**TINY, num_visual_tokens=20, multiway="shared_attention", vl_layers=1)
    image, text, pad = tiny_inputs()
    mpos = torch.zeros(2, 16, dtype=torch.bool)
    mpos[:, :6] = True
    labels = torch.full_like(text, -100)
    labels[:, 1:3] = text[:, 1:3]
    loss = m.forward_mim(image, mpos, torch.randint(0, 20, (2, 16)))
    loss = loss + m.forward_mlm(text, labels, text_padding_mask=pad) + m.forward_mlm(text, labels, image=image)
    loss.backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # pos rows 0/1 are the fairseq offset; unused text rows beyond the sequence
    dead = [n for n in dead if not n.startswith("beit3.pos_embed")]
    assert dead == []


def _train(model, loss_fn, steps=8, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    return losses


@pytest.mark.smoke
def test_heads_train_on_tiny_data():
    torch.manual_seed(0)
    image, text, pad = tiny_inputs(batch=4, seed=2)
    vqa = BEiT3ForVQA(**TINY, num_answers=5)
    soft = torch.zeros(4, 5)
    soft[torch.arange(4), torch.tensor([0, 1, 2, 3])] = 1.0
    lv = _train(vqa, lambda: vqa.loss(vqa(image, text, pad), soft))
    assert lv[-1] < lv[0]
    assert vqa_accuracy(vqa(image, text, pad), soft) >= 0.0

    nlvr = BEiT3ForNLVR2(**TINY)
    y = torch.tensor([0, 1, 0, 1])
    ln = _train(nlvr, lambda: torch.nn.functional.cross_entropy(nlvr(image, image.flip(0), text, pad), y), lr=1e-2)
    assert ln[-1] < ln[0]

    ret = BEiT3ForRetrieval(**TINY)
    lr_ = _train(ret, lambda: ret(image, text, pad))
    assert lr_[-1] < lr_[0]

    cap = BEiT3ForCaptioning(**TINY)
    labels = torch.full_like(text, -100)
    labels[:, 2:5] = text[:, 2:5]
    masked = text.clone()
    masked[:, 2:5] = 3
    lc = _train(cap, lambda: cap.loss(image, masked, labels))
    assert lc[-1] < lc[0]
    out = cap.generate(image[:2], max_len=4, bos_id=0, eos_id=2, mask_id=3)
    assert out.shape[0] == 2 and 2 <= out.shape[1] <= 5 and (out[:, 0] == 0).all()

    cls = BEiT3ForImageClassification(**TINY, num_classes=3)
    assert "beit3.encoder.norm.A.weight" not in dict(cls.named_parameters())  # normalize_output off
    yc = torch.tensor([0, 1, 2, 0])
    lk = _train(cls, lambda: torch.nn.functional.cross_entropy(cls(image), yc), lr=1e-2)
    assert lk[-1] < lk[0]


@pytest.mark.unit
def test_caption_mask_is_causal_on_text():
    cap = BEiT3ForCaptioning(**TINY).eval()
    image, text, _ = tiny_inputs()
    a = cap.logits(image, text)
    text2 = text.clone()
    text2[:, -1] = (text2[:, -1] + 1) % TINY["vocab_size"]
    b = cap.logits(image, text2)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6)  # earlier positions never see later tokens
    assert not torch.allclose(a[:, -1], b[:, -1])


@pytest.mark.unit
def test_metrics_against_hand_values():
    assert [vqa_soft_score(k) for k in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    soft = torch.tensor([[0.3, 1.0, 0.0], [0.0, 0.0, 0.9]])
    assert abs(vqa_accuracy(logits, soft) - 60.0) < 1e-5  # (0.3 + 0.9) / 2
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.0], [0.0, 0.1, 0.2]])
    r = recall_at_k(sim, ks=(1, 2))
    # image 1's text ranks 2nd (0.8 > 0.5); text 0 is best for image 0; column view: text 1 best = image 1
    assert abs(r["tr@1"] - 200 / 3) < 1e-4 and r["tr@2"] == 100.0
    assert r["ir@1"] == 100.0  # text 0 -> image 0 (0.9 > 0.8); text 1 -> image 1 (0.5 > 0.1); text 2 -> image 2
    assert corpus_bleu(["a red circle left of a blue square"], [["a red circle left of a blue square"]]) == pytest.approx(1.0)
    # hand value: hyp "the cat sat" vs ref "the cat sat down": p1..p3 = 1, 1, 1 ; BLEU-3, BP = exp(1 - 4/3)
    assert corpus_bleu(["the cat sat"], [["the cat sat down"]], max_n=3) == pytest.approx(math.exp(1 - 4 / 3))
    assert corpus_bleu(["x y"], [["a b c"]]) == 0.0
