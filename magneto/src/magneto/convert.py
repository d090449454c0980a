"""`python -m magneto.convert`: torchscale / fairseq (and HF Kosmos-2 text) checkpoints -> magneto weights.

    python -m magneto.convert --src checkpoint.pt --kind decoder_lm --out gpt.safetensors \\
        [--model magneto_gpt_small --num-heads 12]

Kinds: ``decoder_lm`` (torchscale ``Decoder`` with token / position embeddings and output
projection -> ``MagnetoGPT``), ``encoder`` (torchscale ``Encoder`` -> ``MagnetoBert``'s
embeddings and trunk; its MLM head is ours), ``encoder_decoder`` (torchscale
``EncoderDecoder`` -> ``MagnetoSeq2Seq``'s trunks and shared embeddings).

Layer keys go through ``vlcore.layers.convert_torchscale_state_dict`` (q/k/v fused,
``inner_attn_ln`` -> ``attn.norm``, ``ffn_layernorm`` -> ``mlp.norm``). Model prefixes
(``decoder.``, ``gpt_model.decoder.``, HF Kosmos-2's ``text_model.model.``) are stripped.
fairseq's learnt positions start at row ``padding_idx + 1 = 2``; ours at 0.

The layout is read from the keys (``inner_attn_ln`` => Sub-LN; a final ``layer_norm``
without it => Pre-LN); Post-LN and DeepNorm store the same keys (DeepNorm's alpha is not a
weight), so ``--norm`` must say which, and a ``--norm`` that contradicts the keys is an error.
With ``--model``, the converted weights are strictly loaded into that registered model (sizes
inferred from the weights) before anything is written.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Sequence

import torch

from vlcore.checkpoint import load_weights, save_weights
from vlcore.cli import run_cli
from vlcore.errors import UserError
from vlcore.layers import convert_torchscale_state_dict

FAIRSEQ_POSITION_OFFSET = 2
_PREFIXES = ("gpt_model.decoder.", "text_model.model.", "model.decoder.", "decoder.", "model.encoder.", "encoder.")


class ConversionError(UserError, ValueError):
    pass


def _strip(sd: Mapping[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    for p in prefixes:
        if any(k.startswith(p) for k in sd):
            return {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
    return dict(sd)


def detect_norm(sd: Mapping[str, torch.Tensor], *, stack_prefix: str = "") -> str | None:
    """``subln`` / ``pre`` from the keys, None when Post-LN and DeepNorm cannot be told apart."""
    keys = [k for k in sd if k.startswith(stack_prefix)]
    if any("inner_attn_ln" in k or "ffn_layernorm" in k for k in keys):
        return "subln"
    if any(re.match(re.escape(stack_prefix) + r"layer_norm\.", k) for k in keys):
        return "pre"
    return None


def check_norm(detected: str | None, requested: str | None) -> str:
    if detected is None:
        if requested not in ("post", "deepnorm"):
            raise ConversionError(
                "the checkpoint has neither Sub-LN norms nor a final LayerNorm: it is Post-LN or DeepNorm "
                "(DeepNorm's alpha is not stored); pass --norm post or --norm deepnorm"
            )
        return requested
    if requested is not None and requested != detected:
        raise ConversionError(f"--norm {requested} contradicts the checkpoint, whose keys are those of {detected!r}")
    return detected


def _layers(sd: Mapping[str, torch.Tensor], stack: str) -> dict[str, torch.Tensor]:
    """``layers.*`` / ``layer_norm.*`` of a torchscale stack -> ``{stack}.blocks.*`` / ``{stack}.norm.*``."""
    part = {k: v for k, v in sd.items() if k.startswith(("layers.", "layer_norm."))}
    return {f"{stack}.{k}": v for k, v in convert_torchscale_state_dict(part).items()}


def _positions(table: torch.Tensor, offset: int) -> torch.Tensor:
    if table.shape[0] <= offset:
        raise ConversionError(f"position table of {table.shape[0]} rows has none after the offset {offset}")
    return table[offset:].clone()


def convert_torchscale_decoder_lm(
    state_dict: Mapping[str, torch.Tensor], *, position_offset: int = FAIRSEQ_POSITION_OFFSET
) -> dict[str, torch.Tensor]:
    """torchscale ``Decoder`` (+ embeddings, output projection) -> ``MagnetoGPT`` keys."""
    lm_head = state_dict.get("text_model.lm_head.weight")  # HF Kosmos-2 keeps the head outside the model
    sd = _strip(state_dict, _PREFIXES)
    out = _layers(sd, "decoder")
    if "embed_tokens.weight" not in sd:
        raise ConversionError("no embed_tokens.weight: not a torchscale decoder language model")
    out["tok_embed.weight"] = sd["embed_tokens.weight"]
    if "embed_positions.weight" in sd:
        out["pos_embed.weight"] = _positions(sd["embed_positions.weight"], position_offset)
    head = sd.get("output_projection.weight", lm_head)
    out["head.weight"] = head if head is not None else sd["embed_tokens.weight"]
    return out


def convert_torchscale_encoder(
    state_dict: Mapping[str, torch.Tensor], *, position_offset: int = FAIRSEQ_POSITION_OFFSET
) -> dict[str, torch.Tensor]:
    """torchscale ``Encoder`` -> ``MagnetoBert`` embeddings and trunk (the MLM head is not converted)."""
    sd = _strip(state_dict, _PREFIXES)
    out = _layers(sd, "encoder")
    if "embed_tokens.weight" in sd:
        out["tok_embed.weight"] = sd["embed_tokens.weight"]
    if "embed_positions.weight" in sd:
        out["pos_embed.weight"] = _positions(sd["embed_positions.weight"], position_offset)
    for k in ("weight", "bias"):
        if f"layernorm_embedding.{k}" in sd:
            out[f"embed_norm.{k}"] = sd[f"layernorm_embedding.{k}"]
    return out


def convert_torchscale_encoder_decoder(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchscale ``EncoderDecoder`` -> ``MagnetoSeq2Seq`` (shared embeddings, both trunks)."""
    sd = dict(state_dict)
    enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    dec = {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}
    if not enc or not dec:
        raise ConversionError("expected encoder.* and decoder.* keys (torchscale EncoderDecoder)")
    if "embed_positions.weight" in enc or "embed_positions.weight" in dec:
        raise ConversionError("learnt positions are not supported: MagnetoSeq2Seq uses fixed sinusoidal positions")
    out = {**_layers(enc, "encoder"), **_layers(dec, "decoder")}
    tok = enc.get("embed_tokens.weight", dec.get("embed_tokens.weight"))
    if tok is None:
        raise ConversionError("no embed_tokens.weight in encoder or decoder")
    for name, t in (("decoder.embed_tokens", dec.get("embed_tokens.weight")),
                    ("decoder.output_projection", dec.get("output_projection.weight"))):
        if t is not None and not torch.equal(t, tok):
            raise ConversionError(f"{name} differs from the encoder embeddings: MagnetoSeq2Seq shares all embeddings")
    out["tok_embed.weight"] = tok
    out["head.weight"] = tok
    return out


KINDS = {
    "decoder_lm": convert_torchscale_decoder_lm,
    "encoder": convert_torchscale_encoder,
    "encoder_decoder": convert_torchscale_encoder_decoder,
}


def _infer_sizes(kind: str, sd: Mapping[str, torch.Tensor]) -> dict:
    def depth(stack: str) -> int:
        ids = {int(m.group(1)) for k in sd if (m := re.match(rf"{stack}\.blocks\.(\d+)\.", k))}
        return max(ids) + 1 if ids else 0

    kw: dict = {"vocab_size": sd["tok_embed.weight"].shape[0], "dim": sd["tok_embed.weight"].shape[1]}
    if kind == "encoder_decoder":
        kw["encoder_depth"], kw["decoder_depth"] = depth("encoder"), depth("decoder")
    else:
        kw["depth"] = depth("decoder" if kind == "decoder_lm" else "encoder")
        if "pos_embed.weight" in sd:
            kw["max_seq_len"] = sd["pos_embed.weight"].shape[0]
    return kw


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m magneto.convert", description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="torchscale / fairseq checkpoint (.pt / .pth / .safetensors)")
    ap.add_argument("--kind", required=True, choices=sorted(KINDS))
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--norm", choices=("post", "pre", "deepnorm", "subln"), default=None,
                    help="layout; read from the keys when possible, required for Post-LN / DeepNorm")
    ap.add_argument("--model", default=None, help="registered model to check the weights against (strict load)")
    ap.add_argument("--num-heads", type=int, default=None, help="attention heads (not stored in the weights)")
    ap.add_argument("--position-offset", type=int, default=FAIRSEQ_POSITION_OFFSET)
    args = ap.parse_args(argv)
    out_path = Path(args.out)
    if out_path.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out_path}")
    src = load_weights(args.src)
    if args.kind == "decoder_lm":
        norm = check_norm(detect_norm(_strip(src, _PREFIXES)), args.norm)
        converted = convert_torchscale_decoder_lm(src, position_offset=args.position_offset)
    elif args.kind == "encoder":
        norm = check_norm(detect_norm(_strip(src, _PREFIXES)), args.norm)
        converted = convert_torchscale_encoder(src, position_offset=args.position_offset)
    else:
        norm = check_norm(detect_norm(src, stack_prefix="encoder."), args.norm)
        converted = convert_torchscale_encoder_decoder(src)
    if args.model:
        from vlcore.checkpoint import load_state_dict_strict
        from magneto.models import REGISTRY

        if args.num_heads is None:
            raise UserError("--model needs --num-heads (the head count is not stored in the weights)")
        kw = {**_infer_sizes(args.kind, converted), "num_heads": args.num_heads, "norm": norm}
        REGISTRY.get(args.model)  # unknown names fail with a suggestion
        if args.kind == "decoder_lm" and not torch.equal(converted["head.weight"], converted["tok_embed.weight"]):
            kw["tie_embeddings"] = False
        model = REGISTRY.build(args.model, **kw)
        own = model.state_dict()
        if args.kind == "encoder":
            # the MLM head and segment embeddings are not in a torchscale encoder: keep ours,
            # with the decoder tied to the converted token embeddings
            converted = {**{k: v for k, v in own.items() if k.startswith(("head.", "type_embed."))}, **converted}
            converted["head.decoder.weight"] = converted["tok_embed.weight"]
        load_state_dict_strict(model, converted, source=str(args.src))
        print(f"checked against {args.model}({', '.join(f'{k}={v}' for k, v in kw.items())})")
    save_weights(converted, out_path, metadata={"format": f"magneto.{args.kind}", "norm": norm})
    print(f"wrote {len(converted)} tensors ({norm}) -> {out_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
