"""The mini reproduction's world, models and stages (card §10), all trained inside the run.

World: 16x16 RGB scenes, one entity (shape x colour, 24 identities) near the centre on one of
four backgrounds, caption "a {colour} {shape} on a {bg} background"; entity image = a 16x16
crop centred on the entity, on the scene background or on white.

S0  frozen text-to-image stand-in: a tiny text encoder T (8 x 64 context, stands for CLIP-text
    77 x 768) + a pixel-space diffusers ``UNet2DConditionModel`` (16x16 / 8x8, channels 32/64,
    cross-attention), trained on captions (10% empty = null, 10% "a thing on a {bg} background").
judge  small CNN classifying colour / shape / background (metric only).
S1  MLLM (the kosmos2 network in miniature: conv-stem vision encoder -> 17 visual tokens, causal
    Sub-LN decoder, interleaved images):
    next-token loss on crop -> "a {c} {s}", scene -> caption, and text-only captions.
S2  AlignerNet on text only (MLLM frozen): MSE to T(canonical caption) + reconstruction.
S3  compositional instruction tuning: "<s> [a {c} {s}]? <image>crop</image> on a {bg} background"
    -> the scene, diffusion loss through the frozen U-Net into the MLLM and M.
Evaluation rows (held-out identities unless noted): A T2I with the full caption, B T2I with
"a thing on a {bg} background", C after S2, D after S3, D_seen on identities seen in S3.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.layers.blocks import TransformerStack

from kosmos_g.losses import diffusion_loss, freeze_, module_hash
from kosmos_g.models.aligner import AlignerConfig, AlignerNet, aligner_losses
from kosmos_g.models.kosmos_g import KosmosGEncoder
from kosmos_g.resume import LoopCheckpoints

COLOURS = {"red": (1.0, 0.0, 0.0), "yellow": (1.0, 1.0, 0.0), "magenta": (1.0, 0.0, 1.0),
           "cyan": (0.0, 1.0, 1.0), "orange": (1.0, 0.5, 0.0), "black": (0.0, 0.0, 0.0)}
SHAPES = ("circle", "square", "triangle", "cross")
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "grey": (0.5, 0.5, 0.5), "blue": (0.15, 0.25, 0.75),
               "green": (0.1, 0.55, 0.2)}
COLOUR_NAMES = tuple(COLOURS)
BG_NAMES = tuple(BACKGROUNDS)
IDENTITIES = [(c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES))]  # 24
SIZE = 16
IMG_TOKENS = 17  # 4x4 visual tokens + CLS per image

SPECIALS = ("<pad>", "<s>", "</s>", "<image>", "</image>", "<img>")
WORDS = ("a", "thing", "on", "background", "photo", "of", "there", "is", "with", "in", "the", "middle", "and")
VOCAB = SPECIALS + WORDS + COLOUR_NAMES + SHAPES + BG_NAMES
TOK = {w: i for i, w in enumerate(VOCAB)}
PAD, BOS, EOS, IMG_OPEN, IMG_CLOSE, IMG_SLOT = (TOK[w] for w in SPECIALS)


# ---------------------------------------------------------------------------------------- world

def render(colour: torch.Tensor, shape: torch.Tensor, bg: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
           size: torch.Tensor, white_bg: torch.Tensor | None = None) -> torch.Tensor:
    """Images (B, 3, 16, 16) in [0, 1]; all arguments (B,) tensors (indices / pixel floats)."""
    b = colour.shape[0]
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    x = xs[None] - cx.view(b, 1, 1)
    y = ys[None] - cy.view(b, 1, 1)
    r = (size / 2).view(b, 1, 1)
    circle = x.pow(2) + y.pow(2) <= r.pow(2)
    square = (x.abs() <= 0.85 * r) & (y.abs() <= 0.85 * r)
    tri = (y >= -r) & (y <= r) & (x.abs() <= (y + r) / 2)
    cross = ((x.abs() <= 0.3 * r) & (y.abs() <= r)) | ((y.abs() <= 0.3 * r) & (x.abs() <= r))
    masks = torch.stack([circle, square, tri, cross], 1)  # B, 4, H, W
    mask = masks[torch.arange(b), shape].float().unsqueeze(1)
    col = torch.tensor(list(COLOURS.values()))[colour].view(b, 3, 1, 1)
    bgc = torch.tensor(list(BACKGROUNDS.values()))[bg].view(b, 3, 1, 1)
    if white_bg is not None:
        bgc = torch.where(white_bg.view(b, 1, 1, 1), torch.ones_like(bgc), bgc)
    return mask * col + (1 - mask) * bgc


@dataclass
class Scenes:
    colour: torch.Tensor
    shape: torch.Tensor
    bg: torch.Tensor
    image: torch.Tensor  # scene, [0, 1]
    crop: torch.Tensor  # entity image, [0, 1]
    crop_white: torch.Tensor  # bool: crop on white


def sample_scenes(n: int, g: torch.Generator, identities: list[tuple[int, int]] | None = None) -> Scenes:
    ids = identities or IDENTITIES
    k = torch.randint(0, len(ids), (n,), generator=g)
    colour = torch.tensor([ids[i][0] for i in k])
    shape = torch.tensor([ids[i][1] for i in k])
    bg = torch.randint(0, len(BACKGROUNDS), (n,), generator=g)
    size = torch.randint(8, 11, (n,), generator=g).float()
    jx, jy = (torch.randint(-2, 3, (n,), generator=g).float() for _ in range(2))
    image = render(colour, shape, bg, 8 + jx, 8 + jy, size)
    white = torch.rand(n, generator=g) < 0.5
    crop = render(colour, shape, bg, torch.full((n,), 8.0), torch.full((n,), 8.0), size, white)
    return Scenes(colour, shape, bg, image, crop, white)


def caption_words(c: int, s: int, b: int, template: int = 0) -> list[str]:
    cw, sw, bw = COLOUR_NAMES[c], SHAPES[s], BG_NAMES[b]
    t = [["a", cw, sw, "on", "a", bw, "background"],
         ["a", "photo", "of", "a", cw, sw, "on", "a", bw, "background"],
         ["there", "is", "a", cw, sw, "on", "a", bw, "background"],
         ["on", "a", bw, "background", "a", cw, sw]]
    return t[template]


def text_ids(words_list: list[list[str]], length: int) -> torch.Tensor:
    """`<s>` + words, right-padded with <pad> to ``length`` (S0's text encoder input)."""
    out = torch.full((len(words_list), length), PAD, dtype=torch.long)
    for i, w in enumerate(words_list):
        ids = [BOS] + [TOK[x] for x in w]
        out[i, : len(ids)] = torch.tensor(ids[:length])
    return out


# ----------------------------------------------------------------------------- S0: text encoder

class TinyTextEncoder(nn.Module):
    """Stands for CLIP-text: word embeddings + learned positions + Transformer blocks + final LN,
    all ``length`` positions returned (pads included, like CLIP padded to 77)."""

    def __init__(self, vocab: int = len(VOCAB), dim: int = 64, length: int = 8, depth: int = 2, heads: int = 4):
        super().__init__()
        self.length = length
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.blocks = TransformerStack(depth=depth, dim=dim, num_heads=heads, norm_layout="pre", final_norm=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.tok(ids) + self.pos[: ids.shape[1]], is_causal=False)


def tiny_unet(cross_dim: int = 64):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(24, 48), only_cross_attention=True,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=8,
    )


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


def sample_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         clip_sample=True, set_alpha_to_one=True)


# ------------------------------------------------------------------------------------ S1: MLLM

def mini_mllm() -> nn.Module:
    """S1's MLLM: a Kosmos-2 network (``kosmos2.models.kosmos2.Kosmos2Model``) in miniature: conv-stem
    vision encoder (16x16 -> 4x4 tokens + CLS, one pre-LN block, final LN, per-token L2 norm),
    identity connector (Linear 64 -> 96; 17 slots per image), causal Sub-LN decoder of 3 blocks at
    width 96 with embeddings x sqrt(96), sinusoidal positions and a tied head."""
    from kosmos2.models.kosmos2 import Kosmos2Model

    return Kosmos2Model(
        vocab_size=len(VOCAB), embed_dim=96, depth=3, num_heads=4, ffn_dim=384, max_positions=128,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, dropout=0.0, attn_drop=0.0,
        vision="conv_stem", img_size=SIZE, stem_stride=4, vision_dim=64, vision_depth=1, vision_heads=4,
        connector="identity",
    )


def interleave(segments_list: list[list], pad_to: int | None = None) -> dict:
    """Token batch from interleaved prompts: each a list of word lists / images (3, 16, 16).
    Each sequence starts with <s>; an image becomes <image> [16 slots] </image>."""
    rows, masks, images = [], [], []
    for segs in segments_list:
        ids, m = [BOS], [False]
        for s in segs:
            if isinstance(s, torch.Tensor):
                ids += [IMG_OPEN] + [IMG_SLOT] * IMG_TOKENS + [IMG_CLOSE]
                m += [False] + [True] * IMG_TOKENS + [False]
                images.append(s)
            else:
                ids += [TOK[w] for w in s]
                m += [False] * len(s)
        rows.append(ids)
        masks.append(m)
    n = max(pad_to or 0, max(len(r) for r in rows))
    input_ids = torch.full((len(rows), n), PAD, dtype=torch.long)
    pos_mask = torch.zeros(len(rows), n, dtype=torch.bool)
    attn = torch.zeros(len(rows), n, dtype=torch.long)
    for i, (r, m) in enumerate(zip(rows, masks)):
        input_ids[i, : len(r)] = torch.tensor(r)
        pos_mask[i, : len(m)] = torch.tensor(m)
        attn[i, : len(r)] = 1
    pixel_values = torch.stack(images) * 2 - 1 if images else None  # [-1, 1]
    return {"input_ids": input_ids, "image_embeds_position_mask": pos_mask, "attention_mask": attn,
            "pixel_values": pixel_values}


# ----------------------------------------------------------------------------------- judge CNN

class Judge(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(128, len(COLOURS)), nn.Linear(128, len(SHAPES)),
                                    nn.Linear(128, len(BACKGROUNDS))])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image features for similarity metrics (x in [0, 1])."""
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor):
        h = self.features(x)
        return [head(h) for head in self.heads]


# -------------------------------------------------------------------------------------- config

@dataclass
class MiniConfig:
    s0_steps: int = 3000
    s0_batch: int = 64
    s0_lr: float = 2e-3
    judge_steps: int = 400
    s1_steps: int = 800
    s1_batch: int = 32
    s1_lr: float = 2e-3
    s2_steps: int = 400
    s2_batch: int = 64
    s2_lr: float = 2e-3
    s3_steps: int = 1200
    s3_batch: int = 32
    s3_lr: float = 5e-4
    cfg_drop: float = 0.1
    eval_samples: int = 200
    ddim_steps: int = 20
    guidance: float = 1.0
    heldout: int = 6
    shared_seed: int = 1000  # S0 and judge are trained once with this seed and shared by all seeds
    log_every: int = 200


def _opt(params, lr):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def _lr(opt, step, total, base, warm=50):
    f = min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    for gp in opt.param_groups:
        gp["lr"] = base * max(f, 0.02)


# ------------------------------------------------------------------------------------ S0 + judge

def train_s0(cfg: MiniConfig, log=print, ckpt: LoopCheckpoints | None = None) -> dict:
    torch.manual_seed(cfg.shared_seed)
    g = torch.Generator().manual_seed(cfg.shared_seed)
    text, unet, sched = TinyTextEncoder(), tiny_unet(), train_scheduler()
    params = list(text.parameters()) + list(unet.parameters())
    opt = _opt(params, cfg.s0_lr)
    curve, t0 = [], time.time()
    start = ckpt.begin("s0", cfg.s0_steps, {"text": text, "unet": unet}, opt, g, curve) if ckpt else 0
    for step in range(start, cfg.s0_steps):
        sc = sample_scenes(cfg.s0_batch, g)
        u = torch.rand(cfg.s0_batch, generator=g)
        words = []
        for i in range(cfg.s0_batch):
            c, s, b = int(sc.colour[i]), int(sc.shape[i]), int(sc.bg[i])
            words.append([] if u[i] < 0.1 else (["a", "thing", "on", "a", BG_NAMES[b], "background"] if u[i] < 0.2
                                                 else caption_words(c, s, b)))
        cond = text(text_ids(words, text.length))
        _lr(opt, step, cfg.s0_steps, cfg.s0_lr)
        loss = diffusion_loss(unet, sched, sc.image * 2 - 1, cond, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.s0_steps - 1:
            curve.append([step, float(loss.detach())])
            log(f" S0 step {step} loss {float(loss.detach()):.4f} ({time.time() - t0:.0f}s)")
        if ckpt:
            ckpt.end_step(step)
    freeze_(text)
    freeze_(unet)
    return {"text": text, "unet": unet, "curve": curve, "time_s": time.time() - t0}


def train_judge(cfg: MiniConfig, log=print) -> tuple[Judge, dict]:
    torch.manual_seed(cfg.shared_seed + 1)
    g = torch.Generator().manual_seed(cfg.shared_seed + 1)
    judge = Judge()
    opt = _opt(judge.parameters(), 2e-3)
    for step in range(cfg.judge_steps):
        sc = sample_scenes(64, g)
        x = (sc.image + 0.05 * torch.randn(sc.image.shape, generator=g)).clamp(0, 1)
        out = judge(x)
        loss = sum(F.cross_entropy(o, y) for o, y in zip(out, (sc.colour, sc.shape, sc.bg)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    freeze_(judge)
    sc = sample_scenes(500, torch.Generator().manual_seed(cfg.shared_seed + 2))
    with torch.no_grad():
        out = judge(sc.image)
    acc = {k: float((o.argmax(-1) == y).float().mean()) for k, o, y in
           zip(("colour", "shape", "background"), out, (sc.colour, sc.shape, sc.bg))}
    log(f" judge clean accuracy {acc}")
    return judge, acc


# ---------------------------------------------------------------------------------------- S1-S3

def _s1_batch(n: int, g: torch.Generator) -> dict:
    sc = sample_scenes(n, g)
    kind = torch.randint(0, 3, (n,), generator=g)
    segs = []
    for i in range(n):
        c, s, b = int(sc.colour[i]), int(sc.shape[i]), int(sc.bg[i])
        if kind[i] == 0:
            segs.append([sc.crop[i], ["a", COLOUR_NAMES[c], SHAPES[s], "</s>"]])
        elif kind[i] == 1:
            segs.append([sc.image[i], caption_words(c, s, b) + ["</s>"]])
        else:
            segs.append([caption_words(c, s, b, int(torch.randint(0, 4, (1,), generator=g))) + ["</s>"]])
    return interleave(segs)


def train_s1(cfg: MiniConfig, seed: int, log=print, ckpt: LoopCheckpoints | None = None) -> tuple[nn.Module, list]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    mllm = mini_mllm()
    opt = _opt(mllm.parameters(), cfg.s1_lr)
    curve: list = []
    start = ckpt.begin("s1", cfg.s1_steps, {"mllm": mllm}, opt, g, curve) if ckpt else 0
    for step in range(start, cfg.s1_steps):
        bt = _s1_batch(cfg.s1_batch, g)
        logits = mllm(bt["pixel_values"], bt["input_ids"], bt["image_embeds_position_mask"], bt["attention_mask"])
        tgt = bt["input_ids"][:, 1:].clone()
        tgt[(tgt == PAD) | (tgt == IMG_SLOT) | (tgt == IMG_CLOSE)] = -100  # text tokens only
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        _lr(opt, step, cfg.s1_steps, cfg.s1_lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.s1_steps - 1:
            curve.append([step, float(loss.detach())])
            log(f" S1 step {step} loss {float(loss.detach()):.4f}")
        if ckpt:
            ckpt.end_step(step)
    return mllm, curve


def tiny_aligner() -> AlignerNet:
    return AlignerNet(AlignerConfig(mllm_dim=96, dim=64, num_heads=4, encoder_layers=1, decoder_layers=1,
                                    num_queries=8, max_positions=64, learned_positions=False))


def train_s2(cfg: MiniConfig, seed: int, mllm: nn.Module, text: TinyTextEncoder, log=print,
             ckpt: LoopCheckpoints | None = None) -> tuple[AlignerNet, list]:
    torch.manual_seed(seed + 10)
    g = torch.Generator().manual_seed(seed + 10)
    aligner = tiny_aligner()
    mllm.requires_grad_(False)
    opt = _opt(aligner.parameters(), cfg.s2_lr)
    curve: list = []
    start = ckpt.begin("s2", cfg.s2_steps, {"aligner": aligner}, opt, g, curve) if ckpt else 0
    for step in range(start, cfg.s2_steps):
        sc = sample_scenes(cfg.s2_batch, g)
        segs, canon = [], []
        for i in range(cfg.s2_batch):
            c, s, b = int(sc.colour[i]), int(sc.shape[i]), int(sc.bg[i])
            segs.append([caption_words(c, s, b, int(torch.randint(0, 4, (1,), generator=g)))])
            canon.append(caption_words(c, s, b))
        bt = interleave(segs)
        with torch.no_grad():
            states = mllm.forward_hidden(None, bt["input_ids"], None, bt["attention_mask"])
            target = text(text_ids(canon, text.length))
        out = aligner_losses(aligner, states, target, ~bt["attention_mask"].bool())
        _lr(opt, step, cfg.s2_steps, cfg.s2_lr)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.s2_steps - 1:
            curve.append([step, float(out["mse"].detach())])
            log(f" S2 step {step} mse {float(out['mse'].detach()):.4f} rec {float(out['rec'].detach()):.4f}")
        if ckpt:
            ckpt.end_step(step)
    mllm.requires_grad_(True)
    return aligner, curve


def s3_prompt(sc: Scenes, i: int, with_words: bool) -> list:
    c, s, b = int(sc.colour[i]), int(sc.shape[i]), int(sc.bg[i])
    pre = [["a", COLOUR_NAMES[c], SHAPES[s]]] if with_words else []
    return pre + [sc.crop[i], ["on", "a", BG_NAMES[b], "background"]]


def train_s3(cfg: MiniConfig, seed: int, enc: KosmosGEncoder, unet, seen: list, log=print,
             ckpt: LoopCheckpoints | None = None) -> list:
    torch.manual_seed(seed + 20)
    g = torch.Generator().manual_seed(seed + 20)
    sched = train_scheduler()
    enc.aligner.drop_reconstruction_()
    params = [p for p in enc.parameters() if p.requires_grad]
    opt = _opt(params, cfg.s3_lr)
    curve: list = []
    start = ckpt.begin("s3", cfg.s3_steps, {"encoder": enc}, opt, g, curve) if ckpt else 0
    for step in range(start, cfg.s3_steps):
        sc = sample_scenes(cfg.s3_batch, g, seen)
        words = torch.rand(cfg.s3_batch, generator=g) < 0.5
        bt = interleave([s3_prompt(sc, i, bool(words[i])) for i in range(cfg.s3_batch)])
        cond = enc(bt["input_ids"], bt["pixel_values"], bt["image_embeds_position_mask"], bt["attention_mask"])
        loss = diffusion_loss(unet, sched, sc.image * 2 - 1, cond, enc.null_condition(), cfg_drop=cfg.cfg_drop,
                              generator=g)
        _lr(opt, step, cfg.s3_steps, cfg.s3_lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.s3_steps - 1:
            curve.append([step, float(loss.detach())])
            log(f" S3 step {step} loss {float(loss.detach()):.4f}")
        if ckpt:
            ckpt.end_step(step)
    return curve


# ------------------------------------------------------------------------------------ sampling

@torch.no_grad()
def generate(unet, cond: torch.Tensor, null: torch.Tensor | None, steps: int, guidance: float,
             g: torch.Generator) -> torch.Tensor:
    """DDIM sampling in pixel space; returns images in [0, 1]."""
    sched = sample_scheduler()
    sched.set_timesteps(steps)
    x = torch.randn((cond.shape[0], 3, SIZE, SIZE), generator=g)
    for t in sched.timesteps:
        if guidance != 1.0 and null is not None:
            eps = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([null.expand_as(cond), cond])).sample
            e0, e1 = eps.chunk(2)
            eps = e0 + guidance * (e1 - e0)
        else:
            eps = unet(x, t, encoder_hidden_states=cond).sample
        x = sched.step(eps, t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2)


@torch.no_grad()
def judge_metrics(judge: Judge, images: torch.Tensor, sc: Scenes) -> dict:
    from kosmos_g.metrics import feature_cosine

    out = judge(images)
    col = out[0].argmax(-1) == sc.colour
    shp = out[1].argmax(-1) == sc.shape
    bg = out[2].argmax(-1) == sc.bg
    return {"subject": float((col & shp).float().mean()), "colour": float(col.float().mean()),
            "shape": float(shp.float().mean()), "background": float(bg.float().mean()),
            # DINO / CLIP-I-like: cosine of judge features, generated vs the reference entity image
            "image_sim": feature_cosine(judge.features, images, sc.crop),
            # same against the ground-truth scene
            "scene_sim": feature_cosine(judge.features, images, sc.image)}


def eval_rows(cfg: MiniConfig, seed: int, s0: dict, judge: Judge, enc: KosmosGEncoder | None, held: list,
              seen: list, rows: tuple[str, ...]) -> tuple[dict, dict]:
    """Metrics per row and the first images of each row (for the sample grid)."""
    text, unet = s0["text"], s0["unet"]
    res, imgs = {}, {}
    for row in rows:
        ids = seen if row == "D_seen" else held
        sc = sample_scenes(cfg.eval_samples, torch.Generator().manual_seed(seed * 7919 + 5), ids)
        g = torch.Generator().manual_seed(seed * 7919 + 11)
        null_t = text(text_ids([[]], text.length))
        with torch.no_grad():
            if row in ("A", "B"):
                words = [caption_words(int(sc.colour[i]), int(sc.shape[i]), int(sc.bg[i])) if row == "A" else
                         ["a", "thing", "on", "a", BG_NAMES[int(sc.bg[i])], "background"] for i in range(len(sc.bg))]
                cond, null = text(text_ids(words, text.length)), null_t
            else:
                enc.eval()
                bt = interleave([s3_prompt(sc, i, False) for i in range(len(sc.bg))])
                cond = enc(bt["input_ids"], bt["pixel_values"], bt["image_embeds_position_mask"], bt["attention_mask"])
                null = enc.null_condition()
                enc.train()
        x = generate(unet, cond, null, cfg.ddim_steps, cfg.guidance, g)
        res[row] = judge_metrics(judge, x, sc)
        imgs[row] = (x[:8], sc.crop[:8], sc.image[:8])
    return res, imgs


def run_seed(cfg: MiniConfig, seed: int, s0: dict, judge: Judge, log=print) -> dict:
    """S1-S3 and all evaluation rows for one seed, on the shared frozen S0."""
    times = {}
    g = torch.Generator().manual_seed(seed + 100)
    perm = torch.randperm(len(IDENTITIES), generator=g).tolist()
    held = [IDENTITIES[i] for i in perm[: cfg.heldout]]
    seen = [IDENTITIES[i] for i in perm[cfg.heldout:]]
    h0 = {"unet": module_hash(s0["unet"]), "text": module_hash(s0["text"])}
    t = time.time()
    mllm, c1 = train_s1(cfg, seed, log)
    times["S1"] = time.time() - t
    t = time.time()
    aligner, c2 = train_s2(cfg, seed, mllm, s0["text"], log)
    times["S2"] = time.time() - t
    enc = KosmosGEncoder(mllm, aligner, bos_id=BOS)
    t = time.time()
    res, imgs = eval_rows(cfg, seed, s0, judge, enc, held, seen, ("A", "B", "C"))
    times["eval_ABC"] = time.time() - t
    h_after_s2 = {"unet": module_hash(s0["unet"]), "text": module_hash(s0["text"])}
    t = time.time()
    c3 = train_s3(cfg, seed, enc, s0["unet"], seen, log)
    times["S3"] = time.time() - t
    t = time.time()
    r2, i2 = eval_rows(cfg, seed, s0, judge, enc, held, seen, ("D", "D_seen"))
    times["eval_D"] = time.time() - t
    res.update(r2)
    imgs.update(i2)
    h1 = {"unet": module_hash(s0["unet"]), "text": module_hash(s0["text"])}
    unchanged = h0 == h_after_s2 == h1
    for k, v in res.items():
        log(f" row {k}: " + " ".join(f"{m} {x:.3f}" for m, x in v.items()))
    return {"rows": res, "images": imgs, "unet_unchanged": unchanged, "unet_hash": h0["unet"], "held_out": held,
            "curves": {"S1 LM loss": c1, "S2 alignment MSE": c2, "S3 diffusion loss": c3}, "times_s": times}
