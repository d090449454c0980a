"""Weights into an imTED detector: an MAE checkpoint (encoder + decoder), or an official imTED checkpoint.

    python -m imted.convert mae   SRC.pth OUT.safetensors --config imted/configs/mmdet/<cfg>.py
    python -m imted.convert imted SRC.pth OUT.safetensors --config imted/configs/mmdet/<cfg>.py

MAE -> imTED: ``patch_embed / blocks / cls_token / pos_embed`` -> ``backbone.*``; the encoder's final
``norm`` and ``decoder_embed / decoder_blocks / decoder_pos_embed`` -> ``roi_head.bbox_head.*``;
``mask_token``, ``decoder_norm``, ``decoder_pred`` are dropped. Official imTED checkpoints (mmdet 2.x
``{'meta', 'state_dict', 'optimizer'}``) already use our names; they are read without running code and
checked key by key. Both write safetensors loadable with ``load_from`` / ``vlcore.checkpoint.load_weights``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from vlcore.checkpoint import CheckpointMismatchError

ENCODER_PREFIXES = ("patch_embed.", "blocks.", "cls_token", "pos_embed")
DECODER_PREFIXES = ("norm.", "decoder_embed.", "decoder_blocks.", "decoder_pos_embed")
DROPPED_PREFIXES = ("mask_token", "decoder_norm.", "decoder_pred.", "fc_norm.", "head.")


def mae_to_imted(state_dict: Mapping[str, torch.Tensor], *, load_decoder: bool = True) -> dict[str, torch.Tensor]:
    """Official MAE keys -> detector keys (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if k.startswith(ENCODER_PREFIXES):
            out[f"backbone.{k}"] = v
        elif k.startswith(DECODER_PREFIXES):
            if load_decoder:
                out[f"roi_head.bbox_head.{k}"] = v
        elif not k.startswith(DROPPED_PREFIXES):
            raise CheckpointMismatchError(f"unexpected MAE key '{k}'", unexpected=[k])
    return out


def _read(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return dict(source)
    from vlcore.models.mae import read_official_state_dict

    return read_official_state_dict(source)


def _resize_pos_embed(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    g = int(round((target.shape[1] - 1) ** 0.5))
    return resample_abs_pos_embed(v, new_size=[g, g], num_prefix_tokens=1, interpolation="bicubic")


def load_mae_into_detector(
    model: nn.Module, source: str | Path | Mapping[str, torch.Tensor], *, load_decoder: bool = True
) -> dict[str, list[str]]:
    """Load an MAE checkpoint into ``model`` (an ``ImTED``); returns ``{'loaded', 'random'}`` parameter names.

    Every encoder key must be present and fit; with ``load_decoder`` every decoder key too, so an
    encoder-only file (``mae_pretrain_vit_base.pth``) fails instead of leaving a random head.
    """
    sd = mae_to_imted(_read(source), load_decoder=load_decoder)
    own = model.state_dict()
    head = "roi_head.bbox_head."
    need = [k for k in own if k.startswith("backbone.") and k[len("backbone."):].startswith(ENCODER_PREFIXES)]
    if load_decoder:
        need += [k for k in own if k.startswith(head) and k[len(head):].startswith(DECODER_PREFIXES)]
    missing = [k for k in need if k not in sd]
    unexpected = [k for k in sd if k not in own]
    for k in ("backbone.pos_embed",):
        if k in sd and k in own and sd[k].shape != own[k].shape:
            sd[k] = _resize_pos_embed(sd[k], own[k])
    mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        hint = ""
        if load_decoder and any(k.startswith(head) for k in missing):
            hint = " (no decoder in the file: use an MAE checkpoint that holds the decoder, e.g. *_full.pth)"
        raise CheckpointMismatchError(
            f"MAE checkpoint does not fit the detector: missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"shape mismatches {mismatched[:4]}{hint}", missing=missing, unexpected=unexpected, mismatched=mismatched,
        )
    model.load_state_dict(sd, strict=False)
    params = [n for n, _ in model.named_parameters()]
    return {"loaded": sorted(sd), "random": [n for n in params if n not in sd]}


def convert_official_imted(
    source: str | Path | Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """An official imTED (mmdet 2.x) checkpoint -> a state dict that loads strictly into ``model``."""
    sd = _read(source)
    own = model.state_dict()
    # mmdet 3.x tracks BatchNorm's num_batches_tracked; mmdet 2.x files from older mmcv may lack it.
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v.clone()
    if "backbone.pos_embed" in sd and sd["backbone.pos_embed"].shape != own["backbone.pos_embed"].shape:
        sd["backbone.pos_embed"] = _resize_pos_embed(sd["backbone.pos_embed"], own["backbone.pos_embed"])
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            f"imTED checkpoint does not fit the config: missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"shape mismatches {mismatched[:4]}", missing=missing, unexpected=unexpected, mismatched=mismatched,
        )
    return {k: sd[k] for k in own}


def build_detector(config: str | Path, **overrides) -> nn.Module:
    """The detector of an mmdet config file (weights not initialised); ``overrides`` merge into ``model``."""
    from mmengine.config import Config
    from vlcore.mmrun import resolve_config

    import imted.mmdet  # noqa: F401  registers the modules
    from imted.models import CONFIG_DIR
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    path = resolve_config(config, CONFIG_DIR)
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(path))
    if overrides:
        cfg.merge_from_dict({f"model.{k}": v for k, v in overrides.items()})
    return MODELS.build(cfg.model)


def main(argv: Sequence[str] | None = None) -> int:
    from vlcore.checkpoint import save_weights

    p = argparse.ArgumentParser(prog="python -m imted.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["mae", "imted"], help="mae: MAE pre-training checkpoint; imted: official imTED")
    p.add_argument("src")
    p.add_argument("out", help="output .safetensors")
    p.add_argument("--config", required=True, help="mmdet config of the detector the weights are for")
    args = p.parse_args(argv)
    model = build_detector(args.config)
    try:
        if args.kind == "mae":
            report = load_mae_into_detector(model, args.src)
            sd = model.state_dict()
        else:
            sd = convert_official_imted(args.src, model)
    except CheckpointMismatchError as e:
        # The message names the keys; the one line on stderr must also name the file.
        raise CheckpointMismatchError(f"{args.src}: {e}", missing=e.missing, unexpected=e.unexpected,
                                      mismatched=e.mismatched) from None
    if args.kind == "mae":
        print(f"loaded {len(report['loaded'])} tensors; {len(report['random'])} parameters stay randomly initialised")
    save_weights(sd, args.out)
    print(f"wrote {args.out} ({len(sd)} tensors)")
    return 0


if __name__ == "__main__":
    from vlcore.cli import run_cli

    run_cli(main)
