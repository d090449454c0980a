"""The mini reproduction's world: generated shape scenes, grounded captions, a tiny Kosmos-2,
its training loop and the REC / phrase-grounding evaluation (card §11).

* Scenes: 32 x 32 RGB, grey background, ``min_objects``..``max_objects`` non-overlapping
  objects, shape in {circle, square, triangle}, colour in {red, green, blue, yellow}, size
  7-12 px, at most one object per (colour, shape). Two colour-shape pairs (green triangle,
  yellow circle) never appear in training (compositional hold-out).
* Grounded caption: ``<s> <image> [slots] </image> <grounding> an image of <phrase> a red
  circle </phrase> <object> <loc_ul> <loc_lr> </object> next to ... </s>``; boxes quantised on
  P = 16 bins (2 px, 2 x 2 bins per 4-px visual token) with ``kosmos2.grounding``.
* Model: ``kosmos2_mini_convstem_32`` (conv stem, no resampler) with location-token
  embeddings initialised from 2-D sin-cos features of their bin centres.
* REC query: ``... </image> <grounding> <phrase> the red circle </phrase>`` -> greedy decode 4
  tokens; a hit needs ``<object> loc loc`` and IoU >= 0.5 with the target.
* Phrase grounding: the held-out scene's caption, teacher-forced up to each ``</phrase>``; the
  decoded box must match that phrase's object (recall@1: greedy emits one box).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from kosmos2.grounding import box_to_tokens, tokens_to_box
from kosmos2.models import build_model
from kosmos2.models.kosmos2 import Kosmos2Model

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.9, 0.1)}
HELD_OUT = (("green", "triangle"), ("yellow", "circle"))
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<image>", "</image>", "<grounding>", "<phrase>", "</phrase>",
            "<object>", "</object>")
WORDS = ("a", "the", "an", "image", "of", "there", "is", "and", "next", "to", "with") + tuple(COLOURS) + SHAPES
JOINERS = (("and",), ("next", "to"), ("with",))
PREFIXES = (("an", "image", "of"), ("there", "is"))


class Vocab:
    """Special tokens, words and ``P * P`` location tokens ``<loc_i>`` (ids after the words)."""

    def __init__(self, num_bins: int = 16) -> None:
        self.num_bins = num_bins
        self.tokens = list(SPECIALS) + list(WORDS) + [f"<loc_{i}>" for i in range(num_bins * num_bins)]
        self.id = {t: i for i, t in enumerate(self.tokens)}
        self.loc0 = len(SPECIALS) + len(WORDS)

    def __len__(self) -> int:
        return len(self.tokens)

    def __call__(self, words) -> list[int]:
        return [self.id[w] for w in words]

    def loc(self, index: int) -> int:
        return self.loc0 + index

    def is_loc(self, token_id: int) -> bool:
        return self.loc0 <= token_id < self.loc0 + self.num_bins**2


@dataclass(frozen=True)
class MiniConfig:
    """Everything the mini reproduction varies; the defaults are the full run."""

    steps: int = 2500
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    decay_frac: float = 0.2  # linear decay to 0 over the last fraction of the steps
    weight_decay: float = 0.01
    clip_grad: float = 2.0
    min_objects: int = 1
    max_objects: int = 3
    eval_min_objects: int = 2
    eval_scenes: int = 300
    num_bins: int = 16
    img_size: int = 32
    model: str = "kosmos2_mini_convstem_32"
    model_overrides: dict = field(default_factory=dict)
    loc_init: str = "sincos"  # "sincos" | "random"
    eval_every: int = 500
    threads: int = 2


# ---- scenes -----------------------------------------------------------------------------------
@dataclass
class Obj:
    colour: str
    shape: str
    box: tuple[float, float, float, float]  # normalised xyxy


def _draw(img: np.ndarray, shape: str, colour, x0: int, y0: int, s: int) -> None:
    yy, xx = np.mgrid[0:s, 0:s]
    if shape == "square":
        m = np.ones((s, s), bool)
    elif shape == "circle":
        c = (s - 1) / 2
        m = (xx - c) ** 2 + (yy - c) ** 2 <= (s / 2) ** 2
    else:  # upward triangle filling the box
        m = np.abs(xx - (s - 1) / 2) <= (yy + 1) / 2
    img[y0 : y0 + s, x0 : x0 + s][m] = colour


def make_scene(rng: np.random.Generator, n_objects: int, *, size: int = 32, allow_held_out: bool = False,
               require: tuple[str, str] | None = None) -> tuple[np.ndarray, list[Obj]]:
    """One scene: (3, H, W) float32 image in [0, 1] and its objects (boxes normalised)."""
    img = np.full((size, size, 3), 0.5, np.float32)
    pairs = [(c, s) for c in COLOURS for s in SHAPES if allow_held_out or (c, s) not in HELD_OUT]
    objs: list[Obj] = []
    taken: list[tuple[int, int, int, int]] = []
    chosen: list[tuple[str, str]] = []
    if require is not None:
        chosen.append(require)
    others = [p for p in pairs if p != require]
    rng.shuffle(others)
    chosen += others[: n_objects - len(chosen)]
    for colour, shape in chosen:
        for _ in range(100):
            s = int(rng.integers(7, 13))
            x0, y0 = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
            if all(x0 + s <= a or a + w <= x0 or y0 + s <= b or b + w <= y0 for a, b, w, _ in taken):
                break
        else:
            continue
        taken.append((x0, y0, s, s))
        _draw(img, shape, COLOURS[colour], x0, y0, s)
        objs.append(Obj(colour, shape, (x0 / size, y0 / size, (x0 + s) / size, (y0 + s) / size)))
    return img.transpose(2, 0, 1).copy(), objs


def caption_tokens(vocab: Vocab, objs: list[Obj], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Grounded caption after ``</image>`` (``<grounding>`` ... ``</s>``) and, per object, the
    index just after its ``</phrase>`` (where the box starts)."""
    out = ["<grounding>"] + list(PREFIXES[int(rng.integers(len(PREFIXES)))])
    ids = vocab(out)
    box_at = []
    for j, o in enumerate(objs):
        if j:
            ids += vocab(JOINERS[int(rng.integers(len(JOINERS)))])
        det = "a" if rng.random() < 0.5 else "the"
        ids += vocab(["<phrase>", det, o.colour, o.shape, "</phrase>"])
        box_at.append(len(ids))
        ul, lr = box_to_tokens(o.box, vocab.num_bins)
        ids += [vocab.id["<object>"], vocab.loc(ul), vocab.loc(lr), vocab.id["</object>"]]
    ids.append(vocab.id["</s>"])
    return ids, box_at


def image_prefix(vocab: Vocab, slots: int) -> list[int]:
    return [vocab.id["<s>"], vocab.id["<image>"]] + [vocab.id["<image>"]] * slots + [vocab.id["</image>"]]


def make_batch(vocab: Vocab, rng: np.random.Generator, cfg: MiniConfig, slots: int):
    """Training batch: pixel_values, input_ids (right-padded), slot mask, loss targets (-100 before </image>)."""
    imgs, seqs = [], []
    for _ in range(cfg.batch_size):
        img, objs = make_scene(rng, int(rng.integers(cfg.min_objects, cfg.max_objects + 1)), size=cfg.img_size)
        cap, _ = caption_tokens(vocab, objs, rng)
        imgs.append(img)
        seqs.append(image_prefix(vocab, slots) + cap)
    return _pack(vocab, imgs, seqs, slots)


def _pack(vocab: Vocab, imgs, seqs, slots: int):
    T = max(len(s) for s in seqs)
    pad = vocab.id["<pad>"]
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    mask = torch.zeros_like(ids)
    mask[:, 2 : 2 + slots] = 1
    labels = ids[:, 1:].clone()
    labels[:, : 1 + slots] = -100  # predict from </image> on (card §6.1)
    labels[labels == pad] = -100
    return torch.from_numpy(np.stack(imgs)), ids, mask, labels


# ---- model --------------------------------------------------------------------------------------
def init_location_embeddings(model: Kosmos2Model, vocab: Vocab) -> None:
    """Location-token rows <- 2-D sin-cos features of their bin centres, scaled to the embedding std."""
    from vlcore.layers import sincos_2d_pos_embed

    P, D = vocab.num_bins, model.cfg.embed_dim
    table = sincos_2d_pos_embed(D, P)  # P*P, D, row-major (y, x) like the token index
    w = model.embed_tokens.weight
    with torch.no_grad():
        table = table / table.std() * w.std()
        w[vocab.loc0 : vocab.loc0 + P * P] = table.to(w.dtype)


def build_mini_model(cfg: MiniConfig, vocab: Vocab, seed: int) -> Kosmos2Model:
    torch.manual_seed(seed)
    model = build_model(cfg.model, vocab_size=len(vocab), img_size=cfg.img_size, **cfg.model_overrides)
    if cfg.loc_init == "sincos":
        init_location_embeddings(model, vocab)
    return model


def lr_at(step: int, cfg: MiniConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    start = int(cfg.steps * (1 - cfg.decay_frac))
    if step >= start:
        return cfg.lr * max(0.0, (cfg.steps - step) / max(1, cfg.steps - start))
    return cfg.lr


def train_mini(cfg: MiniConfig, seed: int, *, blind: bool = False, eval_fn=None, log=print) -> tuple[Kosmos2Model, dict]:
    """Train one model; ``blind`` zeroes the image vectors (trains on the same captions)."""
    torch.set_num_threads(cfg.threads)
    vocab = Vocab(cfg.num_bins)
    model = build_mini_model(cfg, vocab, seed)
    slots = model.num_image_tokens
    rng = np.random.default_rng(10_000 + seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98),
    )
    curve, t0 = [], time.time()
    model.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        px, ids, mask, labels = make_batch(vocab, rng, cfg, slots)
        img = model.encode_images(px)
        if blind:
            img = torch.zeros_like(img)
        logits = model.logits(model.forward_hidden(None, ids[:, :-1], mask[:, :-1], image_embeds=img))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            row = {"step": step + 1, "loss": loss.item(), "time_s": round(time.time() - t0, 1)}
            if eval_fn is not None and step + 1 < cfg.steps:
                model.eval()
                row.update(eval_fn(model, blind=blind, quick=True))
                model.train()
            curve.append(row)
            log(f"  step {step + 1}/{cfg.steps} {row}")
    model.eval()
    return model, {"curve": curve, "train_s": round(time.time() - t0, 1)}


# ---- evaluation ----------------------------------------------------------------------------------
def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class EvalSet:
    images: torch.Tensor  # N, 3, H, W
    scenes: list[list[Obj]]
    target: list[int]  # object index referred to in scene i
    held_out: list[bool]  # target is a held-out colour-shape pair


def make_eval_set(cfg: MiniConfig, seed: int, n: int | None = None) -> EvalSet:
    """Held-out scenes (own RNG stream) with 2+ objects; half the queries target a held-out pair."""
    rng = np.random.default_rng(90_000 + seed)
    n = n or cfg.eval_scenes
    imgs, scenes, target, held = [], [], [], []
    for i in range(n):
        k = int(rng.integers(cfg.eval_min_objects, cfg.max_objects + 1))
        want_held = i % 2 == 1
        require = HELD_OUT[int(rng.integers(len(HELD_OUT)))] if want_held else None
        img, objs = make_scene(rng, k, size=cfg.img_size, allow_held_out=want_held, require=require)
        if len(objs) < 2:
            continue
        if want_held:
            t = next(j for j, o in enumerate(objs) if (o.colour, o.shape) == require)
        else:
            seen = [j for j, o in enumerate(objs) if (o.colour, o.shape) not in HELD_OUT]
            t = int(rng.choice(seen))
        imgs.append(img)
        scenes.append(objs)
        target.append(t)
        held.append(want_held)
    return EvalSet(torch.from_numpy(np.stack(imgs)), scenes, target, held)


def _decode_box(vocab: Vocab, toks: list[int]):
    if len(toks) >= 3 and toks[0] == vocab.id["<object>"] and vocab.is_loc(toks[1]) and vocab.is_loc(toks[2]):
        return tokens_to_box(toks[1] - vocab.loc0, toks[2] - vocab.loc0, vocab.num_bins)
    return None


def _left_pad(vocab: Vocab, seqs: list[list[int]], slots: int):
    T = max(len(s) for s in seqs)
    pad = vocab.id["<pad>"]
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s)
        mask[i, T - len(s) + 2 : T - len(s) + 2 + slots] = 1
    return ids, mask, ids.ne(pad).long()


@torch.no_grad()
def _decode_boxes(model, vocab, images, prompts, *, blind: bool, batch: int = 128):
    slots = model.num_image_tokens
    out = []
    for s in range(0, len(prompts), batch):
        px = images[s : s + batch]
        img = model.encode_images(px)
        if blind:
            img = torch.zeros_like(img)
        ids, mask, att = _left_pad(vocab, prompts[s : s + batch], slots)
        gen = model.generate(None, ids, mask, att, image_embeds=img, max_new_tokens=3, eos_token_id=-1)
        for row in gen[:, ids.shape[1]:].tolist():
            out.append(_decode_box(vocab, row))
    return out


def evaluate_rec(model: Kosmos2Model, ev: EvalSet, cfg: MiniConfig, *, blind: bool = False) -> dict:
    """REC accuracy @ IoU 0.5 on seen / held-out targets, valid-output rate, phrase-grounding R@1."""
    vocab = Vocab(cfg.num_bins)
    slots = model.num_image_tokens
    prompts = []
    for objs, t in zip(ev.scenes, ev.target):
        o = objs[t]
        prompts.append(image_prefix(vocab, slots) + vocab(["<grounding>", "<phrase>", "the", o.colour, o.shape, "</phrase>"]))
    boxes = _decode_boxes(model, vocab, ev.images, prompts, blind=blind)
    hits = np.array([b is not None and iou(b, objs[t].box) >= 0.5 for b, objs, t in zip(boxes, ev.scenes, ev.target)])
    held = np.array(ev.held_out)
    # phrase grounding: teacher-forced caption of the scene up to each </phrase>
    rng = np.random.default_rng(123)
    pg_prompts, pg_imgs, pg_gt = [], [], []
    for i, objs in enumerate(ev.scenes):
        if held[i]:
            continue
        cap, box_at = caption_tokens(vocab, objs, rng)
        for j, at in enumerate(box_at):
            pg_prompts.append(image_prefix(vocab, slots) + cap[:at])
            pg_imgs.append(i)
            pg_gt.append(objs[j].box)
    pg_boxes = _decode_boxes(model, vocab, ev.images[pg_imgs], pg_prompts, blind=blind)
    pg_hits = [b is not None and iou(b, g) >= 0.5 for b, g in zip(pg_boxes, pg_gt)]
    return {
        "rec_seen": float(hits[~held].mean()),
        "rec_held_out": float(hits[held].mean()),
        "rec_all": float(hits.mean()),
        "valid": float(np.mean([b is not None for b in boxes])),
        "phrase_r1": float(np.mean(pg_hits)),
        "n_seen": int((~held).sum()),
        "n_held_out": int(held.sum()),
    }


def reference_lines(ev: EvalSet, cfg: MiniConfig, seed: int) -> dict:
    """Quantisation oracle, random object (expected value), best constant box (fit on training scenes)."""
    held = np.array(ev.held_out)
    oracle = []
    rand = []
    for objs, t in zip(ev.scenes, ev.target):
        ul, lr = box_to_tokens(objs[t].box, cfg.num_bins)
        oracle.append(iou(tokens_to_box(ul, lr, cfg.num_bins), objs[t].box) >= 0.5)
        rand.append(np.mean([iou(o.box, objs[t].box) >= 0.5 for o in objs]))
    # best constant box: the candidate (any decodable token pair) that hits most training targets
    rng = np.random.default_rng(50_000 + seed)
    train_boxes = []
    for _ in range(400):
        _, objs = make_scene(rng, int(rng.integers(cfg.min_objects, cfg.max_objects + 1)), size=cfg.img_size)
        train_boxes += [o.box for o in objs]
    P = cfg.num_bins
    cands = []
    for uy in range(0, P, 1):
        for ux in range(0, P, 1):
            for s in range(3, 7):
                if ux + s <= P and uy + s <= P:
                    cands.append(tokens_to_box(uy * P + ux, (uy + s - 1) * P + ux + s - 1, P))
    tb = np.array(train_boxes)
    best, best_hits = None, -1
    for c in cands:
        h = sum(iou(c, b) >= 0.5 for b in tb)
        if h > best_hits:
            best, best_hits = c, h
    const = np.array([iou(best, objs[t].box) >= 0.5 for objs, t in zip(ev.scenes, ev.target)])
    return {
        "oracle": float(np.mean(oracle)),
        "random_object_seen": float(np.mean(np.array(rand)[~held])),
        "random_object_held_out": float(np.mean(np.array(rand)[held])),
        "constant_box_seen": float(const[~held].mean()),
        "constant_box_held_out": float(const[held].mean()),
        "constant_box": [round(v, 4) for v in best],
    }
