"""`python -m kosmos_g.sample --checkpoint PATH --out FILE.png [--prompt "red circle | on a blue background"]`.

Generates from interleaved prompts with a mini checkpoint through :class:`KosmosGPipeline`. In a
prompt, ``|`` separates segments; a segment "{colour} {shape}" (e.g. "red circle") becomes the
rendered entity image, any other segment is text. Several ``--prompt`` give several rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from vlcore.cli import run_cli
from vlcore.errors import UserError


def parse_prompt(text: str) -> list:
    from kosmos_g import mini

    out = []
    for seg in (s.strip() for s in text.split("|")):
        words = seg.split()
        if len(words) == 2 and words[0] in mini.COLOURS and words[1] in mini.SHAPES:
            c, s = mini.COLOUR_NAMES.index(words[0]), mini.SHAPES.index(words[1])
            t = lambda v: torch.tensor([v])  # noqa: E731
            out.append(mini.render(t(c), t(s), t(0), t(8.0), t(8.0), t(10.0))[0])
        elif seg:
            out.append(seg)
    if not out:
        raise UserError(f"empty prompt: {text!r}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kosmos_g.sample", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt", action="append", default=None)
    ap.add_argument("--num", type=int, default=4, help="images per prompt")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from diffusers import DDIMScheduler
    from PIL import Image

    from kosmos_g import mini
    from kosmos_g.pipeline import KosmosGPipeline
    from kosmos_g.testing import mini_processor
    from kosmos_g.train import build_from_checkpoint, load_checkpoint

    _, unet, enc = build_from_checkpoint(load_checkpoint(args.checkpoint))
    pipe = KosmosGPipeline(enc.eval(), mini_processor, unet, DDIMScheduler(**dict(mini.sample_scheduler().config)))
    pipe.set_progress_bar_config(disable=True)
    prompts = [parse_prompt(p) for p in (args.prompt or ["red circle | on a blue background",
                                                         "a | cyan cross | on a grey background"])]
    try:
        imgs = pipe(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance,
                    num_images_per_prompt=args.num, generator=torch.Generator().manual_seed(args.seed)).images
    except (KeyError, ValueError) as e:
        raise UserError(f"prompt not understood by the mini vocabulary: {e}") from e
    s, pad = 64, 2
    canvas = Image.new("RGB", (args.num * (s + pad), len(prompts) * (s + pad)), (255, 255, 255))
    for k, im in enumerate(imgs):
        arr = (im.permute(1, 2, 0) * 255).round().byte().numpy()
        canvas.paste(Image.fromarray(arr).resize((s, s), Image.NEAREST), ((k % args.num) * (s + pad),
                                                                            (k // args.num) * (s + pad)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"{len(imgs)} images -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
