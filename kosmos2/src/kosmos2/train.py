"""`python -m kosmos2.train --config <preset> [--set key=value ...]`: Kosmos-2 pre-training and
instruction tuning on the vlcore training engine (AdamW, warm-up + linear decay, clipping,
bf16, checkpoints, exact resume with ``--set train.resume=auto``; multi-GPU through
``accelerate launch`` / ``torchrun``).

    python -m kosmos2.train --config smoke_pretrain           # two steps, tiny model, CPU
    python -m kosmos2.train --config pretrain_kosmos2_patch14_224 --set model.init_checkpoint=...
    python -m kosmos2.train --config instruct_kosmos2_patch14_224 --set model.init_checkpoint=...

Loss: next-token cross-entropy from ``</image>`` on (the ``<s>``, ``<image>`` and image slots
are not predicted; phrase tags, ``<grounding>``, location tokens and ``</s>`` are; card §6.1).
What is frozen: the vision tower when ``model.freeze_vision`` (the released code's behaviour).
Data: the generated grounded shapes corpus (:mod:`kosmos2.mini`), the only one available
offline; a fraction ``1 - data.grounded_prob`` of captions is fed without grounding.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vlcore.cli import run_cli
from vlcore.config import add_config_args, load_config
from vlcore.errors import UserError
from vlcore.train import Trainer, seed_everything

from kosmos2.config import Config, resolve_config_path
from kosmos2.mini import Vocab, caption_tokens, image_prefix, init_location_embeddings, make_scene
from kosmos2.models import CONFIGS, REGISTRY
from kosmos2.models.kosmos2 import Kosmos2Model

__all__ = ["ShapesCaptions", "build_model_from_config", "collate", "step_fn", "main"]


class ShapesCaptions(Dataset):
    """Generated grounded captions; sample ``i`` is a pure function of (seed, i)."""

    def __init__(self, *, num_samples: int, vocab: Vocab, slots: int, img_size: int, grounded_prob: float,
                 min_objects: int, max_objects: int, seed: int = 0) -> None:
        self.n, self.vocab, self.slots, self.img_size = num_samples, vocab, slots, img_size
        self.p, self.lo, self.hi, self.seed = grounded_prob, min_objects, max_objects, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        img, objs = make_scene(rng, int(rng.integers(self.lo, self.hi + 1)))
        cap, _ = caption_tokens(self.vocab, objs, rng)
        if rng.random() >= self.p:  # plain caption: drop <grounding>, tags and boxes
            drop = {self.vocab.id[t] for t in ("<grounding>", "<phrase>", "</phrase>", "<object>", "</object>")}
            cap = [t for t in cap if t not in drop and not self.vocab.is_loc(t)]
        px = torch.from_numpy(img)
        if self.img_size != px.shape[-1]:
            px = F.interpolate(px[None], size=(self.img_size, self.img_size), mode="nearest")[0]
        return {"pixel_values": px, "input_ids": image_prefix(self.vocab, self.slots) + cap, "slots": self.slots}


def collate(items: list[dict], pad_id: int = 1) -> dict:
    T = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), T), pad_id, dtype=torch.long)
    for i, it in enumerate(items):
        ids[i, : len(it["input_ids"])] = torch.tensor(it["input_ids"])
    slots = items[0]["slots"]
    mask = torch.zeros_like(ids)
    mask[:, 2 : 2 + slots] = 1
    labels = ids[:, 1:].clone()
    labels[:, : 1 + slots] = -100
    labels[labels == pad_id] = -100
    return {"pixel_values": torch.stack([it["pixel_values"] for it in items]), "input_ids": ids,
            "image_embeds_position_mask": mask, "labels": labels}


def step_fn(model: Kosmos2Model, batch: dict):
    ids = batch["input_ids"]
    logits = model(batch["pixel_values"], ids[:, :-1], batch["image_embeds_position_mask"][:, :-1])
    labels = batch["labels"]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    with torch.no_grad():
        keep = labels != -100
        acc = (logits.argmax(-1)[keep] == labels[keep]).float().mean()
    return loss, {"token_acc": acc}


def build_model_from_config(cfg: Config, vocab: Vocab) -> Kosmos2Model:
    m = cfg.model
    if m.name not in REGISTRY:
        REGISTRY.get(m.name)  # raises with the known names
    names = {f.name for f in fields(CONFIGS[m.name])}
    over = {f.name: getattr(m, f.name) for f in fields(m) if f.name in names and getattr(m, f.name) is not None}
    mcfg = replace(CONFIGS[m.name], **over)
    if len(vocab) > mcfg.vocab_size:
        mcfg = replace(mcfg, vocab_size=len(vocab))
    model = Kosmos2Model(mcfg)
    if m.init_checkpoint:
        path = Path(m.init_checkpoint)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
            if missing or unexpected:
                raise UserError(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        else:
            from kosmos2.convert import load_official_checkpoint

            model = load_official_checkpoint(path, mcfg)
    elif m.loc_init == "sincos":
        init_location_embeddings(model, vocab)
    if m.freeze_vision:
        model.vision.requires_grad_(False)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    p = add_config_args(argparse.ArgumentParser(prog="python -m kosmos2.train", description=__doc__.split("\n\n")[0]))
    args = p.parse_args(argv)
    cfg = load_config(Config, resolve_config_path(args.config), args.set)
    seed_everything(cfg.train.seed)
    vocab = Vocab(cfg.data.num_bins)
    model = build_model_from_config(cfg, vocab)
    data = ShapesCaptions(
        num_samples=cfg.data.num_samples, vocab=vocab, slots=model.num_image_tokens, img_size=model.cfg.img_size,
        grounded_prob=cfg.data.grounded_prob, min_objects=cfg.data.min_objects, max_objects=cfg.data.max_objects,
        seed=cfg.train.seed,
    )
    trainer = Trainer(model, step_fn, data, cfg.train, run_config=cfg, collate_fn=collate)
    summary = trainer.fit()
    print(f"{cfg.stage}: {summary.final_step}/{summary.total_steps} steps, last loss {summary.last_loss:.4f}, "
          f"weights {summary.weights_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
