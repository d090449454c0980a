"""``python -m maskdistill.convert --input CKPT --output OUT.pth``: a MaskDistill pretraining
checkpoint -> the BEiT v2 pretraining layout that beit2's loaders read (its MMSegmentation
backbone ``BEiTv2ViT``, ``beit2.train`` fine-tuning, unilm's ``run_class_finetuning.py``).

Input: our run folder / ``model.safetensors`` (keys of :class:`MaskDistillForMIM`), or a file
with the student under ``student.`` / ``module.student.`` and the teacher beside it (the layout
of the public re-implementation). Output: ``{"model": state_dict}`` with ``cls_token``,
``mask_token``, ``patch_embed.*``, the shared ``rel_pos_bias`` table (and its index buffer, as the
official modules store it), ``blocks.*`` and ``norm.*``; ``head_distill.*`` and teacher tensors are
dropped (they are listed). beit2's ``BEiTv2ViT`` also reads our files directly (it keeps only the
backbone tensors); converting makes the dropped tensors explicit and the file loadable by unilm.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping, Sequence

import torch

from vlcore.checkpoint import MODEL_FILE, resolve_checkpoint
from vlcore.cli import run_cli
from vlcore.errors import UserError

STUDENT_PREFIXES = ("module.student.", "student.")
NOT_BACKBONE = ("head_distill.", "teacher", "module.teacher", "ema_", "target_norm")


def beit2_pretrain_state_dict(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(BEiT v2 pretraining-layout state dict, dropped keys)."""
    from vlcore.layers.relpos import relative_position_index

    if any(k.startswith(STUDENT_PREFIXES) for k in sd):
        pre = next(p for p in STUDENT_PREFIXES if any(k.startswith(p) for k in sd))
        dropped = [k for k in sd if not k.startswith(pre)]
        sd = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
    else:
        dropped = []
    dropped += [k for k in sd if k.startswith(NOT_BACKBONE)]
    out = {k: v for k, v in sd.items() if not k.startswith(NOT_BACKBONE)}
    need = ("cls_token", "mask_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
    missing = [k for k in need if k not in out]
    if missing:
        raise UserError(f"not a MaskDistill pretraining checkpoint: no {', '.join(missing)}")
    table = out.get("rel_pos_bias.relative_position_bias_table")
    if table is not None:
        side = (int(round((table.shape[0] - 3) ** 0.5)) + 1) // 2
        out["rel_pos_bias.relative_position_index"] = relative_position_index((side, side))
    return out, dropped


def read_maskdistill_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A run folder (its newest step), a ``model.safetensors`` or a ``.pth``."""
    from beit2.convert import read_checkpoint

    p = Path(path)
    if p.is_dir():
        p = resolve_checkpoint(p / "ckpt" if (p / "ckpt").is_dir() else p) / MODEL_FILE
    if not p.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return read_checkpoint(p)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m maskdistill.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="run folder, model.safetensors or .pth")
    p.add_argument("--output", required=True, help="output .pth (BEiT v2 pretraining layout under 'model')")
    args = p.parse_args(argv)
    sd, dropped = beit2_pretrain_state_dict(read_maskdistill_checkpoint(args.input))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, out)
    print(f"{args.input} -> {out}: {len(sd)} tensors; dropped {len(dropped)} ({', '.join(dropped[:4])}"
          f"{', ...' if len(dropped) > 4 else ''})")
    return 0


if __name__ == "__main__":
    run_cli(main)
