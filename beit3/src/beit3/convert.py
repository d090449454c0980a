"""Official BEiT-3 checkpoints -> ours.

* torchscale ``BEiT3`` state dicts (``text_embed``, ``vision_embed``, ``encoder.*``);
* unilm ``beit3/`` fine-tuning checkpoints: the same under ``beit3.`` plus task heads
  (``pooler``, ``head``, ``fc_norm``, ``mlm_head``, ``vision_head``, ``language_head``,
  ``logit_scale``), stored under the key ``model`` or ``module``.

``python -m beit3.convert --src official.pth --out ours.safetensors [--img-size 384]``
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

import torch

from vlcore.checkpoint import CheckpointError
from vlcore.cli import run_cli
from vlcore.layers import convert_torchscale_state_dict
from vlcore.layers.pos_embed import resample_pos_embed

from beit3.models.beit3 import POS_OFFSET

_EMBED_RENAMES = (
    (r"^vision_embed\.proj\.", "patch_embed."),
    (r"^vision_embed\.cls_token$", "cls_token"),
    (r"^vision_embed\.mask_token$", "mask_token"),
    (r"^encoder\.embed_positions\.A\.weight$", "pos_embed_image.weight"),
    (r"^encoder\.embed_positions\.B\.weight$", "pos_embed_text.weight"),
)


def convert_torchscale_beit3(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchscale ``BEiT3`` keys -> ``beit3.models.beit3.BEiT3`` keys (q/k/v fused into qkv)."""
    out: dict[str, torch.Tensor] = {}
    enc: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl in _EMBED_RENAMES:
            if re.search(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            if key.startswith("encoder."):
                enc[key[len("encoder.") :]] = value
            elif key == "text_embed.weight":
                out[key] = value
            else:
                raise CheckpointError(f"unexpected torchscale BEiT3 key: {key}")
    for key, value in convert_torchscale_state_dict(enc).items():
        out["encoder." + key] = value
    return out


def resize_image_positions(weight: torch.Tensor, new_grid: int) -> torch.Tensor:
    """Interpolate the image position table (2 offset rows + CLS kept) to a new patch grid."""
    keep = POS_OFFSET + 1
    old = weight.shape[0] - keep
    old_grid = int(round(old**0.5))
    if old_grid * old_grid != old:
        raise ValueError(f"image position table of {weight.shape[0]} rows is not 3 + a square grid")
    if old_grid == new_grid:
        return weight
    grid = weight[keep:].reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid.float(), size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat((weight[:keep], grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1).to(weight.dtype)))


def convert_unilm_beit3(checkpoint: Mapping, *, img_grid: int | None = None) -> dict[str, torch.Tensor]:
    """unilm ``beit3`` checkpoint (dict with ``model``/``module`` or a bare state dict) -> ours."""
    sd = checkpoint
    for k in ("model", "module"):
        if isinstance(sd, Mapping) and k in sd and isinstance(sd[k], Mapping):
            sd = sd[k]
            break
    backbone = {k[len("beit3.") :]: v for k, v in sd.items() if k.startswith("beit3.")}
    if not backbone:
        raise CheckpointError("no 'beit3.' keys: not a unilm BEiT-3 checkpoint")
    out = {"beit3." + k: v for k, v in convert_torchscale_beit3(backbone).items()}
    out.update({k: v for k, v in sd.items() if not k.startswith("beit3.")})
    if img_grid is not None:
        out["beit3.pos_embed_image.weight"] = resize_image_positions(out["beit3.pos_embed_image.weight"], img_grid)
    return out


def main(argv: list[str] | None = None) -> int:
    from vlcore.checkpoint import load_weights, save_weights

    p = argparse.ArgumentParser(prog="python -m beit3.convert", description=__doc__.split("\n")[0])
    p.add_argument("--src", required=True, help="official unilm .pth")
    p.add_argument("--out", required=True, help="output .safetensors")
    p.add_argument("--img-size", type=int, default=None, help="target resolution (interpolates positions)")
    p.add_argument("--patch-size", type=int, default=16)
    a = p.parse_args(argv)
    ckpt = load_weights(a.src)
    grid = None if a.img_size is None else a.img_size // a.patch_size
    try:
        sd = convert_unilm_beit3(ckpt, img_grid=grid)
    except CheckpointError as e:
        raise CheckpointError(f"{a.src}: {e}") from None
    save_weights(sd, a.out)
    print(f"wrote {len(sd)} tensors to {a.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
