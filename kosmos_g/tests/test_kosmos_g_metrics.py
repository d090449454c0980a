import pytest
import torch
from torch import nn

from kosmos_g.metrics import FeatureExtractor, clip_i_score, clip_t_score, dino_score, fid, frechet_distance


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


@pytest.mark.unit
def test_dino_and_clip_i_are_mean_cosines_by_hand():
    net = _net()
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 16, 16, generator=g), torch.rand(4, 3, 16, 16, generator=g)
    with torch.no_grad():
        fa, fb = net(a), net(b)
    hand = sum(float(fa[i] @ fb[i] / (fa[i].norm() * fb[i].norm())) for i in range(4)) / 4
    assert dino_score(net, a, b) == pytest.approx(hand, rel=1e-5)
    assert clip_i_score(net, a, a) == pytest.approx(1.0, abs=1e-6)
    # one reference for all images broadcasts
    hand1 = sum(float(fa[i] @ fb[0] / (fa[i].norm() * fb[0].norm())) for i in range(4)) / 4
    assert dino_score(net, a, b[:1]) == pytest.approx(hand1, rel=1e-5)


@pytest.mark.unit
def test_clip_t_by_hand():
    img_net = _net()
    emb = nn.Embedding(10, 32)
    texts = torch.tensor([1, 2, 3])
    imgs = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fi, ft = img_net(imgs), emb(texts)
    cos = [float(fi[i] @ ft[i] / (fi[i].norm() * ft[i].norm())) for i in range(3)]
    assert clip_t_score(img_net, emb, imgs, texts) == pytest.approx(sum(cos) / 3, rel=1e-5)
    assert clip_t_score(img_net, emb, imgs, texts, logit_scale=100, clip_at_zero=True) == pytest.approx(
        100 * sum(max(c, 0) for c in cos) / 3, rel=1e-5)


@pytest.mark.unit
def test_fid_with_a_custom_extractor_matches_the_closed_form():
    ext = FeatureExtractor(_net(), num_features=32)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 3, 16, 16, generator=g)
    assert fid(ext, real, real) == pytest.approx(0.0, abs=1e-3)  # identical sets
    fake = (real * 0.5 + 0.4).clamp(0, 1)
    with torch.no_grad():
        fr, ff = ext(real), ext(fake)
    hand = frechet_distance(fr.mean(0), torch.cov(fr.T), ff.mean(0), torch.cov(ff.T))
    got = fid(ext, real, fake)
    assert got == pytest.approx(hand, rel=1e-3)
    assert got > 0.01


@pytest.mark.unit
def test_frechet_distance_of_gaussians_by_hand():
    # 1-D: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    d = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[1.0]]))
    assert d == pytest.approx(4 + 4 + 1 - 2 * 2, rel=1e-9)
