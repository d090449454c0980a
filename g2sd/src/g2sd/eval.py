"""Evaluate a checkpoint: ``python -m g2sd.eval --config PRESET --checkpoint CKPT [--set k=v ...]``.

* ``finetune`` / ``sd`` presets: top-1 accuracy (%) of the classifier on the evaluation
  split (a distillation-token student averages its two heads);
* ``mae_pretrain``: MAE loss on the evaluation split (fixed masks, seed 0);
* ``gd``: generic-distillation loss against ``teacher_checkpoint`` (fixed masks, seed 0).

CKPT is one of our run folders' ``model.safetensors``, a step folder, or an official
``.pth`` (MAE / G2SD layouts, converted on the fly).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from vlcore.cli import run_cli
from vlcore.config import add_config_args
from vlcore.errors import UserError

from g2sd.train import load_g2sd_config


def evaluate_checkpoint(cfg, checkpoint: str, *, resize_pos_embed: bool = False) -> dict[str, float]:
    from vlcore.models.mae import load_mae_checkpoint

    from g2sd.convert import read_any_state_dict
    from g2sd.data import build_eval_set
    from g2sd.engine.losses import generic_distillation_loss
    from g2sd.engine.stages import (
        build_mae_model,
        build_student_mae,
        build_vit,
        load_classifier,
        resolve_weights,
        top1,
    )
    from g2sd.models import teacher_features

    weights = resolve_weights(checkpoint)
    sd = read_any_state_dict(weights)
    if cfg.stage in ("finetune", "sd"):
        model = build_vit(cfg.model, cfg.data.num_classes, distilled=cfg.stage == "sd")
        load_classifier(model, sd, resize_pos_embed=resize_pos_embed, name=str(weights))
        return {"top1": top1(model, cfg)}
    loader = DataLoader(build_eval_set(cfg), batch_size=cfg.eval_batch_size, shuffle=False)
    g = torch.Generator().manual_seed(0)
    total, n = 0.0, 0
    if cfg.stage == "mae_pretrain":
        model = build_mae_model(cfg.model, norm_pix_loss=cfg.mae.norm_pix_loss, mask_ratio=cfg.mae.mask_ratio)
        load_mae_checkpoint(model, sd)
        model.eval()
        with torch.no_grad():
            for x, _ in loader:
                noise = torch.rand(x.shape[0], model.patch_embed.num_patches, generator=g)
                total += model(x, noise=noise)[0].item() * x.shape[0]
                n += x.shape[0]
        return {"mae_loss": total / n}
    if not cfg.teacher_checkpoint:
        raise UserError("evaluating a gd checkpoint needs teacher_checkpoint (--set teacher_checkpoint=PATH)")
    student = build_student_mae(cfg)
    load_mae_checkpoint(student, sd)
    teacher = build_mae_model(cfg.teacher, mask_ratio=cfg.mae.mask_ratio)
    load_mae_checkpoint(teacher, read_any_state_dict(resolve_weights(cfg.teacher_checkpoint)), require_decoder=True)
    student.eval(), teacher.eval()
    with torch.no_grad():
        for x, _ in loader:
            noise = torch.rand(x.shape[0], student.patch_embed.num_patches, generator=g)
            t = teacher_features(teacher, x, noise, layer_index=cfg.gd.layer_index, mask_ratio=cfg.mae.mask_ratio)
            s = student(x, noise)
            total += generic_distillation_loss(s["decoder"], t["decoder"], mask=s["mask"],
                                               supervise_all=cfg.gd.supervise_all, beta=cfg.gd.beta).item() * x.shape[0]
            n += x.shape[0]
    return {"gd_loss": total / n}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m g2sd.eval", description=__doc__.split("\n\n")[0])
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="a run folder, a step folder, model.safetensors or an official .pth")
    p.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--resize-pos-embed", action="store_true",
                   help="resample a classifier's position table to the config's image size (refused otherwise)")
    args = p.parse_args(argv)
    cfg = load_g2sd_config(args.config, args.set)
    metrics = evaluate_checkpoint(cfg, args.checkpoint, resize_pos_embed=args.resize_pos_embed)
    print(json.dumps(metrics))
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
