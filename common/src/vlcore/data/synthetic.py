"""Seeded synthetic scenes for vision-language minis: coloured shapes with boxes, masks, captions, grounding and QA.

Every scene is a pure function of (seed, config): the same seed gives the same image,
objects, caption and questions. Objects do not overlap (each keeps its whole mask, so
a box is the tight box of its mask and relations like "left of" are unambiguous).
Boxes are xyxy in pixel-edge coordinates: a pixel (r, c) covers [c, c + 1) x [r, r + 1).
Backgrounds are grey (plain or textured) so that an object's colour is never in question.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 205, 20),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
}
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUNDS: tuple[str, ...] = ("plain", "textured", "mixed")
LABEL_BY: tuple[str, ...] = ("shape", "color", "shape_color")
_OPPOSITE = {
    "to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above",
}


@dataclass(frozen=True)
class SceneConfig:
    """What a scene may contain. Sizes are fractions of the image side."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(COLORS)
    small: tuple[float, float] = (0.14, 0.22)
    large: tuple[float, float] = (0.28, 0.38)
    min_object_px: int = 6
    background: str = "mixed"  # plain, textured, or either at random
    label_by: str = "shape"  # what the detection label counts: shape, color or shape_color
    caption_sizes: bool = False  # "a small red circle" instead of "a red circle"
    max_tries: int = 40  # placement attempts per object before giving up on it

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [16, 1024], got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        bad = [s for s in self.shapes if s not in SHAPES] + [c for c in self.colors if c not in COLORS]
        if bad or not self.shapes or not self.colors:
            raise ValueError(f"unknown or empty shapes/colors {bad}; known: {SHAPES}, {tuple(COLORS)}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if self.label_by not in LABEL_BY:
            raise ValueError(f"label_by must be one of {LABEL_BY}, got {self.label_by!r}")
        for name in ("small", "large"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi < 1:
                raise ValueError(f"{name} must be 0 < lo <= hi < 1, got {(lo, hi)}")

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.label_by == "shape":
            return self.shapes
        if self.label_by == "color":
            return self.colors
        return tuple(f"{c} {s}" for c in self.colors for s in self.shapes)

    def label_of(self, *, shape: str, color: str) -> int:
        if self.label_by == "shape":
            return self.shapes.index(shape)
        if self.label_by == "color":
            return self.colors.index(color)
        return self.colors.index(color) * len(self.shapes) + self.shapes.index(shape)


@dataclass(frozen=True, eq=False)
class SceneObject:
    shape: str
    color: str
    size: str  # small or large
    box: tuple[float, float, float, float]  # xyxy, tight around the mask
    label: int
    mask: np.ndarray = field(repr=False)  # H, W bool

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def phrase(self, *, with_size: bool = False) -> str:
        words = f"{self.size} {self.color} {self.shape}" if with_size else f"{self.color} {self.shape}"
        return f"{_article(words)} {words}"


@dataclass(frozen=True)
class GroundedPhrase:
    text: str
    span: tuple[int, int]  # characters [start, end) of the caption
    box: tuple[float, float, float, float]  # xyxy
    object_index: int


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    kind: str  # count, color, shape, exist, position


@dataclass(frozen=True, eq=False)
class Scene:
    image: np.ndarray = field(repr=False)  # H, W, 3 uint8
    objects: tuple[SceneObject, ...]
    caption: str
    phrases: tuple[GroundedPhrase, ...]
    qa: tuple[QAPair, ...]
    class_names: tuple[str, ...]

    @property
    def boxes(self) -> np.ndarray:
        return np.array([o.box for o in self.objects], dtype=np.float32).reshape(-1, 4)  # N, 4

    @property
    def labels(self) -> np.ndarray:
        return np.array([o.label for o in self.objects], dtype=np.int64)  # N

    @property
    def masks(self) -> np.ndarray:
        h, w = self.image.shape[:2]
        return np.stack([o.mask for o in self.objects]) if self.objects else np.zeros((0, h, w), bool)  # N, H, W

    def to_sample(self) -> dict[str, Any]:
        """Tensors and plain python for a DataLoader: image float32 # 3, H, W in [0, 1], boxes, labels, masks."""
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self.image.transpose(2, 0, 1))).float().div_(255.0),
            "boxes": torch.from_numpy(self.boxes),
            "labels": torch.from_numpy(self.labels),
            "masks": torch.from_numpy(self.masks),
            "caption": self.caption,
            "phrases": [
                {"text": p.text, "span": p.span, "box": p.box, "object_index": p.object_index} for p in self.phrases
            ],
            "qa": [{"question": q.question, "answer": q.answer, "kind": q.kind} for q in self.qa],
        }


# --- drawing ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _shape_mask(shape: str, side: int) -> np.ndarray:
    """bool # side, side with the shape filling the square as far as its form allows (cached, read-only)."""
    im = Image.new("L", (side, side), 0)
    d = ImageDraw.Draw(im)
    e = side - 1
    if shape == "circle":
        d.ellipse([0, 0, e, e], fill=1)
    elif shape == "square":
        d.rectangle([0, 0, e, e], fill=1)
    elif shape == "triangle":
        d.polygon([(e / 2, 0), (e, e), (0, e)], fill=1)
    elif shape == "star":
        c, r_out = e / 2, e / 2
        r_in = 0.45 * r_out
        pts = []
        for k in range(10):
            r = r_out if k % 2 == 0 else r_in
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((c + r * math.cos(a), c + r * math.sin(a)))
        d.polygon(pts, fill=1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    m = np.array(im, dtype=bool)
    m.flags.writeable = False
    return m


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """Grey background # H, W, 3 uint8: plain or with a low-contrast texture."""
    if kind == "mixed":
        kind = "plain" if rng.random() < 0.5 else "textured"
    light = rng.random() < 0.5
    level = float(rng.uniform(170, 235) if light else rng.uniform(25, 85))
    if kind == "plain":
        g = np.full((size, size), level, dtype=np.float32)
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        pattern = int(rng.integers(3))
        if pattern == 0:  # noise
            g = level + rng.normal(0.0, 10.0, (size, size)).astype(np.float32)
        elif pattern == 1:  # stripes at a random angle
            a, period = rng.uniform(0, math.pi), rng.uniform(4, 12)
            g = level + 14.0 * np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period)
        else:  # checkerboard
            cell = int(rng.integers(3, 9))
            g = level + 12.0 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
    g = np.clip(np.rint(g), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where a is relative to b, along the axis on which they are further apart."""
    (ax, ay), (bx, by) = a.center, b.center
    if abs(ax - bx) >= abs(ay - by):
        return "to the left of" if ax < bx else "to the right of"
    return "above" if ay < by else "below"


def _article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def _plural(shape: str) -> str:
    return shape + "s"


# --- scene ------------------------------------------------------------------------------------


def _place_objects(rng: np.random.Generator, cfg: SceneConfig) -> list[tuple[str, str, str, int, int, int]]:
    """(shape, color, size, side, x0, y0) of non-overlapping squares, one pixel apart."""
    n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    S = cfg.image_size
    placed: list[tuple[str, str, str, int, int, int]] = []
    for _ in range(n_target):
        shape = cfg.shapes[int(rng.integers(len(cfg.shapes)))]
        color = cfg.colors[int(rng.integers(len(cfg.colors)))]
        size = SIZES[int(rng.integers(2))]
        lo, hi = cfg.small if size == "small" else cfg.large
        side = int(round(rng.uniform(lo, hi) * S))
        side = min(max(side, cfg.min_object_px), S)
        for _ in range(cfg.max_tries):
            x0, y0 = int(rng.integers(0, S - side + 1)), int(rng.integers(0, S - side + 1))
            if all(
                x0 + side + 1 <= px or px + ps + 1 <= x0 or y0 + side + 1 <= py or py + ps + 1 <= y0
                for (_, _, _, ps, px, py) in placed
            ):
                placed.append((shape, color, size, side, x0, y0))
                break
    return placed


def _caption(objects: Sequence[SceneObject], *, with_size: bool) -> tuple[str, list[GroundedPhrase]]:
    """Objects two by two: "a red circle to the left of a blue square and a green star"."""
    parts: list[str] = []
    phrases: list[GroundedPhrase] = []
    pos = 0

    def add(text: str, obj_index: int | None = None) -> None:
        nonlocal pos
        if obj_index is not None:
            phrases.append(GroundedPhrase(text, (pos, pos + len(text)), objects[obj_index].box, obj_index))
        parts.append(text)
        pos += len(text)

    for i in range(0, len(objects), 2):
        if i:
            add(" and ")
        add(objects[i].phrase(with_size=with_size), i)
        if i + 1 < len(objects):
            add(f" {_relation(objects[i], objects[i + 1])} ")
            add(objects[i + 1].phrase(with_size=with_size), i + 1)
    return "".join(parts), phrases


def _questions(rng: np.random.Generator, objects: Sequence[SceneObject], cfg: SceneConfig) -> list[QAPair]:
    qa = [QAPair("How many objects are there?", str(len(objects)), "count")]
    shapes = [o.shape for o in objects]
    colors = [o.color for o in objects]
    for s in cfg.shapes:
        qa.append(QAPair(f"How many {_plural(s)} are there?", str(shapes.count(s)), "count"))
    for c in sorted(set(colors), key=cfg.colors.index):
        qa.append(QAPair(f"How many {c} objects are there?", str(colors.count(c)), "count"))
    for o in objects:
        if shapes.count(o.shape) == 1:
            qa.append(QAPair(f"What color is the {o.shape}?", o.color, "color"))
        if colors.count(o.color) == 1:
            qa.append(QAPair(f"What shape is the {o.color} object?", o.shape, "shape"))
    present = {(o.color, o.shape) for o in objects}
    c, s = sorted(present)[int(rng.integers(len(present)))]
    qa.append(QAPair(f"Is there {_article(c)} {c} {s}?", "yes", "exist"))
    absent = [(c, s) for c in cfg.colors for s in cfg.shapes if (c, s) not in present]
    if absent:
        c, s = absent[int(rng.integers(len(absent)))]
        qa.append(QAPair(f"Is there {_article(c)} {c} {s}?", "no", "exist"))
    unique = [o for o in objects if sum(1 for p in objects if (p.color, p.shape) == (o.color, o.shape)) == 1]
    half = cfg.image_size / 2
    for o in unique:
        cx = o.center[0]
        if abs(cx - half) >= 1.0:
            side = "left" if cx < half else "right"
            qa.append(QAPair(f"Is the {o.color} {o.shape} on the left or the right of the image?", side, "position"))
    for a, b in zip(unique[0::2], unique[1::2]):
        rel = _relation(a, b)
        ask_true = bool(rng.random() < 0.5)
        asked = rel if ask_true else _OPPOSITE[rel]
        question = f"Is the {a.color} {a.shape} {asked} the {b.color} {b.shape}?"
        qa.append(QAPair(question, "yes" if ask_true else "no", "position"))
    return qa


def generate_scene(*, seed: int | Sequence[int] | np.random.Generator = 0, config: SceneConfig | None = None) -> Scene:
    """One scene, fully determined by `seed` (an int, a sequence of ints, or a numpy Generator to draw from)."""
    cfg = config or SceneConfig()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    S = cfg.image_size
    image = _background(rng, S, cfg.background)
    objects: list[SceneObject] = []
    for shape, color, size, side, x0, y0 in _place_objects(rng, cfg):
        local = _shape_mask(shape, side)  # side, side
        mask = np.zeros((S, S), dtype=bool)
        mask[y0 : y0 + side, x0 : x0 + side] = local
        image[y0 : y0 + side, x0 : x0 + side][local] = COLORS[color]
        rows, cols = np.flatnonzero(local.any(1)), np.flatnonzero(local.any(0))
        box = (float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1))
        objects.append(SceneObject(shape, color, size, box, cfg.label_of(shape=shape, color=color), mask))
    caption, phrases = _caption(objects, with_size=cfg.caption_sizes)
    qa = _questions(rng, objects, cfg)
    return Scene(image, tuple(objects), caption, tuple(phrases), tuple(qa), cfg.class_names)


class SyntheticScenes(Dataset):
    """`num_scenes` scenes; scene i is generated from (seed, i), so any access order gives the same data."""

    def __init__(self, *, num_scenes: int, seed: int = 0, config: SceneConfig | None = None) -> None:
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        self.num_scenes = num_scenes
        self.seed = seed
        self.config = config or SceneConfig()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.class_names

    def __len__(self) -> int:
        return self.num_scenes

    def scene(self, i: int) -> Scene:
        if not 0 <= i < self.num_scenes:
            raise IndexError(f"scene {i} of {self.num_scenes}")
        return generate_scene(seed=(self.seed, i), config=self.config)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.scene(i).to_sample()


def collate_scenes(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack images (all scenes share one size); keep the per-scene objects, captions and QA as lists."""
    out: dict[str, Any] = {"image": torch.stack([b["image"] for b in batch])}  # B, 3, H, W
    for k in batch[0]:
        if k != "image":
            out[k] = [b[k] for b in batch]
    return out
