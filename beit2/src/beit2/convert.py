"""Official BEiT v2 / timm checkpoints <-> beit2 models.

    python -m beit2.convert --input beitv2_base_patch16_224_pt1k.pth --output pt.safetensors
    python -m beit2.convert --input beitv2_base_patch16_224_pt1k.pth --model beitv2_base_patch16_224 \
        --output ft_init.safetensors                       # pretraining -> fine-tuning initialisation
    python -m beit2.convert --input beitv2_base_patch16_224_pt1k_ft21kto1k.pth --output ft.safetensors
    python -m beit2.convert --input vqkd_encoder_base_decoder_3x768x12_clip-d5036aa7.pth --output vqkd.safetensors
    python -m beit2.convert --input ft.safetensors --to timm --output timm_beitv2.safetensors

Layouts (detected from the keys, or ``--layout``):

* ``pretrain``: unilm MIM checkpoints (``mask_token``, ``rel_pos_bias.*`` shared table,
  ``lm_head``, ``cls_pt_layers``) -> :class:`beit2.models.BeitV2ForMIM`; with a fine-tuning
  ``--model`` the shared table is copied into every block, the pretraining-only modules are
  dropped and ``fc_norm`` / ``head`` keep the model's fresh initialisation, as BEiT
  fine-tuning starts.
* ``finetune``: unilm fine-tuned files and timm ``beitv2_*`` state dicts (identical names)
  -> ``vlcore.models.beit.Beit``; tables / position embeddings are resized to the model's grid.
* ``vqkd``: unilm tokenizer files -> ``vlcore.tokenizers.VQKD`` (teacher keys dropped).

Every conversion is checked by loading strictly into the built model; the output is
safetensors. Official ``.pth`` files are read with ``torch.load(weights_only=True)``
(``argparse.Namespace`` is the only class allowed, for the stored training arguments).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from vlcore.checkpoint import CheckpointMismatchError, load_state_dict_strict, load_weights, save_weights
from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.layers.relpos import relative_position_index
from vlcore.models.beit import Beit, beit_state_dict_from_official, beit_state_dict_to_timm
from vlcore.tokenizers.vqkd import VQKD_CONFIGS, vqkd_state_dict_from_official

from beit2.models import REGISTRY, SIZES, BeitV2ForMIM

__all__ = [
    "detect_layout",
    "finetune_init_from_pretrain",
    "load_finetune_init",
    "official_from_pretrain",
    "pretrain_from_official",
    "read_checkpoint",
    "main",
]

PRETRAIN_ONLY = ("mask_token", "lm_head.", "cls_pt_layers.", "cls_pt_norm.", "cls_pt_lm_head.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from an official ``.pth`` / ``.bin`` or a ``.safetensors`` file.

    Unwraps ``model`` / ``module`` / ``state_dict`` (BEiT v2 files keep ``module``) and a
    ``module.`` prefix left by DistributedDataParallel.
    """
    from vlcore.models.mae import read_official_state_dict

    path = Path(path)
    sd = load_weights(path) if path.suffix == ".safetensors" else read_official_state_dict(path)
    while len(sd) == 1 and isinstance(next(iter(sd.values())), Mapping):
        sd = dict(next(iter(sd.values())))
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("quantize.") for k in sd) and any(k.startswith("encoder.") for k in sd):
        return "vqkd"
    if "mask_token" in sd or "lm_head.weight" in sd or any(k.startswith("cls_pt_layers.") for k in sd):
        return "pretrain"
    if "cls_token" in sd and any(k.startswith("blocks.") for k in sd):
        return "finetune"
    raise UserError("cannot tell the checkpoint layout from its keys (no VQ-KD, BEiT pretraining or fine-tuning keys); "
                    "pass --layout")


def _depth(sd: Mapping[str, torch.Tensor], prefix: str = "blocks.") -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = [int(m.group(1)) for k in sd if (m := pattern.match(k))]
    return max(ids) + 1 if ids else 0


def _geometry(sd: Mapping[str, torch.Tensor]) -> dict:
    """Width, depth, heads, patch size and image size of a BEiT state dict."""
    dim = sd["cls_token"].shape[-1]
    depth = _depth(sd)
    patch = sd["patch_embed.proj.weight"].shape[-1]
    table = next((sd[k] for k in ("rel_pos_bias.relative_position_bias_table",
                                  "blocks.0.attn.relative_position_bias_table",
                                  "blocks.0.attn.rel_pos_bias.relative_position_bias_table") if k in sd), None)
    heads = table.shape[1] if table is not None else max(1, dim // 64)
    img = 224
    if table is not None:
        side = (int(round((table.shape[0] - 3) ** 0.5)) + 1) // 2
        img = side * patch
    init = sd.get("blocks.0.gamma_1")
    return dict(embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch, img_size=img,
                init_values=float(init.mean()) if init is not None else None)


def _named_size(geom: dict) -> str | None:
    for name, s in SIZES.items():
        if (s["embed_dim"], s["depth"]) == (geom["embed_dim"], geom["depth"]):
            return name
    return None


# --- pretraining checkpoints ----------------------------------------------------


def pretrain_from_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official MIM checkpoint -> :class:`BeitV2ForMIM` keys (index buffers dropped, names kept)."""
    return {k: v for k, v in sd.items() if not k.endswith("relative_position_index")}


def official_from_pretrain(model: BeitV2ForMIM) -> dict[str, torch.Tensor]:
    """:class:`BeitV2ForMIM` -> the official key layout, including the index buffers the
    official modules store (so unilm's strict loader accepts it)."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if model.rel_pos_bias is not None:
        sd["rel_pos_bias.relative_position_index"] = relative_position_index(model.grid_size)
    return sd


def build_pretrain_for(sd: Mapping[str, torch.Tensor], early_layers: int | None = None) -> BeitV2ForMIM:
    """The pretraining model a state dict was saved from. The block feeding the aggregation
    branch is not visible in the weights: the paper's (9 base, 21 large) for the paper's
    sizes, ``early_layers`` otherwise (default depth - 3)."""
    geom = _geometry(sd)
    head_layers = _depth(sd, "cls_pt_layers.")
    size = _named_size(geom)
    early = early_layers or (SIZES[size]["early_layers"] if size else max(1, geom["depth"] - 3))
    kw = dict(vocab_size=sd["lm_head.weight"].shape[0], head_layers=head_layers, early_layers=early if head_layers else 0,
              shared_lm_head="cls_pt_lm_head.weight" not in sd)
    geom = {k: v for k, v in geom.items() if v is not None}
    return BeitV2ForMIM(**geom, **kw)


def finetune_init_from_pretrain(sd: Mapping[str, torch.Tensor], model: Beit) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official (or our) pretraining state dict -> the fine-tuning model's initialisation.

    Returns (state dict, dropped keys). The shared table is copied into every block (and
    resized to the model's grid); ``mask_token``, ``lm_head``, ``cls_pt_layers`` and, with
    mean pooling, the final ``norm`` are dropped. ``fc_norm`` / ``head`` are absent: they
    keep the model's initialisation (:func:`load_finetune_init`).
    """
    drop = list(PRETRAIN_ONLY)
    if model.global_pool == "avg":
        drop.append("norm.")
    dropped = [k for k in sd if k.startswith(tuple(drop))]
    kept = {k: v for k, v in sd.items() if k not in dropped}
    return beit_state_dict_from_official(kept, model), dropped


def load_finetune_init(model: Beit, sd: Mapping[str, torch.Tensor], *, source: str = "pretraining checkpoint") -> list[str]:
    """Load :func:`finetune_init_from_pretrain`'s output: every key must fit, and the only
    keys it may lack are ``fc_norm`` / ``head`` (new in fine-tuning). Returns those."""
    own = model.state_dict()
    fresh = [k for k in own if k not in sd]
    bad = [k for k in fresh if not k.startswith(("fc_norm.", "head."))]
    if bad:
        raise CheckpointMismatchError(f"{source} lacks {len(bad)} backbone keys [{', '.join(bad[:5])}]", missing=bad)
    load_state_dict_strict(model, {**{k: own[k] for k in fresh}, **sd}, source=source)
    return fresh


# --- the command line ----------------------------------------------------------------


def _build_finetune(name: str | None, sd: Mapping[str, torch.Tensor]) -> tuple[str, Beit]:
    geom = _geometry(sd)
    if name is None:
        size = _named_size(geom)
        if size is None:
            heads = geom["num_heads"]
            return "custom", Beit(embed_dim=geom["embed_dim"], depth=geom["depth"], num_heads=heads,
                                  patch_size=geom["patch_size"], img_size=geom["img_size"],
                                  num_classes=sd["head.weight"].shape[0] if "head.weight" in sd else 0,
                                  init_values=geom["init_values"])
        name = f"beitv2_{size}_patch16_224"
    kw = {}
    if "head.weight" in sd:
        kw["num_classes"] = sd["head.weight"].shape[0]
    return name, REGISTRY.build(name, **kw)


def convert(
    sd: Mapping[str, torch.Tensor], *, layout: str = "auto", model_name: str | None = None, to: str = "ours",
    early_layers: int | None = None,
) -> tuple[dict[str, torch.Tensor], nn.Module, str]:
    """Convert ``sd``; returns (converted state dict, the model it was checked against, a summary)."""
    layout = detect_layout(sd) if layout == "auto" else layout
    if to == "timm":
        if layout != "finetune":
            raise UserError(f"--to timm needs a fine-tuning checkpoint, this one is '{layout}'")
        name, model = _build_finetune(model_name, sd)
        ours = beit_state_dict_from_official(sd, model)
        load_state_dict_strict(model, ours, source="input")
        return beit_state_dict_to_timm(model.state_dict()), model, f"{name} -> timm Beit layout"
    if layout == "vqkd":
        ours = vqkd_state_dict_from_official(sd)
        cfg = next((n for n in VQKD_CONFIGS if model_name == n), None)
        dec_depth = _depth(ours, "decoder.blocks.")
        target = ours["decode_task_layer.2.weight"].shape[0]
        name = cfg or ("vqkd_encoder_base_decoder_3x768x12_clip" if dec_depth == 3 else
                       "vqkd_encoder_base_decoder_1x768x12_dino" if target == 768 else
                       "vqkd_encoder_base_decoder_1x768x12_clip")
        code_dim = ours["quantize.embedding.weight"].shape[1]
        model = REGISTRY.build(name, num_codes=ours["quantize.embedding.weight"].shape[0], code_dim=code_dim,
                               embed_dim=ours["encoder.cls_token"].shape[-1], depth=_depth(ours, "encoder.blocks."),
                               decoder_depth=dec_depth, target_dim=target,
                               patch_size=ours["encoder.patch_embed.proj.weight"].shape[-1],
                               img_size=int(round((ours["encoder.pos_embed"].shape[1] - 1) ** 0.5))
                               * ours["encoder.patch_embed.proj.weight"].shape[-1],
                               num_heads=max(1, ours["encoder.cls_token"].shape[-1] // 64),
                               decoder_embed_dim=ours["decoder.cls_token"].shape[-1],
                               decoder_num_heads=max(1, ours["decoder.cls_token"].shape[-1] // 64))
        load_state_dict_strict(model, ours, source="VQ-KD checkpoint")
        return ours, model, f"VQ-KD tokenizer ({name}-shaped)"
    if layout == "pretrain":
        if model_name is not None and not model_name.endswith("_pt"):
            name, model = _build_finetune(model_name, {k: v for k, v in sd.items() if not k.startswith("head.")})
            ours, dropped = finetune_init_from_pretrain(sd, model)
            fresh = load_finetune_init(model, ours)
            ours = {k: v for k, v in model.state_dict().items()}
            return ours, model, (f"pretraining -> {name} fine-tuning init: shared table copied into "
                                 f"{len(model.blocks)} blocks; dropped {len(dropped)} pretraining keys; "
                                 f"fresh {', '.join(sorted({k.split('.')[0] for k in fresh}))}")
        model = REGISTRY.build(model_name) if model_name else build_pretrain_for(sd, early_layers)
        ours = pretrain_from_official(sd)
        load_state_dict_strict(model, ours, source="pretraining checkpoint")
        return ours, model, "BEiT v2 pretraining model"
    if layout == "finetune":
        name, model = _build_finetune(model_name, sd)
        ours = beit_state_dict_from_official(sd, model)
        load_state_dict_strict(model, ours, source="fine-tuned checkpoint")
        return ours, model, f"{name} (per-layer relative position tables)"
    raise UserError(f"unknown layout '{layout}' (auto, vqkd, pretrain, finetune)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m beit2.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="official .pth / .bin, timm or our .safetensors")
    p.add_argument("--output", required=True, help="where to write the converted .safetensors")
    p.add_argument("--layout", default="auto", choices=["auto", "vqkd", "pretrain", "finetune"])
    p.add_argument("--model", default=None, help=f"target configuration ({', '.join(REGISTRY.names())})")
    p.add_argument("--to", default="ours", choices=["ours", "timm"], help="target key layout")
    p.add_argument("--early-layers", type=int, default=None,
                   help="pretraining models of other sizes: the block feeding the aggregation branch")
    args = p.parse_args(argv)
    if args.model is not None:
        REGISTRY.get(args.model)  # unknown names fail with a suggestion
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise UserError(f"--output must end in .safetensors, got {out.name}")
    sd = read_checkpoint(args.input)
    converted, model, summary = convert(sd, layout=args.layout, model_name=args.model, to=args.to,
                                       early_layers=args.early_layers)
    save_weights(converted, out, metadata={"source": Path(args.input).name, "conversion": summary})
    n = sum(p.numel() for p in model.parameters())
    print(f"{Path(args.input).name}: {summary}; {len(converted)} tensors, {n / 1e6:.2f} M parameters -> {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
