"""Weights to and from transformers' ``Kosmos2ForConditionalGeneration`` and the official
fairseq checkpoint (``kosmos-2.pt``, card §9).

Key map (HF -> ours; the official layout is first renamed to HF's by the ordered substring
rules of the HF conversion script, :func:`official_to_hf_keys`):

===============================================================  ===========================================
HF                                                               ours (:class:`Kosmos2Model`)
===============================================================  ===========================================
``vision_model.model.embeddings.class_embedding`` (D,)            ``vision.cls_token`` (1, 1, D)
``vision_model.model.embeddings.patch_embedding.weight``          ``vision.patch_embed.proj.weight``
``vision_model.model.embeddings.position_embedding.weight``       ``vision.pos_embed`` (1, N, D)
``vision_model.model.pre_layrnorm`` / ``post_layernorm``          ``vision.norm_pre`` / ``vision.norm``
``...encoder.layers.i.self_attn.{q,k,v}_proj``                    ``vision.blocks.i.attn.qkv`` (concatenated)
``...encoder.layers.i.self_attn.out_proj``                        ``vision.blocks.i.attn.proj``
``...layer_norm1`` / ``layer_norm2`` / ``mlp.fc1`` / ``mlp.fc2``  ``norm1`` / ``norm2`` / ``mlp.fc1`` / ``mlp.fc2``
``image_to_text_projection.{dense,latent_query}``                 ``connector.{dense,latent_query}``
``image_to_text_projection.x_attn.q_proj / {k,v}_proj / out``     ``connector.attn.q / kv / proj``
``text_model.model.embed_tokens`` (= ``text_model.lm_head``)      ``embed_tokens`` (tied head)
``text_model.model.layers.i.*``, ``text_model.model.layer_norm``  ``decoder.blocks.i.*``, ``decoder.norm``
                                                                  (``vlcore.layers.convert_torchscale_state_dict``)
===============================================================  ===========================================

Only ``torch.load(weights_only=True)`` and safetensors are used to read files.

CLI: ``python -m kosmos2.convert --official kosmos-2.pt --out kosmos2.safetensors`` or
``python -m kosmos2.convert --hf DIR --out kosmos2.safetensors`` (a saved HF model folder);
``--to-hf DIR`` writes an HF model folder from our safetensors file (``--in``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from vlcore.checkpoint import CheckpointError, load_state_dict_strict, load_training_state, load_weights, save_weights
from vlcore.cli import run_cli
from vlcore.layers import convert_torchscale_state_dict

from kosmos2.models.kosmos2 import Kosmos2Config, Kosmos2Model

__all__ = [
    "config_from_hf",
    "hf_config",
    "hf_to_ours",
    "ours_to_hf",
    "from_hf",
    "to_hf",
    "official_to_hf_keys",
    "hf_to_official_keys",
    "load_official_checkpoint",
    "OFFICIAL_IGNORED_KEYS",
]

# buffers of the fairseq model that the forward never reads (card §9)
OFFICIAL_IGNORED_KEYS = ("gpt_model.decoder.embed_positions._float_tensor", "gpt_model.decoder.self_attn_sope.scale")

_V = "vision_model.model."
_T = "text_model.model."
_P = "image_to_text_projection."


# ---- configs ------------------------------------------------------------------------------
def config_from_hf(hf_cfg) -> Kosmos2Config:
    """Our config from a ``transformers.Kosmos2Config``."""
    t, v = hf_cfg.text_config, hf_cfg.vision_config
    if v.hidden_act != "quick_gelu" or t.activation_function != "gelu":
        raise ValueError(f"unsupported activations: vision {v.hidden_act!r}, text {t.activation_function!r}")
    if v.intermediate_size % v.hidden_size:
        raise ValueError("vision intermediate_size must be a multiple of hidden_size")
    return Kosmos2Config(
        vocab_size=t.vocab_size, embed_dim=t.embed_dim, depth=t.layers, num_heads=t.attention_heads,
        ffn_dim=t.ffn_dim, max_positions=t.max_position_embeddings, pad_token_id=t.pad_token_id,
        bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id, dropout=t.dropout,
        attn_drop=t.attention_dropout, act_drop=t.activation_dropout, norm_eps=t.layer_norm_eps,
        scale_embedding=t.scale_embedding, norm_layout="subln", vision="clip_vit", img_size=v.image_size,
        patch_size=v.patch_size, vision_dim=v.hidden_size, vision_depth=v.num_hidden_layers,
        vision_heads=v.num_attention_heads, vision_mlp_ratio=v.intermediate_size / v.hidden_size,
        vision_norm_eps=v.layer_norm_eps, connector="resampler", num_latents=hf_cfg.latent_query_num,
    )


def hf_config(cfg: Kosmos2Config):
    """A ``transformers.Kosmos2Config`` for our config (CLIP-ViT + resampler + Sub-LN only)."""
    from transformers import Kosmos2Config as HFConfig

    if cfg.vision != "clip_vit" or cfg.connector != "resampler" or cfg.norm_layout != "subln":
        raise ValueError("only vision='clip_vit', connector='resampler', norm_layout='subln' exist in transformers")
    if (cfg.connector_heads or cfg.num_heads) != cfg.num_heads:
        raise ValueError("transformers' connector uses the decoder's head count")
    return HFConfig(
        text_config=dict(
            vocab_size=cfg.vocab_size, embed_dim=cfg.embed_dim, layers=cfg.depth, attention_heads=cfg.num_heads,
            ffn_dim=cfg.ffn_dim, max_position_embeddings=cfg.max_positions, pad_token_id=cfg.pad_token_id,
            bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, dropout=cfg.dropout,
            attention_dropout=cfg.attn_drop, activation_dropout=cfg.act_drop, layer_norm_eps=cfg.norm_eps,
            scale_embedding=cfg.scale_embedding, activation_function="gelu",
        ),
        vision_config=dict(
            hidden_size=cfg.vision_dim, intermediate_size=int(cfg.vision_dim * cfg.vision_mlp_ratio),
            num_hidden_layers=cfg.vision_depth, num_attention_heads=cfg.vision_heads, image_size=cfg.img_size,
            patch_size=cfg.patch_size, layer_norm_eps=cfg.vision_norm_eps, hidden_act="quick_gelu",
        ),
        latent_query_num=cfg.num_latents,
    )


# ---- state dicts: HF <-> ours ---------------------------------------------------------------
def _fuse(sd: Mapping[str, torch.Tensor], prefix: str, parts: str) -> dict[str, torch.Tensor]:
    out = {}
    for kind in ("weight", "bias"):
        keys = [f"{prefix}{p}_proj.{kind}" for p in parts]
        if all(k in sd for k in keys):
            out[kind] = torch.cat([sd[k] for k in keys], dim=0)
        elif any(k in sd for k in keys):
            raise KeyError(f"incomplete projections under {prefix}: need {parts} for {kind}")
    return out


def hf_to_ours(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ``Kosmos2ForConditionalGeneration`` state dict -> ours. Unknown keys raise KeyError."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, fn=lambda t: t) -> None:
        out[dst] = fn(sd[src])
        used.add(src)

    # vision tower
    take(_V + "embeddings.class_embedding", "vision.cls_token", lambda t: t.reshape(1, 1, -1))
    take(_V + "embeddings.patch_embedding.weight", "vision.patch_embed.proj.weight")
    take(_V + "embeddings.position_embedding.weight", "vision.pos_embed", lambda t: t.unsqueeze(0))
    for ln, ours in (("pre_layrnorm", "norm_pre"), ("post_layernorm", "norm")):
        for kind in ("weight", "bias"):
            take(f"{_V}{ln}.{kind}", f"vision.{ours}.{kind}")
    layer_ids = sorted({int(m.group(1)) for k in sd if (m := re.match(re.escape(_V) + r"encoder\.layers\.(\d+)\.", k))})
    for i in layer_ids:
        src, dst = f"{_V}encoder.layers.{i}.", f"vision.blocks.{i}."
        for kind, t in _fuse(sd, src + "self_attn.", "qkv").items():
            out[f"{dst}attn.qkv.{kind}"] = t
            used.update(f"{src}self_attn.{p}_proj.{kind}" for p in "qkv")
        for a, b in (("self_attn.out_proj", "attn.proj"), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"),
                     ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            for kind in ("weight", "bias"):
                take(f"{src}{a}.{kind}", f"{dst}{b}.{kind}")
    # connector
    take(_P + "latent_query", "connector.latent_query")
    for kind in ("weight", "bias"):
        take(f"{_P}dense.{kind}", f"connector.dense.{kind}")
        take(f"{_P}x_attn.q_proj.{kind}", f"connector.attn.q.{kind}")
        take(f"{_P}x_attn.out_proj.{kind}", f"connector.attn.proj.{kind}")
    for kind, t in _fuse(sd, _P + "x_attn.", "kv").items():
        out[f"connector.attn.kv.{kind}"] = t
        used.update(f"{_P}x_attn.{p}_proj.{kind}" for p in "kv")
    # language model
    take(_T + "embed_tokens.weight", "embed_tokens.weight")
    head = sd.get("text_model.lm_head.weight")
    if head is not None:
        if not torch.equal(head, sd[_T + "embed_tokens.weight"]):
            raise ValueError("text_model.lm_head.weight differs from the token embedding; Kosmos-2 ties them")
        used.add("text_model.lm_head.weight")
    text = {k[len(_T):]: v for k, v in sd.items() if k.startswith(_T) and k != _T + "embed_tokens.weight"}
    used.update(_T + k for k in text)
    for k, v in convert_torchscale_state_dict(text).items():
        out["decoder." + k] = v
    unknown = sorted(set(sd) - used)
    if unknown:
        raise KeyError(f"unexpected keys for Kosmos-2: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    return out


def ours_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> HF ``Kosmos2ForConditionalGeneration`` keys (lm_head written tied)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k == "vision.cls_token":
            out[_V + "embeddings.class_embedding"] = v.reshape(-1)
        elif k == "vision.patch_embed.proj.weight":
            out[_V + "embeddings.patch_embedding.weight"] = v
        elif k == "vision.pos_embed":
            out[_V + "embeddings.position_embedding.weight"] = v.squeeze(0)
        elif m := re.match(r"vision\.(norm_pre|norm)\.(weight|bias)$", k):
            out[f"{_V}{'pre_layrnorm' if m.group(1) == 'norm_pre' else 'post_layernorm'}.{m.group(2)}"] = v
        elif m := re.match(r"vision\.blocks\.(\d+)\.(.+)\.(weight|bias)$", k):
            i, name, kind = m.groups()
            src = f"{_V}encoder.layers.{i}."
            if name == "attn.qkv":
                for p, t in zip("qkv", v.chunk(3, dim=0)):
                    out[f"{src}self_attn.{p}_proj.{kind}"] = t
            else:
                hf = {"attn.proj": "self_attn.out_proj", "norm1": "layer_norm1", "norm2": "layer_norm2",
                      "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}.get(name)
                if hf is None:
                    raise KeyError(f"no HF counterpart for {k}")
                out[f"{src}{hf}.{kind}"] = v
        elif k == "connector.latent_query":
            out[_P + "latent_query"] = v
        elif m := re.match(r"connector\.(dense|attn\.q|attn\.kv|attn\.proj)\.(weight|bias)$", k):
            name, kind = m.groups()
            if name == "attn.kv":
                for p, t in zip("kv", v.chunk(2, dim=0)):
                    out[f"{_P}x_attn.{p}_proj.{kind}"] = t
            else:
                hf = {"dense": "dense", "attn.q": "x_attn.q_proj", "attn.proj": "x_attn.out_proj"}[name]
                out[f"{_P}{hf}.{kind}"] = v
        elif k == "embed_tokens.weight":
            out[_T + "embed_tokens.weight"] = v
            out["text_model.lm_head.weight"] = v
        elif k.startswith("decoder."):
            out.update(_decoder_to_torchscale(k[len("decoder."):], v))
        else:
            raise KeyError(f"no HF counterpart for {k}")
    return out


_DEC_INV = (
    (r"^norm\.", "layer_norm."),
    (r"^blocks\.", "layers."),
    (r"\.norm1\.", ".self_attn_layer_norm."),
    (r"\.norm2\.", ".final_layer_norm."),
    (r"\.attn\.norm\.", ".self_attn.inner_attn_ln."),
    (r"\.attn\.proj\.", ".self_attn.out_proj."),
    (r"\.mlp\.norm\.", ".ffn.ffn_layernorm."),
    (r"\.mlp\.fc1\.", ".ffn.fc1."),
    (r"\.mlp\.fc2\.", ".ffn.fc2."),
)


def _decoder_to_torchscale(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    if m := re.match(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key):
        i, kind = m.groups()
        return {f"{_T}layers.{i}.self_attn.{p}_proj.{kind}": t for p, t in zip("qkv", value.chunk(3, dim=0))}
    for pattern, repl in _DEC_INV:
        key = re.sub(pattern, repl, key)
    return {_T + key: value}


def from_hf(hf_model) -> Kosmos2Model:
    """Our model with the weights of a ``Kosmos2ForConditionalGeneration`` (same outputs)."""
    cfg = config_from_hf(hf_model.config)
    model = Kosmos2Model(cfg)
    model.load_state_dict(hf_to_ours(hf_model.state_dict()), strict=True)
    return model


def to_hf(model: Kosmos2Model):
    """A ``Kosmos2ForConditionalGeneration`` with our weights."""
    from transformers import Kosmos2ForConditionalGeneration

    hf = Kosmos2ForConditionalGeneration(hf_config(model.cfg))
    missing, unexpected = hf.load_state_dict(ours_to_hf(model.state_dict()), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"HF load: missing {missing}, unexpected {unexpected}")
    hf.eval()
    return hf


# ---- official fairseq layout ------------------------------------------------------------------
_OFFICIAL_TO_HF = (
    ("gpt_model.decoder.output_projection", "text_model.lm_head"),
    ("gpt_model.decoder", "text_model.model"),
    ("img_connector", "image_to_text_projection"),
    ("img_model.visual.class_embedding", "vision_model.model.embeddings.class_embedding"),
    ("img_model.visual.positional_embedding", "vision_model.model.embeddings.position_embedding.weight"),
    ("img_model.visual.conv1", "vision_model.model.embeddings.patch_embedding"),
    ("img_model.visual", "vision_model.model"),
    ("ln_pre", "pre_layrnorm"),
    ("ln_post", "post_layernorm"),
    ("transformer.resblocks", "encoder.layers"),
    ("ts_attn", "self_attn"),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("c_fc", "fc1"),
    ("c_proj", "fc2"),
)


def official_to_hf_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official fairseq keys to HF's (ordered substring rules); drops the unused buffers."""
    out = {}
    for key, value in sd.items():
        if key in OFFICIAL_IGNORED_KEYS:
            continue
        new = key
        for a, b in _OFFICIAL_TO_HF:
            new = new.replace(a, b)
        out[new] = value
    return out


def hf_to_official_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`official_to_hf_keys` (to write checkpoints in the official layout)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("text_model.lm_head"):
            new = key.replace("text_model.lm_head", "gpt_model.decoder.output_projection")
        elif key.startswith("text_model.model"):
            new = key.replace("text_model.model", "gpt_model.decoder")
        elif key.startswith("image_to_text_projection"):
            new = key.replace("image_to_text_projection", "img_connector")
        elif key.startswith("vision_model.model"):
            new = key
            for a, b in (
                ("vision_model.model.embeddings.class_embedding", "img_model.visual.class_embedding"),
                ("vision_model.model.embeddings.position_embedding.weight", "img_model.visual.positional_embedding"),
                ("vision_model.model.embeddings.patch_embedding", "img_model.visual.conv1"),
                ("vision_model.model", "img_model.visual"),
                ("pre_layrnorm", "ln_pre"),
                ("post_layernorm", "ln_post"),
                ("encoder.layers", "transformer.resblocks"),
                ("self_attn", "ts_attn"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ):
                new = new.replace(a, b)
        else:
            raise KeyError(f"not a Kosmos-2 HF key: {key}")
        out[new] = value
    return out


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_weights(path)
    obj = load_training_state(path)  # weights-only: a pickled object is refused, never run
    if isinstance(obj.get("model"), Mapping):
        obj = obj["model"]  # fairseq checkpoint
    return dict(obj)


def load_official_checkpoint(path: str | Path, cfg: Kosmos2Config | None = None) -> Kosmos2Model:
    """Build our model from an official (fairseq, ``state["model"]``) checkpoint; every key
    must be used (``OFFICIAL_IGNORED_KEYS`` excepted) and every parameter filled."""
    sd = _read_state_dict(path)
    if not any(k.startswith(("gpt_model.decoder.", "img_model.visual.", "img_connector.")) for k in sd):
        sample = ", ".join(list(sd)[:3])
        raise CheckpointError(
            f"{path}: not a Kosmos-2 checkpoint in the official layout "
            f"(no gpt_model.decoder.* / img_model.visual.* / img_connector.* keys; found e.g. {sample})"
        )
    try:
        ours = hf_to_ours(official_to_hf_keys(sd))
    except KeyError as err:
        raise CheckpointError(f"{path}: {err}") from err
    cfg = cfg or Kosmos2Config()
    model = Kosmos2Model(cfg)
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}")
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kosmos2.convert", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--official", help="official fairseq checkpoint (kosmos-2.pt)")
    src.add_argument("--hf", help="folder of a saved Kosmos2ForConditionalGeneration")
    src.add_argument("--in", dest="inp", help="our safetensors file (with --to-hf)")
    ap.add_argument("--out", help="our safetensors file to write")
    ap.add_argument("--to-hf", help="write an HF model folder here (with --in)")
    args = ap.parse_args(argv)
    if args.official or args.hf:
        if args.official:
            model = load_official_checkpoint(args.official)
        else:
            from transformers import Kosmos2ForConditionalGeneration

            model = from_hf(Kosmos2ForConditionalGeneration.from_pretrained(args.hf))
        if not args.out:
            ap.error("--out is required")
        save_weights(model.state_dict(), args.out)
        print(f"wrote {args.out}")
        return 0
    if not args.to_hf:
        ap.error("--in needs --to-hf")
    model = Kosmos2Model(replace(Kosmos2Config()))
    load_state_dict_strict(model, load_weights(args.inp), source=args.inp)
    to_hf(model).save_pretrained(args.to_hf)
    print(f"wrote {args.to_hf}")
    return 0


if __name__ == "__main__":
    run_cli(main)
