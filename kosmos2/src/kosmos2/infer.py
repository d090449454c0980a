"""Multimodal prompting on your own image: generate, parse the grounded entities, draw their boxes.

    python -m kosmos2.infer --image photo.jpg --prompt "<grounding> An image of" \
        --spm sentencepiece.bpe.model --checkpoint runs/k2/ckpt --out photo_boxes.png
    # referring: give a box for each <phrase> of the prompt (normalised x1,y1,x2,y2)
    python -m kosmos2.infer --image photo.jpg --prompt "<grounding><phrase> It</phrase> is" --bbox 0.1,0.2,0.5,0.9 ...

Prints a JSON object (text, caption, entities with normalised and pixel boxes) and writes the
image with one labelled rectangle per box to `--out`. Boxes are fractions of the square-resized
model input, so they are scaled by the original width and height.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from vlcore.cli import run_cli
from vlcore.errors import UserError

from kosmos2.eval import add_model_args, generate_text, load_model_and_processor
from kosmos2.grounding import parse_entities
from kosmos2.processor import load_image

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60)]


def draw_entities(image, entities, out_path: str | Path, line_width: int | None = None) -> int:
    """Draw every box of `entities` ((phrase, span, [normalised boxes])) with its phrase; returns the box count."""
    from PIL import ImageDraw

    im = load_image(image).copy()
    W, H = im.size
    draw = ImageDraw.Draw(im)
    lw = line_width or max(2, round(min(W, H) / 150))
    n = 0
    for k, (phrase, _, boxes) in enumerate(entities):
        colour = PALETTE[k % len(PALETTE)]
        for b in boxes:
            x1, y1, x2, y2 = b[0] * W, b[1] * H, b[2] * W, b[3] * H
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=lw)
            tw = draw.textlength(phrase) if hasattr(draw, "textlength") else 6 * len(phrase)
            ty = max(0.0, y1 - 12)
            draw.rectangle([x1, ty, x1 + tw + 4, ty + 12], fill=colour)
            draw.text((x1 + 2, ty), phrase, fill=(255, 255, 255))
            n += 1
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        im.save(out)
    except (ValueError, OSError) as e:
        raise UserError(f"cannot write {out}: {e}") from None
    return n


def _parse_bbox(s: str) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in s.split(","))
    except ValueError:
        raise UserError(f"--bbox expects x1,y1,x2,y2 (normalised), got {s!r}") from None
    if len(v) != 4 or not all(0.0 <= x <= 1.0 for x in v) or not (v[2] > v[0] and v[3] > v[1]):
        raise UserError(f"--bbox expects x1,y1,x2,y2 in [0, 1] with x2 > x1 and y2 > y1, got {s!r}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kosmos2.infer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True)
    p.add_argument("--prompt", default="<grounding> An image of")
    p.add_argument("--bbox", action="append", default=[], help="box for the i-th <phrase> of the prompt: x1,y1,x2,y2 in [0,1]")
    p.add_argument("--out", required=True, help="output image with the boxes drawn (PNG/JPEG)")
    add_model_args(p)
    args = p.parse_args(argv)

    image = load_image(args.image)  # one-line error for a missing / unreadable file
    if Path(args.out).suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".webp"}:
        raise UserError(f"--out must end in .png/.jpg/.jpeg/.bmp/.webp, got {args.out}")
    bboxes = [_parse_bbox(b) for b in args.bbox] or None
    n_phr = args.prompt.count("<phrase>")
    if bboxes is not None and len(bboxes) != n_phr:
        raise UserError(f"{len(bboxes)} --bbox for {n_phr} <phrase> spans in the prompt")
    model, proc = load_model_and_processor(args)
    text = generate_text(model, proc, image, args.prompt, args.max_new_tokens, args.num_beams, bboxes=bboxes, device=args.device)
    caption, ents = parse_entities(text, proc.num_bins)
    n = draw_entities(image, ents, args.out)
    W, H = image.size
    print(json.dumps({
        "text": text.split("</image>")[-1],
        "caption": caption,
        "entities": [
            {"phrase": ph, "span": list(sp), "boxes": [list(b) for b in bx], "boxes_px": [[b[0] * W, b[1] * H, b[2] * W, b[3] * H] for b in bx]}
            for ph, sp, bx in ents
        ],
        "boxes_drawn": n,
        "out": str(args.out),
    }, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
