"""Test helpers for the text side of kosmos2: random grounded strings and a tiny SentencePiece model."""

from __future__ import annotations

import random
from pathlib import Path

from kosmos2.grounding import BOO, BOP, DELIM, EOI, EOO, EOP, GROUNDING, loc_token

WORDS = ["a", "the", "dog", "red", "circle", "man", "in", "of", "field", "snow", "fire", ".", ",", "with"]
TAGS = [BOP, EOP, BOO, EOO, DELIM, GROUNDING, EOI, "<image>", "</s>", "<s>"]
JUNK = ["<patch_index_", "<", ">", "patch_index_12>", "</phrase", "<object", "  ", " ", "<loc_3>", "[", "]", "(", ")"]


def random_generation(rng: random.Random, num_bins: int = 32, max_pieces: int = 40, junk: bool = True) -> str:
    """A random mix of words, tags and location tokens (indices on the grid): mostly malformed."""
    pieces = []
    for _ in range(rng.randint(0, max_pieces)):
        r = rng.random()
        if r < 0.35:
            pieces.append(" " + rng.choice(WORDS))
        elif r < 0.6:
            pieces.append(loc_token(rng.randrange(num_bins * num_bins)))
        elif r < 0.85 or not junk:
            pieces.append(rng.choice(TAGS))
        else:
            pieces.append(rng.choice(JUNK))
    return "".join(pieces)


def random_grounded_caption(rng: random.Random, num_bins: int = 32, max_entities: int = 4) -> str:
    """A well-formed grounded caption in the token form, sometimes with several boxes per phrase."""
    out = [GROUNDING] if rng.random() < 0.5 else []
    for _ in range(rng.randint(1, max_entities)):
        out.append("".join(" " + rng.choice(WORDS) for _ in range(rng.randint(0, 3))))
        phrase = "".join(" " + rng.choice(WORDS[:12]) for _ in range(rng.randint(1, 3)))
        pairs = [
            loc_token(rng.randrange(num_bins * num_bins)) + loc_token(rng.randrange(num_bins * num_bins))
            for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.85:
            out.append(f"{BOP}{phrase}{EOP}")
        out.append(f"{BOO}{DELIM.join(pairs)}{EOO}")
    out.append(rng.choice(["", ".", " in the snow."]))
    return "".join(out)


def random_box(rng: random.Random, exact_bins: int | None = None) -> tuple[float, float, float, float]:
    """A random normalised box; with `exact_bins`, corners often fall exactly on bin edges."""
    while True:
        v = [rng.random() for _ in range(4)]
        if exact_bins and rng.random() < 0.5:
            v = [rng.randint(0, exact_bins) / exact_bins for _ in range(4)]
        x1, x2 = sorted(v[:2])
        y1, y2 = sorted(v[2:])
        if x2 > x1 and y2 > y1:
            return x1, y1, x2, y2


def train_tiny_sentencepiece(out_dir: Path, vocab_size: int = 120, model_type: str = "unigram") -> Path:
    """Train a small SentencePiece model (XLM-R id layout: unk 0, bos 1, eos 2) on generated text; returns the .model path."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = WORDS + ["image", "photo", "snowman", "warming", "himself", "by", "an", "on", "table", "cat", "person"]
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)) + "\n")
    prefix = out_dir / "tiny_spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )
    return prefix.with_suffix(".model")


COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHAPES = ["circle", "square", "triangle"]


def generated_scene(rng: random.Random, size: int = 64, max_objects: int = 3):
    """A grey canvas with 1..max_objects non-overlapping coloured shapes, one caption and the GT objects.

    Returns (PIL image, caption, [(colour, shape, (x1, y1, x2, y2) pixels)]).
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    objs, used = [], set()
    for _ in range(rng.randint(1, max_objects)):
        for _try in range(50):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            s = rng.randint(size // 6, size // 3)
            x, y = rng.randint(0, size - s - 1), rng.randint(0, size - s - 1)
            box = (x, y, x + s, y + s)
            if (colour, shape) in used or any(not (box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]) for _, _, b in objs):
                continue
            used.add((colour, shape))
            if shape == "circle":
                draw.ellipse(box, fill=COLOURS[colour])
            elif shape == "square":
                draw.rectangle(box, fill=COLOURS[colour])
            else:
                draw.polygon([(x + s / 2, y), (x, y + s), (x + s, y + s)], fill=COLOURS[colour])
            objs.append((colour, shape, tuple(float(v) for v in box)))
            break
    phrases = [f"{rng.choice(['a', 'the'])} {c} {sh}" for c, sh, _ in objs]
    joiners = [" next to ", " and ", " with "]
    cap = rng.choice(["an image of ", "there is ", ""]) + phrases[0]
    for p in phrases[1:]:
        cap += rng.choice(joiners) + p
    return img, cap, objs


class SceneDetector:
    """A detector that reads the pixels of `generated_scene` images (no annotations): connected regions
    of each palette colour, classified by how much of their bounding box they fill (square ~1,
    circle ~0.79, triangle ~0.5). It follows the `kosmos2.grit.Detector` interface."""

    def __call__(self, sample, phrases):
        import numpy as np
        from PIL import Image
        from scipy import ndimage

        from kosmos2.grit import Detection

        with Image.open(sample.image) as im:
            a = np.asarray(im.convert("RGB")).astype(int)
        found = []
        for colour, rgb in COLOURS.items():
            lab, n = ndimage.label(np.abs(a - np.array(rgb)).sum(-1) < 60)
            for k, sl in enumerate(ndimage.find_objects(lab), start=1):
                ys, xs = sl
                h, w = ys.stop - ys.start, xs.stop - xs.start
                if h * w < 9:
                    continue
                fill = float((lab[sl] == k).mean())
                shape = "square" if fill > 0.9 else ("circle" if fill > 0.65 else "triangle")
                found.append((colour, shape, (float(xs.start), float(ys.start), float(xs.stop), float(ys.stop))))
        out = []
        for i, ph in enumerate(phrases):
            words = ph.lower().split()
            for colour, shape, box in found:
                if words[-1] == shape and colour in words:
                    out.append(Detection(i, box, 0.9))
        return out
