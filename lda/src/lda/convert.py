"""Official LDA checkpoints (and torchvision ResNet weights) -> this package's `LDANet`.

The official training script saves `torch.save({'state_dict', 'epoch', 'best_result', 'best_epoch',
'scheduler', 'optimizer'})` from a `DataParallel` model, so keys read
`module.backbone.layer1.0.conv2.weight`, `module.classifier.0.weight` (g_u),
`module.classifier.1.weight` (g_b), `module.neck.layer_1.weight`. Backbone names
equal torchvision's (and timm's) ResNet / ResNeXt names and the names of our CIFAR
ResNet-32, so only the heads are renamed:

    module.backbone.*        -> backbone.*
    module.classifier.0.*    -> head_u.*   (unbalanced head, training only)
    module.classifier.1.*    -> head.*     (balanced head, the prediction)
    module.neck.layer_{1,2}.* -> neck.layer_{1,2}.*

The file is read with `torch.load(weights_only=True)`; its `best_result` is a NumPy
scalar, so the few NumPy types that encode one are allowed, and nothing else.
No official checkpoint was published with the paper; the converter is tested on
checkpoints written in the official layout.

    python -m lda.convert --src best_model.pth --model lda_resnext50_32x4d_imagenet_lt --out lda_in1k_lt.safetensors
    python -m lda.convert --src resnet152-b121ed2d.pth --torchvision --model lda_resnet152_places_lt --out r152.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vlcore.checkpoint import CheckpointError, load_state_dict_strict, load_weights, save_weights
from vlcore.cli import run_cli
from vlcore.errors import UserError

_HEADS = {"classifier.0.": "head_u.", "classifier.1.": "head.", "neck.": "neck.", "backbone.": "backbone."}


def _numpy_scalar_globals() -> list:
    # What pickling a NumPy float64 scalar references: the scalar reconstructor and its dtype.
    out = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64))]
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return [scalar, *out]


def read_official(path: str | Path) -> dict:
    """The official checkpoint as plain data (weights-only load, NumPy scalars allowed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors read the same to the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot read as a weights-only checkpoint ({first[:160]})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    return dict(obj)


def official_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state_dict.items():
        key = k[len("module."):] if k.startswith("module.") else k
        for old, new in _HEADS.items():
            if key.startswith(old):
                out[new + key[len(old):]] = v
                break
        else:
            raise CheckpointError(f"unexpected key '{k}' in an official LDA checkpoint "
                                  "(expected backbone.*, classifier.{0,1}.*, neck.*)")
    return out


def ours_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse mapping (with the DataParallel `module.` prefix), for tests and export."""
    inverse = {v: k for k, v in _HEADS.items()}
    out = {}
    for k, v in state_dict.items():
        for new, old in inverse.items():
            if k.startswith(new):
                out["module." + old + k[len(new):]] = v
                break
    return out


def torchvision_to_backbone(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision / timm ResNet(-Xt) ImageNet weights -> `backbone.*` (the 1000-class `fc` is dropped)."""
    return {f"backbone.{k}": v for k, v in state_dict.items() if not k.startswith("fc.")}


def load_official_into(model: nn.Module, path: str | Path) -> dict:
    """Load an official checkpoint into an `LDANet`; returns the checkpoint's metadata (epoch, best_result...)."""
    ck = read_official(path)
    sd = ck.get("state_dict", ck)
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors inside")
    ours = official_to_ours(sd)
    if getattr(model, "head_u", None) is None:
        ours = {k: v for k, v in ours.items() if not k.startswith("head_u.")}
    if getattr(model, "neck", None) is None:
        ours = {k: v for k, v in ours.items() if not k.startswith("neck.")}
    load_state_dict_strict(model, ours, source=str(path))
    return {k: v for k, v in ck.items() if k != "state_dict" and k not in ("optimizer", "scheduler")}


def load_into(model: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Weights for `model` from our safetensors / checkpoint folder or an official file."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix == ".safetensors":
        sd = load_weights(path)
    else:
        ck = read_official(path)
        sd = ck.get("state_dict", ck)
        keys = list(sd)
        sd = official_to_ours(sd) if any(k.startswith(("module.", "classifier.")) for k in keys) else (
            torchvision_to_backbone(sd) if "conv1.weight" in sd else dict(sd))
    if strict:
        load_state_dict_strict(model, sd, source=str(path))
        return
    own = model.state_dict()
    bad = [k for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch for {bad[:3]}")
    missing, _ = model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    if len(missing) == len(own):
        raise CheckpointError(f"{path}: no parameter of {type(model).__name__} found in the file")


def main(argv: Sequence[str] | None = None) -> int:
    from lda.models import REGISTRY

    ap = argparse.ArgumentParser(prog="python -m lda.convert", description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="official best_model.pth / latest_model_checkpoint.pth, or torchvision weights")
    ap.add_argument("--model", required=True, help=f"a configuration of lda.models ({', '.join(REGISTRY.names())})")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--torchvision", action="store_true", help="src holds ImageNet ResNet weights for the backbone only")
    ap.add_argument("--deploy", action="store_true", help="keep only backbone + balanced head (what inference uses)")
    args = ap.parse_args(argv)
    if args.model not in REGISTRY:
        raise UserError(f"unknown model '{args.model}'; known: {', '.join(REGISTRY.names())}")
    model = REGISTRY.build(args.model)
    if args.torchvision:
        sd = read_official(args.src)
        sd = torchvision_to_backbone(sd.get("state_dict", sd))
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected or any(k.startswith("backbone.") for k in missing):
            raise CheckpointError(f"{args.src}: does not fit {args.model}'s backbone "
                                  f"({len(unexpected)} unexpected, {sum(k.startswith('backbone.') for k in missing)} missing)")
        meta = {}
    else:
        if getattr(model, "neck", None) is not None:
            ck_keys = official_to_ours(read_official(args.src).get("state_dict", {}))
            if not any(k.startswith("neck.") for k in ck_keys):
                model.neck = None  # trained with the neck disabled (Places-LT, CIFAR-LT configs)
        meta = load_official_into(model, args.src)
    if args.deploy:
        model.deploy()
    save_weights(model.state_dict(), args.out, metadata={"model": args.model, "source": Path(args.src).name})
    print(f"wrote {args.out}: {sum(v.numel() for v in model.state_dict().values()):,} values"
          + (f" (official epoch {meta.get('epoch')}, best {float(meta['best_result']):.4f})" if "best_result" in meta else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
