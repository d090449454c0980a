"""Official BEiT v2 / timm checkpoint layouts through beit2.convert (tiny artefacts in tmp_path)."""

import argparse

import pytest
import torch
from timm.models.beit import Beit as TimmBeit

from vlcore.checkpoint import CheckpointError, load_weights
from vlcore.layers.relpos import relative_position_index
from vlcore.models.beit import Beit
from vlcore.tokenizers import VQKD, VQKDConfig

from beit2 import convert as C
from beit2.models import BeitV2ForMIM

GEOM = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4)
BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.q_bias", "attn.v_bias", "attn.proj.weight",
              "attn.proj.bias", "gamma_1", "gamma_2", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
              "mlp.fc2.weight", "mlp.fc2.bias"]


def official_pretrain_keys(depth: int, head_layers: int) -> set[str]:
    """Key layout of a unilm BEiT v2 pretraining checkpoint (modeling_pretrain.py), as listed in the paper card."""
    keys = {"cls_token", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "rel_pos_bias.relative_position_bias_table", "rel_pos_bias.relative_position_index", "norm.weight",
            "norm.bias", "lm_head.weight", "lm_head.bias"}
    keys |= {f"blocks.{i}.{k}" for i in range(depth) for k in BLOCK_KEYS}
    keys |= {f"cls_pt_layers.{i}.{k}" for i in range(head_layers) for k in BLOCK_KEYS}
    return keys


def official_finetune_keys(depth: int) -> set[str]:
    keys = {"cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "fc_norm.weight", "fc_norm.bias",
            "head.weight", "head.bias"}
    per = BLOCK_KEYS + ["attn.relative_position_bias_table", "attn.relative_position_index"]
    return keys | {f"blocks.{i}.{k}" for i in range(depth) for k in per}


@torch.no_grad()
def randomise_(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for n, p in module.named_parameters():
        p.copy_((0.3 if "relative_position" in n or "gamma" in n else 0.05) * torch.randn(p.shape, generator=g)
                + (1.0 if n.endswith("norm1.weight") or n.endswith("norm2.weight") else 0.0))


def official_pretrain_file(tmp_path):
    src = BeitV2ForMIM(**GEOM, vocab_size=16, early_layers=2, head_layers=2)
    randomise_(src)
    sd = C.official_from_pretrain(src)
    path = tmp_path / "beitv2_tiny_pt1k.pth"
    # official files carry the training arguments as an argparse.Namespace next to the weights
    torch.save({"model": sd, "epoch": 1599, "args": argparse.Namespace(lr=1.5e-3)}, path)
    return src, sd, path


@pytest.mark.convert
def test_official_pretraining_checkpoint_loads_without_missing_or_unexpected_keys(tmp_path):
    src, sd, path = official_pretrain_file(tmp_path)
    assert set(sd) == official_pretrain_keys(3, 2)
    read = C.read_checkpoint(path)
    assert C.detect_layout(read) == "pretrain"
    converted, model, summary = C.convert(read, early_layers=2)
    assert isinstance(model, BeitV2ForMIM) and model.early_layers == 2 and "pretraining" in summary
    assert set(converted) == set(model.state_dict())  # loaded strictly inside convert
    x, mask = torch.randn(2, 3, 32, 32), torch.rand(2, 16) < 0.4
    with torch.no_grad():
        for a, b in zip(src.eval()(x, mask), model.eval()(x, mask)):
            assert torch.equal(a, b)
    # and back: our model exported in the official layout is the original file's content
    back = C.official_from_pretrain(model)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.convert
def test_pretraining_to_finetuning_copies_the_shared_table_into_every_block(tmp_path):
    src, sd, _ = official_pretrain_file(tmp_path)
    ft = Beit(**GEOM, num_classes=7, rel_pos="per_layer")
    converted, dropped = C.finetune_init_from_pretrain(sd, ft)
    assert {"mask_token", "lm_head.weight", "norm.weight", "cls_pt_layers.0.attn.qkv.weight"} <= set(dropped)
    fresh = C.load_finetune_init(ft, converted)
    assert sorted(fresh) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    table = sd["rel_pos_bias.relative_position_bias_table"]
    for blk in ft.blocks:
        assert torch.equal(blk.attn.rel_pos_bias.relative_position_bias_table, table)
    # the trunk computes what the pretraining trunk computed (same tables, same weights)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, _ = src.eval().forward_blocks(src.embed(x))
        b, _ = ft.eval().forward_blocks(ft.embed(x))
    assert (a - b).abs().max() < 1e-5
    # at another resolution the table is re-gridded (BEiT's geometric rule) for every block
    big = Beit(**{**GEOM, "img_size": 48}, num_classes=7, rel_pos="per_layer")
    conv_big, _ = C.finetune_init_from_pretrain(sd, big)
    C.load_finetune_init(big, conv_big)
    assert big.blocks[2].attn.rel_pos_bias.relative_position_bias_table.shape == (11 * 11 + 3, 4)
    # a checkpoint that lacks backbone keys is refused, naming them
    with pytest.raises(CheckpointError, match="lacks 1 backbone keys"):
        C.load_finetune_init(ft, {k: v for k, v in converted.items() if k != "blocks.0.norm1.weight"})


@pytest.mark.convert
def test_official_finetuned_and_timm_layouts_match_timm_outputs(tmp_path):
    torch.manual_seed(0)
    ref = TimmBeit(**GEOM, num_classes=5, use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1).eval()
    randomise_(ref)
    sd = dict(ref.state_dict())
    for i, blk in enumerate(ref.blocks):  # the official files also hold the (persistent there) index buffers
        sd[f"blocks.{i}.attn.relative_position_index"] = relative_position_index((4, 4))
    assert set(sd) == official_finetune_keys(3)
    path = tmp_path / "beitv2_tiny_ft1k.pth"
    torch.save({"model": sd}, path)
    out = tmp_path / "ours.safetensors"
    assert C.main(["--input", str(path), "--output", str(out)]) == 0
    ours = Beit(**GEOM, num_classes=5, init_values=0.1)
    ours.load_state_dict(load_weights(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ours.eval()(x) - ref(x)).abs().max() < 1e-5
    # ours -> timm layout, loss-free
    back = tmp_path / "timm.safetensors"
    assert C.main(["--input", str(out), "--output", str(back), "--to", "timm"]) == 0
    timm_sd = load_weights(back)
    assert set(timm_sd) == set(ref.state_dict())
    assert all(torch.equal(timm_sd[k], v) for k, v in ref.state_dict().items())


@pytest.mark.convert
def test_official_vqkd_checkpoint_converts_and_tokenizes_identically(tmp_path):
    cfg = VQKDConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1, decoder_embed_dim=64,
                     decoder_depth=1, decoder_num_heads=1, num_codes=16, code_dim=8, target_dim=12)
    src = VQKD(cfg)
    randomise_(src)
    with torch.no_grad():
        src.quantize.embedding.weight.copy_(torch.nn.functional.normalize(torch.randn(16, 8), dim=-1))
        src.quantize.embedding.initted.fill_(1.0)
    sd = dict(src.state_dict())
    sd["teacher_model.visual.proj"] = torch.zeros(3, 3)
    sd["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    path = tmp_path / "vqkd_tiny.pth"
    torch.save({"model": sd, "args": argparse.Namespace(n_code=16)}, path)
    out = tmp_path / "vqkd.safetensors"
    assert C.main(["--input", str(path), "--output", str(out)]) == 0
    got = load_weights(out)
    assert not any(k.startswith(("teacher", "scaling")) for k in got)
    dst = VQKD(cfg)
    dst.load_state_dict(got)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(src.eval().get_codebook_indices(x), dst.eval().get_codebook_indices(x))


@pytest.mark.convert
def test_unsafe_or_unknown_inputs_fail_with_one_line(tmp_path, capsys):
    from vlcore.cli import run_cli

    bad = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "hook": print}, bad)
    with pytest.raises(CheckpointError, match="not a readable checkpoint|refused"):
        C.read_checkpoint(bad)
    odd = tmp_path / "odd.pth"
    torch.save({"weight": torch.ones(2)}, odd)
    with pytest.raises(SystemExit) as e:
        run_cli(C.main, ["--input", str(odd), "--output", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: cannot tell the checkpoint layout")
    assert len(err.strip().splitlines()) == 1
