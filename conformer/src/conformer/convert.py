"""Official Conformer checkpoints -> ours, and back.

Layouts handled (`detect_layout` tells them apart):

official    `main.py` of pengzhiliang/Conformer: a bare state dict or `{'model', 'model_ema',
            'optimizer', 'lr_scheduler', 'epoch', 'args'}`; keys `conv1.weight`,
            `conv_trans_2.squeeze_block.conv_project.weight`, `trans_1.attn.qkv.weight`,
            `conv_cls_head.weight`, `trans_cls_head.weight`, ... Ours uses the same names, so
            this direction only unwraps the container (and a DDP `module.` prefix).
mmdet       the official MMDetection 2.x detectors (`{'meta', 'state_dict', 'optimizer'}`):
            `backbone.` + the names above without heads and `trans_norm`, plus neck / heads.
            MMDetection 3.x uses the same detector keys, so `--to mmdet` only keeps them.
mmpretrain  mmpretrain's / mmcls's converted weights (`conformer-*-p16_3rdparty_8xb128_in1k_*.pth`):
            `backbone.` / `head.` prefixes and mmcv transformer names
            (`ln1`, `ln2`, `ffn.layers.0.0`, `ffn.layers.1` for `norm1`, `norm2`, `mlp.fc1`, `mlp.fc2`).

    python -m conformer.convert --src Conformer_small_patch16.pth --dst conformer_s16.safetensors
    python -m conformer.convert --src conformer-small-p16_3rdparty_8xb128_in1k_20211206-3065dcf5.pth \
        --dst conformer_s16.safetensors                      # layout detected
    python -m conformer.convert --src conformer_s32.safetensors --dst s32_backbone.pth --to mmdet-backbone

Every conversion into ours is checked by building the model the weights describe (or
`--model NAME`) and loading them strictly; a missing or unexpected key is an error that
names it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch

from vlcore.checkpoint import CheckpointError, load_state_dict_strict, save_weights
from vlcore.cli import run_cli
from vlcore.errors import UserError

Layout = Literal["official", "mmpretrain", "mmdet"]
_HEADS = ("conv_cls_head.", "trans_cls_head.")

# mmcv / mmpretrain transformer names -> ours (= official), inside `trans_1.` and `*.trans_block.`.
_MMPRETRAIN_BLOCK = (
    ("ln1.", "norm1."),
    ("ln2.", "norm2."),
    ("ffn.layers.0.0.", "mlp.fc1."),
    ("ffn.layers.1.", "mlp.fc2."),
)
_BLOCK_PREFIX = re.compile(r"^(trans_1\.|conv_trans_\d+\.trans_block\.)(.*)$")


# --- reading ------------------------------------------------------------------------------------


def _safe_globals() -> list:
    # Classes that released checkpoints pickle beside the tensors: the official `args`
    # (argparse.Namespace) and mmengine's message hub; they hold plain data only.
    import argparse as _argparse

    allowed: list = [_argparse.Namespace]
    try:
        from mmengine.logging import HistoryBuffer, MessageHub

        allowed += [HistoryBuffer, MessageHub]
    except ImportError:  # pragma: no cover - mmengine is part of the stack
        pass
    try:
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed += [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("float64"))]
    except Exception:  # pragma: no cover - numpy layouts differ between versions
        pass
    return allowed


def read_checkpoint(path: str | Path) -> dict:
    """The raw object of a .pth / .pt / .bin (weights-only unpickling) or a .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    ctx = torch.serialization.safe_globals(_safe_globals())
    try:
        with ctx:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        why = m.group(0) if m else first[:200]
        raise CheckpointError(f"{path}: not a readable checkpoint ({why})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    return dict(obj)


def unwrap(obj: Mapping, *, ema: bool = False, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint container (`model`, `model_ema`, `state_dict`, `module`, or bare)."""
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = dict(obj)
    else:
        keys = ("model_ema",) if ema else ("model", "state_dict", "module")
        found = next((k for k in keys if isinstance(obj.get(k), Mapping)), None)
        if found is None:
            have = ", ".join(sorted(map(str, obj))[:8])
            want = "model_ema" if ema else "model / state_dict / module"
            raise CheckpointError(f"{source}: no '{want}' state dict in the checkpoint (keys: {have})")
        sd = {k: v for k, v in obj[found].items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP-wrapped model
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if not sd:
        raise CheckpointError(f"{source}: the state dict is empty")
    return sd


def detect_layout(sd: Mapping[str, torch.Tensor]) -> Layout:
    keys = list(sd)
    if any(k.startswith(("neck.", "rpn_head.", "roi_head.", "bbox_head.")) for k in keys):
        return "mmdet"
    if any(k.startswith("backbone.") for k in keys):
        if any(".ln1." in k or ".ffn.layers." in k for k in keys) or any(k.startswith("head.") for k in keys):
            return "mmpretrain"
        return "mmdet"
    if any(k.startswith("conv_trans_") for k in keys) and "cls_token" in sd:
        return "official"
    raise CheckpointError(
        "not a Conformer checkpoint: expected official keys (cls_token, conv_trans_*), "
        f"mmpretrain (backbone. / head.) or mmdet (backbone. + neck.) keys; first keys: {', '.join(keys[:4])}"
    )


# --- conversions (pure functions on state dicts) --------------------------------------------------


def official_to_ours(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(sd)  # same names by design


def ours_to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(sd)


def mmpretrain_to_ours(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            name = k[len("head."):]
        elif k.startswith("backbone."):
            name = k[len("backbone."):]
            m = _BLOCK_PREFIX.match(name)
            if m:
                rest = m.group(2)
                for theirs, ours in _MMPRETRAIN_BLOCK:
                    if rest.startswith(theirs):
                        rest = ours + rest[len(theirs):]
                        break
                name = m.group(1) + rest
        else:
            raise CheckpointError(f"mmpretrain checkpoint: key '{k}' is neither backbone.* nor head.*")
        out[name] = v
    return out


def ours_to_mmpretrain(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith(_HEADS):
            out["head." + k] = v
            continue
        m = _BLOCK_PREFIX.match(k)
        name = k
        if m:
            rest = m.group(2)
            for theirs, ours in _MMPRETRAIN_BLOCK:
                if rest.startswith(ours):
                    rest = theirs + rest[len(ours):]
                    break
            name = m.group(1) + rest
        out["backbone." + name] = v
    return out


def mmdet_to_ours(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone of a detector checkpoint (no classifier heads, no `trans_norm`)."""
    out = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    if not out:
        raise CheckpointError("detector checkpoint has no backbone.* keys")
    return out


def ours_to_mmdet_backbone(sd: Mapping[str, torch.Tensor], *, prefix: str = "") -> dict[str, torch.Tensor]:
    """Backbone weights for `ConformerDet`: heads and `trans_norm` dropped (the detector uses CNN maps only)."""
    return {prefix + k: v for k, v in sd.items() if not k.startswith(_HEADS + ("trans_norm.",))}


def to_ours(sd: Mapping[str, torch.Tensor], layout: Layout | None = None) -> dict[str, torch.Tensor]:
    layout = layout or detect_layout(sd)
    return {"official": official_to_ours, "mmpretrain": mmpretrain_to_ours, "mmdet": mmdet_to_ours}[layout](sd)


def load_state_dict_any(path: str | Path, *, ema: bool = False, layout: Layout | None = None) -> dict[str, torch.Tensor]:
    """Our state dict from a checkpoint in any supported layout."""
    sd = unwrap(read_checkpoint(path), ema=ema, source=str(path))
    try:
        return to_ours(sd, layout)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


# --- configuration from shapes -------------------------------------------------------------------


def infer_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """Conformer constructor arguments that the shapes in our state dict determine.

    Heads are assumed 64 wide (true of every released configuration); the class count is
    0 when the heads are absent (a detection backbone).
    """
    need = ("cls_token", "trans_patch_conv.weight", "conv_1.conv3.weight", "conv1.weight")
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(f"cannot infer the Conformer configuration: missing {', '.join(missing)}")
    e = sd["cls_token"].shape[-1]
    blocks = [int(m.group(1)) for k in sd if (m := re.match(r"conv_trans_(\d+)\.", k))]
    stem_chs, in_chans, k = sd["conv1.weight"].shape[:3]
    cfg = dict(
        embed_dim=e,
        num_heads=max(1, e // 64),
        depth=max(blocks) if blocks else 0,
        patch_size=4 * sd["trans_patch_conv.weight"].shape[-1],
        base_channel=64,
        channel_ratio=sd["conv_1.conv3.weight"].shape[0] / 64,
        qkv_bias="trans_1.attn.qkv.bias" in sd,
        num_classes=sd["conv_cls_head.weight"].shape[0] if "conv_cls_head.weight" in sd else 0,
        in_chans=in_chans,
        stem_chs=stem_chs,
        stem_kernel=k,
    )
    if cfg["channel_ratio"] == int(cfg["channel_ratio"]):
        cfg["channel_ratio"] = int(cfg["channel_ratio"])
    return cfg


def build_and_load(sd: Mapping[str, torch.Tensor], *, model_name: str | None = None, source: str = "state dict",
                   **overrides):
    """A Conformer (registered `model_name`, or inferred from the shapes + `overrides`) holding `sd`, loaded strictly.

    The head count cannot be read from shapes: pass `num_heads` when the heads are not 64 wide.
    """
    from conformer.models import REGISTRY, Conformer

    sd = dict(sd)
    detection = "conv_cls_head.weight" not in sd
    if model_name:
        kwargs = {"num_classes": sd["conv_cls_head.weight"].shape[0]} if not detection else {"num_classes": 0}
        model = REGISTRY.build(model_name, **kwargs)
    else:
        model = Conformer(**{**infer_config(sd), **overrides})
    if detection:
        # A detection backbone: no heads and no trans_norm in the file.
        own = model.state_dict()
        extra = [k for k in own if k.startswith("trans_norm.") and k not in sd]
        for k in extra:
            sd[k] = own[k]
    load_state_dict_strict(model, sd, source=source)
    return model


# --- command line --------------------------------------------------------------------------------


def _save(sd: Mapping[str, torch.Tensor], dst: Path, container: str | None) -> None:
    if dst.suffix == ".safetensors":
        if container:
            raise UserError("--container applies to .pth outputs, not .safetensors")
        save_weights(sd, dst)
        return
    from vlcore.checkpoint import atomic_save

    atomic_save({container: dict(sd)} if container else dict(sd), dst)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformer.convert", description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="checkpoint to convert (.pth / .pt / .bin / .safetensors)")
    p.add_argument("--dst", required=True, help="output file; .safetensors (ours) or .pth")
    p.add_argument("--from", dest="src_layout", choices=["auto", "official", "mmpretrain", "mmdet"], default="auto")
    p.add_argument("--to", dest="dst_layout", default="ours",
                   choices=["ours", "official", "mmpretrain", "mmdet-backbone"],
                   help="ours / official: the same names; mmpretrain: backbone./head. names; "
                        "mmdet-backbone: a plain state dict for ConformerDet(init_cfg=Pretrained)")
    p.add_argument("--ema", action="store_true", help="take the 'model_ema' weights of an official training checkpoint")
    p.add_argument("--model", default=None, help="registered configuration to check against (default: from shapes)")
    p.add_argument("--num-heads", type=int, default=None,
                   help="attention heads when not registered by --model and not 64 wide (shapes do not tell)")
    p.add_argument("--container", default=None,
                   help="wrap a .pth output as {CONTAINER: state_dict}, e.g. 'model' as main.py writes")
    args = p.parse_args(argv)

    src, dst = Path(args.src), Path(args.dst)
    layout = None if args.src_layout == "auto" else args.src_layout
    raw = unwrap(read_checkpoint(src), ema=args.ema, source=str(src))
    try:
        found = layout or detect_layout(raw)
    except CheckpointError as e:
        raise CheckpointError(f"{src}: {e}") from None
    sd = to_ours(raw, found)
    extra = {"num_heads": args.num_heads} if args.num_heads else {}
    model = build_and_load(sd, model_name=args.model, source=str(src), **extra)
    n = sum(p.numel() for p in model.parameters())
    out = {
        "ours": sd, "official": ours_to_official(sd), "mmpretrain": ours_to_mmpretrain(sd),
        "mmdet-backbone": ours_to_mmdet_backbone(sd),
    }[args.dst_layout]
    dst.parent.mkdir(parents=True, exist_ok=True)
    _save(out, dst, args.container)
    print(f"{src} ({found} layout, {len(raw)} tensors, model {n / 1e6:.2f} M parameters) -> {dst} "
          f"({args.dst_layout}, {len(out)} tensors)")
    return 0


if __name__ == "__main__":
    run_cli(main)
