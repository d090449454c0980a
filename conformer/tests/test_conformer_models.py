"""Conformer at paper scale (sizes, MACs, shapes) and the tiny model against independent references."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conformer.models import REGISTRY, Conformer, ConvBlock, count_macs
from conformer.models.baselines import BottleneckResNet
from conformer.models.conformer import ConvTransBlock, FCUDown

from conformer.testing import TINY, one_torch_thread, randomize_, tiny_conformer  # noqa: F401

PAPER = {  # official README model zoo: parameters (M), MACs (G) at 224
    "conformer_tiny_patch16_224": (23.5, 5.2),
    "conformer_small_patch16_224": (37.7, 10.6),
    "conformer_base_patch16_224": (83.3, 23.3),
}


@pytest.mark.unit
def test_registry_lists_the_papers_configurations_with_their_sizes():
    # (MACs against the paper: test_entrypoints.py::test_models_json_lists_paper_sizes_and_macs)
    rows = {r["name"]: r for r in REGISTRY.table()}
    for name, (params_m, _) in PAPER.items():
        r = rows[name]
        assert r["paper_params_m"] == params_m
        assert abs(r["params"] / 1e6 / params_m - 1) <= 0.01, (name, r["params"])
    # Exact counts of the released models (= mmpretrain's conversions of the official weights).
    assert rows["conformer_tiny_patch16_224"]["params"] == 23_524_704
    assert rows["conformer_small_patch16_224"]["params"] == 37_673_424
    assert rows["conformer_base_patch16_224"]["params"] == 83_289_136
    assert rows["conformer_small_patch32_224"]["params"] == 38_853_072


@pytest.mark.unit
def test_mac_counter_counts_convs_linears_and_attention_matmuls():
    # One transformer block on N tokens: qkv + proj + MLP = 12 N C^2, attention 2 N^2 C.
    block = ConvTransBlock(in_chs=16, out_chs=16, res_conv=False, stride=1, dw_stride=1, embed_dim=8,
                           num_heads=2).trans_block
    n, c = 5, 8

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x):  # 1, 3, S, S -> tokens of a 5 x 8 slice
            return self.block(x.new_zeros(1, n, c))

    assert count_macs(Tokens(), 8) == 12 * n * c * c + 2 * n * n * c


@pytest.mark.unit
def test_paper_scale_shapes_on_meta():
    with torch.device("meta"):
        s16 = REGISTRY.build("conformer_small_patch16_224")
        s32 = REGISTRY.build("conformer_small_patch32_224")
        maps = s16.forward_intermediates(torch.zeros(2, 3, 224, 224), intermediates_only=True, return_tokens=True)
        det = s32.forward_intermediates(torch.zeros(1, 3, 800, 1344), intermediates_only=True, return_tokens=True)
        conv, trans = s16.forward_heads(torch.zeros(2, 3, 224, 224))
    assert [tuple(m.shape) for m, _ in maps] == [(2, 256, 56, 56), (2, 512, 28, 28), (2, 1024, 14, 14),
                                                 (2, 1024, 7, 7)]
    assert all(tuple(t.shape) == (2, 197, 384) for _, t in maps)
    # Detection backbone (P = 32) at 800 x 1344: 25 x 42 tokens + class token at every stage.
    assert [tuple(m.shape[1:]) for m, _ in det] == [(256, 200, 336), (512, 100, 168), (1024, 50, 84),
                                                    (1024, 25, 42)]
    assert all(t.shape[1] == 25 * 42 + 1 for _, t in det)
    assert [f["reduction"] for f in s16.feature_info] == [4, 8, 16, 32]
    assert [f["module"] for f in s16.feature_info] == ["conv_trans_4", "conv_trans_8", "conv_trans_11",
                                                       "conv_trans_12"]
    assert conv.shape == trans.shape == (2, 1000)


def reference_forward(sd, x, *, depth, patch_size, num_heads):
    """Conformer written from the paper's description with functional ops on the official state dict."""
    B = x.shape[0]

    def bn(h, p, eps):
        return F.batch_norm(h, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, eps)

    def ln(h, p, eps):
        return F.layer_norm(h, (h.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], eps)

    def lin(h, p):
        return F.linear(h, sd[p + ".weight"], sd.get(p + ".bias"))

    def conv(h, p, **kw):
        return F.conv2d(h, sd[p + ".weight"], sd.get(p + ".bias"), **kw)

    def bottleneck(h, p, stride, res, inject=None):
        a = F.relu(bn(conv(h, p + ".conv1"), p + ".bn1", 1e-6))
        if inject is not None:
            a = a + inject  # FCUUp output enters before the 3x3 conv
        x2 = F.relu(bn(conv(a, p + ".conv2", stride=stride, padding=1), p + ".bn2", 1e-6))
        out = bn(conv(x2, p + ".conv3"), p + ".bn3", 1e-6)
        short = bn(conv(h, p + ".residual_conv", stride=stride), p + ".residual_bn", 1e-6) if res else h
        return F.relu(out + short), x2

    def transformer(t, p):
        n, c = t.shape[1:]
        qkv = lin(ln(t, p + ".norm1", 1e-6), p + ".attn.qkv").reshape(B, n, 3, num_heads, c // num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-1, -2)) * (c // num_heads) ** -0.5).softmax(-1)
        t = t + lin((att @ v).transpose(1, 2).reshape(B, n, c), p + ".attn.proj")
        return t + lin(F.gelu(lin(ln(t, p + ".norm2", 1e-6), p + ".mlp.fc1")), p + ".mlp.fc2")

    base = F.max_pool2d(F.relu(bn(conv(x, "conv1", stride=2, padding=3), "bn1", 1e-5)), 3, 2, 1)
    c, _ = bottleneck(base, "conv_1", 1, True)
    k = patch_size // 4
    t = conv(base, "trans_patch_conv", stride=k).flatten(2).transpose(1, 2)
    t = transformer(torch.cat([sd["cls_token"].expand(B, -1, -1), t], 1), "trans_1")
    third = depth // 3
    for i in range(2, depth + 1):
        stage = 2 if i <= third else 3 if i <= 2 * third else 4
        first = i in (third + 1, 2 * third + 1)
        dw, p = k // 2 ** (stage - 2), f"conv_trans_{i}"
        c, x2 = bottleneck(c, p + ".cnn_block", 2 if first else 1, first)
        d = F.avg_pool2d(conv(x2, p + ".squeeze_block.conv_project"), dw, dw).flatten(2).transpose(1, 2)
        d = torch.cat([t[:, :1], F.gelu(ln(d, p + ".squeeze_block.ln", 1e-6))], 1)
        t = transformer(d + t, p + ".trans_block")
        u = t[:, 1:].transpose(1, 2).reshape(B, -1, x2.shape[-2] // dw, x2.shape[-1] // dw)
        u = F.relu(bn(conv(u, p + ".expand_block.conv_project"), p + ".expand_block.bn", 1e-6))
        u = F.interpolate(u, scale_factor=dw, mode="nearest")
        c, _ = bottleneck(c, p + ".fusion_block", 2 if i == depth else 1, i == depth, inject=u)
    return lin(c.mean((2, 3)), "conv_cls_head"), lin(ln(t, "trans_norm", 1e-5)[:, 0], "trans_cls_head")


@pytest.mark.unit
@pytest.mark.parametrize("depth", [6, 9])
def test_forward_matches_a_functional_reference_of_the_paper(depth):
    model = randomize_(tiny_conformer(depth=depth)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        conv, trans = model.forward_heads(x)
        ref_conv, ref_trans = reference_forward(model.state_dict(), x, depth=depth, patch_size=16, num_heads=2)
        summed = model(x)
    torch.testing.assert_close(conv, ref_conv, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(trans, ref_trans, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(summed, conv + trans)


@pytest.mark.unit
def test_gradients_reach_every_parameter_through_both_heads():
    model = tiny_conformer(drop_path_rate=0.1).train()
    conv, trans = model(torch.randn(4, 3, 64, 64), return_heads=True)
    (F.cross_entropy(conv, torch.arange(4)) + F.cross_entropy(trans, torch.arange(4))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.unit
def test_each_head_learns_from_both_branches_through_the_fcus():
    # Without FCUs the transformer head could reach the CNN branch only through the shared stem,
    # and the CNN head could not reach the transformer blocks at all.
    model = tiny_conformer().train()
    x = torch.randn(4, 3, 64, 64)
    conv, trans = model(x, return_heads=True)
    cnn_w = model.conv_trans_3.cnn_block.conv2.weight
    trans_w = model.conv_trans_3.trans_block.mlp.fc1.weight
    g_trans = torch.autograd.grad(trans.square().sum(), [cnn_w], retain_graph=True)[0]
    g_conv = torch.autograd.grad(conv.square().sum(), [trans_w])[0]
    assert g_trans.abs().sum() > 0 and g_conv.abs().sum() > 0


@pytest.mark.unit
def test_fcu_down_puts_the_current_class_token_in_front():
    fcu = FCUDown(in_chs=4, embed_dim=8, dw_stride=2)
    x_t = torch.randn(2, 1 + 4, 8)
    out = fcu(torch.randn(2, 4, 4, 4), x_t)  # B, 1 + (4/2)^2, E
    assert out.shape == (2, 5, 8)
    torch.testing.assert_close(out[:, 0], x_t[:, 0])


@pytest.mark.unit
def test_drop_path_schedule_and_no_drop_path_in_the_cnn_branch():
    model = tiny_conformer(drop_path_rate=0.25, depth=6)
    rates = [getattr(model.trans_1.drop_path1, "drop_prob", 0.0)]
    rates += [getattr(model.get_submodule(f"conv_trans_{i}.trans_block.drop_path1"), "drop_prob", 0.0)
              for i in range(2, 7)]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25])
    cnn = [m for n, m in model.named_modules() if ("cnn_block" in n or "fusion_block" in n or n.startswith("conv_1"))]
    assert not any("DropPath" in type(m).__name__ for m in cnn)
    assert model.no_weight_decay() == {"cls_token"}


@pytest.mark.unit
def test_conv_block_equals_timm_bottleneck():
    from timm.models.resnet import Bottleneck

    ours = randomize_(ConvBlock(in_chs=16, out_chs=32, stride=2, res_conv=True)).eval()
    down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32, eps=1e-6))
    timm_block = Bottleneck(16, 8, stride=2, downsample=down, norm_layer=lambda c, **kw: nn.BatchNorm2d(c, eps=1e-6, **kw)).eval()
    mapping = {"residual_conv": "downsample.0", "residual_bn": "downsample.1"}
    sd = {}
    for k, v in ours.state_dict().items():
        head, _, rest = k.partition(".")
        sd[f"{mapping.get(head, head)}.{rest}"] = v
    timm_block.load_state_dict(sd)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], timm_block(x))


@pytest.mark.unit
def test_transformer_block_equals_timm_vit_block():
    from timm.models.vision_transformer import Block

    block = ConvTransBlock(in_chs=16, out_chs=16, res_conv=False, stride=1, dw_stride=1, embed_dim=24,
                           num_heads=3).trans_block.eval()
    randomize_(block)
    timm_block = Block(24, 3, qkv_bias=True, norm_layer=lambda d, **kw: nn.LayerNorm(d, eps=1e-6, **kw)).eval()
    timm_block.load_state_dict(block.state_dict())  # same names: norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        torch.testing.assert_close(block(x), timm_block(x), rtol=1e-5, atol=1e-5)


@pytest.mark.unit
def test_forward_intermediates_selects_levels_and_stops_early():
    model = randomize_(tiny_conformer()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        two = model.forward_intermediates(x, indices=[0, 1], stop_early=True, intermediates_only=True)
        last = model.forward_intermediates(x, indices=1, intermediates_only=True)
        feats = model.forward_features(x)
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]  # strides 4, 8, 16, 32 of 64
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in model.feature_info]
    torch.testing.assert_close(two[1], maps[1])
    torch.testing.assert_close(last[0], maps[3])
    torch.testing.assert_close(final[0], feats[0])
    torch.testing.assert_close(maps[3], feats[0])
    with pytest.raises(ValueError, match="feature levels"):
        model.forward_intermediates(x, indices=[4])


@pytest.mark.unit
def test_input_size_must_fit_the_token_grid():
    model = tiny_conformer()
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 72, 72))
    with pytest.raises(ValueError, match="multiple of 16"):
        Conformer(patch_size=24)
    with pytest.raises(ValueError, match="multiple of 3"):
        Conformer(depth=8)


@pytest.mark.unit
def test_timm_api_create_model_pre_logits_and_reset_classifier():
    import timm

    model = timm.create_model("conformer_tiny_patch16_224", **{k: v for k, v in TINY.items() if k != "qkv_bias"})
    assert isinstance(model, Conformer) and model.embed_dim == 32
    with pytest.raises(ValueError, match="no weights are downloaded"):
        timm.create_model("conformer_tiny_patch16_224", pretrained=True)
    feats = model.forward_features(torch.randn(2, 3, 64, 64))
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    model.reset_classifier(3)
    assert [h.out_features for h in model.get_classifier()] == [3, 3]
    groups = model.group_matcher()
    assert "stem" in groups and "blocks" in groups


@pytest.mark.unit
def test_mini_reproduction_models_have_equal_size():
    sizes = {}
    for name in ["conformer_micro_patch16_32", "resnet_micro_32", "deit_micro_patch4_32"]:
        with torch.device("meta"):
            sizes[name] = sum(p.numel() for p in REGISTRY.build(name).parameters())
    ref = sizes["conformer_micro_patch16_32"]
    assert all(abs(n / ref - 1) < 0.01 for n in sizes.values()), sizes
    # The ResNet is Conformer's CNN branch alone: the same bottleneck sequence (1 + 2 per coupled block).
    resnet = BottleneckResNet(num_classes=10, channel_ratio=0.5, depth=6)
    assert len(resnet.blocks) == 1 + 2 * 5
    conformer = Conformer(num_classes=10, channel_ratio=0.5, depth=6, embed_dim=48, num_heads=2)
    cnn = [conformer.conv_1] + [getattr(conformer, n).get_submodule(b) for n in conformer.block_names
                                for b in ("cnn_block", "fusion_block")]
    assert [b.conv2.stride for b in resnet.blocks] == [b.conv2.stride for b in cnn]
    assert [b.conv3.out_channels for b in resnet.blocks] == [b.conv3.out_channels for b in cnn]
