"""Official G2SD / MAE checkpoints -> this repository's models: ``python -m g2sd.convert``.

    python -m g2sd.convert gd   SRC DST [--model g2sd_mae_vit_small_patch16_dec256d4b]  # GD student (MAE + predictors)
    python -m g2sd.convert cls  SRC DST [--model g2sd_vit_small_patch16_224_dist]       # SD classifier / encoder init
    python -m g2sd.convert mae  SRC DST [--model mae_vit_base_patch16_dec512d8b]        # MAE teacher (needs the decoder)
    python -m g2sd.convert det  SRC DST      # detectron2 ViTDet / G2SD detection -> the mmdet plug-in's names
    python -m g2sd.convert seg  SRC DST      # mmseg 0.x G2SD segmentation (student.*) -> mmseg 1.x names
    python -m g2sd.convert seg-init SRC DST.pth   # GD / MAE encoder -> mmseg MAE backbone init (torch file)

DST is written as safetensors (``seg-init``: a plain tensor dict for mmseg's ``init_cfg``). Checkpoints are read without running code:
``torch.load(weights_only=True)`` with ``argparse.Namespace`` (stored by the official
training scripts) and the few mmengine / numpy classes of mmengine checkpoints allowed;
detectron2 ``.pkl`` files ({'model': {name: ndarray}}) go through an unpickler that
accepts numpy arrays and nothing else.

Layouts (see the README for the key examples):

* GD student / MAE: official MAE names, identical to ours (``blocks.i``, ``decoder_blocks.i``,
  ``decoderfeature_pred.fc1`` ...); the MAE teacher must contain its decoder.
* SD classification: timm names plus ``dist_token`` and ``head_dist``.
* detection: ``backbone.net.*`` -> ``backbone.*``, ``backbone.simfp_*`` -> ``neck.simfp_*``,
  ``proposal_generator.rpn_head.*`` -> ``rpn_head.*``, ``roi_heads.box_head.conv{k}`` ->
  ``roi_head.bbox_head.shared_convs.{k-1}``, ``roi_heads.mask_head.mask_fcn{k}`` ->
  ``roi_head.mask_head.convs.{k-1}`` ...; ``pixel_mean`` / ``pixel_std`` are dropped.
* segmentation: BEiT-style backbone names -> mmseg 1.x ``MAE`` (``blocks`` -> ``layers``,
  ``norm`` -> ``ln``, ``mlp.fc1`` -> ``ffn.layers.0.0``, ``fpn1`` -> ``neck.upsample_4x`` ...);
  the teacher, the loss modules and the recorded logits are dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vlcore.checkpoint import CheckpointError, load_state_dict_strict, save_weights
from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.models.mae import mae_state_dict_to_timm

__all__ = [
    "detectron2_to_mmdet",
    "gd_to_classifier",
    "load_detector_checkpoint",
    "load_segmentor_checkpoint",
    "mae_encoder_to_mmseg",
    "mae_encoder_to_vitdet",
    "mmdet_to_detectron2",
    "mmseg0_to_mmseg1",
    "read_any_state_dict",
]


# --- reading ------------------------------------------------------------------------


def _inert_getattr(obj, name):  # noqa: ARG001 - stands in for builtins.getattr inside pickles
    """mmengine's HistoryBuffer pickles its statistics methods as ``getattr(cls, name)``; those
    look-ups resolve to None here, so a checkpoint can reach no attribute or function."""
    return None


@contextlib.contextmanager
def _history_buffer_table_kept():
    """mmengine's ``HistoryBuffer.__setstate__`` writes the pickled statistics methods (None here, as
    ``getattr`` is inert) into a dict that every HistoryBuffer of the process shares; left that way, any
    later mmengine run in the process fails when it logs. Put the table back after reading."""
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:  # pragma: no cover - mmengine is a dependency
        yield
        return
    table = HistoryBuffer._statistics_methods
    saved = dict(table)
    try:
        yield
    finally:
        table.clear()
        table.update(saved)


def _safe_classes() -> list:
    classes: list = [argparse.Namespace, (_inert_getattr, "builtins.getattr")]
    try:  # mmengine checkpoints keep a message hub (HistoryBuffer of numpy arrays) and configs in `meta`
        from mmengine.config import ConfigDict
        from mmengine.logging import HistoryBuffer

        classes += [HistoryBuffer, ConfigDict]
    except ImportError:  # pragma: no cover - mmengine is a dependency
        pass
    core = getattr(np, "_core", None) or np.core
    classes += [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    classes += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool", "uint8")]
    return classes


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: no state dict found")
    out = {}
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: entry '{k}' is a {type(v).__name__}, not a tensor")
        out[k] = v
    return out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Accepts plain containers and numpy arrays; refuses every other global (no code runs)."""

    def find_class(self, module: str, name: str):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
        }
        if (module, name) in allowed:
            return getattr(__import__(module, fromlist=[name]), name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def read_detectron2_pickle(path: str | Path) -> dict[str, torch.Tensor]:
    """A detectron2 ``.pkl`` ({'model': {name: ndarray}, '__author__': ...}) as tensors."""
    path = Path(path)
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a detectron2 weights pickle ({e})") from None
    return _unwrap(obj, path)


def read_any_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights of a .safetensors / .pth / .pt / .bin (torch, weights only) or a detectron2 .pkl file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from vlcore.checkpoint import load_weights

        return load_weights(path)
    if path.suffix == ".pkl":
        return read_detectron2_pickle(path)
    try:
        with torch.serialization.safe_globals(_safe_classes()), _history_buffer_table_kept():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:240]
        raise CheckpointError(f"{path}: not readable as a weights-only checkpoint ({msg})") from None
    return _unwrap(obj, path)


def _sd(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return read_any_state_dict(source) if isinstance(source, (str, Path)) else dict(source)


# --- classification / MAE -------------------------------------------------------------


def gd_to_classifier(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GD student (or MAE) -> encoder keys of a timm / distillation-token ViT (head left out)."""
    return mae_state_dict_to_timm(sd)


def mae_encoder_to_vitdet(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MAE / GD / timm encoder -> ``G2SDViTDet`` keys: no class token, final norm, decoder or heads.

    Accepts an encoder already in ViTDet layout (``backbone.net.*`` or ``backbone.*``) as well.
    """
    drop = ("cls_token", "norm.", "fc_norm.", "head", "decoder_", "mask_token", "decoderfeature_pred.",
            "encoderfeature_pred.", "dist_token")
    out = {}
    for k, v in sd.items():
        for prefix in ("backbone.net.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith(drop) or not k.startswith(("patch_embed.", "pos_embed", "blocks.")):
            continue
        out[k] = v
    return out


# --- detection ------------------------------------------------------------------------

_D2_TO_MMDET: list[tuple[str, str]] = [
    (r"^backbone\.net\.", "backbone."),
    (r"^backbone\.(simfp_\d+)\.", r"neck.\1."),
    (r"^proposal_generator\.rpn_head\.conv\.conv(\d+)\.", r"rpn_head.rpn_conv.\1.conv."),
    (r"^proposal_generator\.rpn_head\.conv\.", "rpn_head.rpn_conv.0.conv."),  # a single RPN conv
    (r"^proposal_generator\.rpn_head\.objectness_logits\.", "rpn_head.rpn_cls."),
    (r"^proposal_generator\.rpn_head\.anchor_deltas\.", "rpn_head.rpn_reg."),
    (r"^roi_heads\.box_head\.conv(\d+)\.norm\.", "roi_head.bbox_head.shared_convs.{k}.ln."),
    (r"^roi_heads\.box_head\.conv(\d+)\.", "roi_head.bbox_head.shared_convs.{k}.conv."),
    (r"^roi_heads\.box_head\.fc(\d+)\.", "roi_head.bbox_head.shared_fcs.{k}."),
    (r"^roi_heads\.box_predictor\.cls_score\.", "roi_head.bbox_head.fc_cls."),
    (r"^roi_heads\.box_predictor\.bbox_pred\.", "roi_head.bbox_head.fc_reg."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.norm\.", "roi_head.mask_head.convs.{k}.ln."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.", "roi_head.mask_head.convs.{k}.conv."),
    (r"^roi_heads\.mask_head\.deconv\.", "roi_head.mask_head.upsample."),
    (r"^roi_heads\.mask_head\.predictor\.", "roi_head.mask_head.conv_logits."),
    (r"^stu_adapter\.", "stu_adapter."),
]


def _rename(key: str, rules: Sequence[tuple[str, str]]) -> str | None:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            if "{k}" in repl:  # detectron2 counts convs / fcs from 1, mmdet modules from 0
                return repl.replace("{k}", str(int(m.group(1)) - 1)) + key[m.end():]
            return re.sub(pattern, repl, key, count=1)
    return None


def detectron2_to_mmdet(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """detectron2 ViTDet Mask R-CNN (optionally with the G2SD ``stu_adapter``) -> plug-in names."""
    out, unknown = {}, []
    for k, v in sd.items():
        if k in ("pixel_mean", "pixel_std"):
            continue
        new = _rename(k, _D2_TO_MMDET)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise UserError(f"detectron2 keys without a counterpart: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return out


_MMDET_TO_D2: list[tuple[str, str]] = [
    (r"^backbone\.", "backbone.net."),
    (r"^neck\.(simfp_\d+)\.", r"backbone.\1."),
    (r"^rpn_head\.rpn_conv\.(\d+)\.conv\.", r"proposal_generator.rpn_head.conv.conv\1."),
    (r"^rpn_head\.rpn_cls\.", "proposal_generator.rpn_head.objectness_logits."),
    (r"^rpn_head\.rpn_reg\.", "proposal_generator.rpn_head.anchor_deltas."),
    (r"^roi_head\.bbox_head\.shared_convs\.(\d+)\.ln\.", "roi_heads.box_head.conv{k}.norm."),
    (r"^roi_head\.bbox_head\.shared_convs\.(\d+)\.conv\.", "roi_heads.box_head.conv{k}."),
    (r"^roi_head\.bbox_head\.shared_fcs\.(\d+)\.", "roi_heads.box_head.fc{k}."),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.ln\.", "roi_heads.mask_head.mask_fcn{k}.norm."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", "roi_heads.mask_head.mask_fcn{k}."),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_head.deconv."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_head.predictor."),
    (r"^stu_adapter\.", "stu_adapter."),
]


def mmdet_to_detectron2(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`detectron2_to_mmdet` (teacher keys dropped): export to detectron2 names."""
    out = {}
    for k, v in sd.items():
        if k.startswith("teacher."):
            continue
        m = None
        for pattern, repl in _MMDET_TO_D2:
            m = re.match(pattern, k)
            if m:
                new = (repl.replace("{k}", str(int(m.group(1)) + 1)) + k[m.end():]) if "{k}" in repl \
                    else re.sub(pattern, repl, k, count=1)
                out[new] = v
                break
        if m is None:
            raise UserError(f"no detectron2 name for '{k}'")
    return out


def detector_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = _sd(source)
    if any(k.startswith(("backbone.net.", "proposal_generator.", "roi_heads.")) for k in sd):
        sd = detectron2_to_mmdet(sd)
    return {k: v for k, v in sd.items() if not k.startswith("teacher.")}


def load_detector_checkpoint(model: torch.nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Load a detectron2 or mmdet-plug-in checkpoint into a (teacher) detector; every key must fit."""
    load_state_dict_strict(model, detector_state_dict(source), source=str(source) if isinstance(source, (str, Path))
                           else "detector state dict")


# --- segmentation ---------------------------------------------------------------------

_SEG_RULES: list[tuple[str, str]] = [
    (r"^backbone\.patch_embed\.proj\.", "backbone.patch_embed.projection."),
    (r"^backbone\.blocks\.(\d+)\.norm(\d)\.", r"backbone.layers.\1.ln\2."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.fc1\.", r"backbone.layers.\1.ffn.layers.0.0."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.fc2\.", r"backbone.layers.\1.ffn.layers.1."),
    (r"^backbone\.blocks\.(\d+)\.", r"backbone.layers.\1."),
    (r"^backbone\.fpn1\.", "neck.upsample_4x."),
    (r"^backbone\.fpn2\.", "neck.upsample_2x."),
    (r"^backbone\.(cls_token|pos_embed)$", r"backbone.\1"),
    (r"^(decode_head|auxiliary_head)\.", r"\1."),
]


def mmseg0_to_mmseg1(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official G2SD segmentation checkpoint (mmseg 0.x; a distiller's ``student.*`` or a plain
    segmentor) -> mmseg 1.x ``EncoderDecoder`` with the ``MAE`` backbone and ``Feature2Pyramid`` neck."""
    if any(k.startswith("student.") for k in sd):
        sd = {k[len("student."):]: v for k, v in sd.items() if k.startswith("student.")}
    out, unknown = {}, []
    for k, v in sd.items():
        if k.endswith("relative_position_index"):  # a buffer rebuilt from the window size
            continue
        new = _rename(k, _SEG_RULES)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise UserError(f"segmentation keys without a counterpart: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return out


def mae_encoder_to_mmseg(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MAE / GD encoder -> mmseg 1.x ``MAE`` backbone keys (no ``backbone.`` prefix), for ``init_cfg``."""
    enc = {f"backbone.{k}": v for k, v in mae_state_dict_to_timm(sd).items()
           if k.startswith(("patch_embed.", "blocks.", "cls_token", "pos_embed"))}
    return {k[len("backbone."):]: v for k, v in mmseg0_to_mmseg1(enc).items()}


def load_segmentor_checkpoint(model: torch.nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Load an mmseg 0.x (official) or 1.x segmentor checkpoint into ``model``; every key must fit."""
    sd = _sd(source)
    if any(k.startswith(("student.", "backbone.blocks.")) for k in sd):
        sd = mmseg0_to_mmseg1(sd)
    sd = {k: v for k, v in sd.items() if not k.startswith("teacher.")}
    own = model.state_dict()
    # relative_position_index buffers are derived from the window size, not learnt
    sd.update({k: v for k, v in own.items() if k.endswith("relative_position_index") and k not in sd})
    load_state_dict_strict(model, sd, source=str(source) if isinstance(source, (str, Path)) else "segmentor state dict")


# --- command line ------------------------------------------------------------------------


def _build(name: str):
    from g2sd.models import REGISTRY

    return REGISTRY.build(name)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m g2sd.convert", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    for kind, default in (("gd", "g2sd_mae_vit_small_patch16_dec256d4b"), ("cls", "g2sd_vit_small_patch16_224_dist"),
                          ("mae", "mae_vit_base_patch16_dec512d8b"), ("det", None), ("seg", None),
                          ("seg-init", None)):
        p = sub.add_parser(kind)
        p.add_argument("src")
        p.add_argument("dst")
        if default:
            p.add_argument("--model", default=default, help=f"registered model to check against (default {default})")
    args = ap.parse_args(argv)
    sd = read_any_state_dict(args.src)
    if args.kind == "gd":
        model = _build(args.model)
        load_state_dict_strict(model, sd, source=args.src)
        out = model.state_dict()
    elif args.kind == "cls":
        model = _build(args.model)
        if any(k.startswith("decoder") for k in sd):  # a GD / MAE checkpoint: encoder only, fresh heads
            from g2sd.engine.stages import init_classifier_from_pretrained

            missing = init_classifier_from_pretrained(model, sd)
            print(f"encoder loaded; initialised fresh: {', '.join(missing)}")
        else:
            load_state_dict_strict(model, sd, source=args.src)
        out = model.state_dict()
    elif args.kind == "mae":
        from vlcore.models.mae import load_mae_checkpoint

        model = _build(args.model)
        load_mae_checkpoint(model, sd, require_decoder=True)
        out = model.state_dict()
    elif args.kind == "det":
        out = detector_state_dict(sd)
    elif args.kind == "seg":
        out = mmseg0_to_mmseg1(sd)
    else:
        out = mae_encoder_to_mmseg(sd)
        dst = Path(args.dst)
        if dst.suffix not in (".pth", ".pt"):
            raise UserError(f"{dst}: mmseg's init_cfg reads torch files; use a .pth name")
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, dst)
        print(f"seg-init: {len(out)} backbone tensors -> {dst}")
        return 0
    dst = Path(args.dst)
    if dst.suffix != ".safetensors":
        raise UserError(f"{dst}: the output is written as safetensors; use a .safetensors name")
    save_weights(out, dst)
    print(f"{args.kind}: {len(sd)} tensors from {args.src} -> {len(out)} tensors in {dst}")
    return 0


if __name__ == "__main__":
    run_cli(main)
