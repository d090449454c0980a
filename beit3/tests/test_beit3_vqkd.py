"""Image-only masked data modelling with VQ-KD visual tokens (``mdm.visual_tokenizer=vqkd``)."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from beit3.engine import Task
from beit3.testing import tiny_vqkd_checkpoint
from beit3.train import load_beit3_config
from beit3.train import main as train_main


@pytest.mark.smoke
def test_pretraining_with_vqkd_targets_matches_a_hand_computed_loss(tmp_path):
    ck = tmp_path / "vqkd_tiny.pth"
    tok = tiny_vqkd_checkpoint(ck, num_codes=16)
    sets = ["mdm.visual_tokenizer=vqkd", f"mdm.tokenizer_checkpoint={ck}", "mdm.num_visual_tokens=16"]
    cfg = load_beit3_config("smoke_pretrain", sets)
    task = Task(cfg)
    torch.manual_seed(0)
    model = task.build_model().eval()
    batch = default_collate([task.train_set[i] for i in range(4)])

    # targets: the tokenizer's code ids of the raw [0, 1] images resized to its 32 px input (grid 4 = 16 / 4)
    raw = task.train_corpus.images[:4]
    with torch.no_grad():
        ids = tok.get_codebook_indices(F.interpolate(raw, size=(32, 32), mode="bicubic", align_corners=False)
                                       .clamp(0, 1)).reshape(4, -1)
    assert torch.equal(batch["codes"], ids) and len(ids.unique()) > 1

    with torch.no_grad():
        _, parts = task.step_fn(model, batch)
        # by hand: encoder with [MASK] at the blockwise-masked patches, MIM head, mean CE over masked patches
        mask = batch["mim_mask"]
        x, _ = model.beit3.forward_features(batch["image"], masked_position=mask)
        logits = x[:, 1:] @ model.mim_head.weight.t() + model.mim_head.bias  # B, N, 16
        logp = logits.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
        hand = -(logp[mask]).sum() / mask.sum()
    assert mask.sum(1).tolist() == [round(0.4 * 16)] * 4
    assert parts["mim"].item() == pytest.approx(hand.item(), rel=1e-6)

    out = tmp_path / "run"
    assert train_main(["--config", "smoke_pretrain", "--set", f"train.out_dir={out}", *[x for s in sets for x in ("--set", s)]]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["mim_loss"] > 0 and torch.isfinite(torch.tensor(res["mim_loss"]))
