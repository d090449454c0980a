"""The BEiT v2 pipeline in miniature, on 32x32 images, for the CPU reproduction.

One seed runs, in order:

1. a semantic teacher: a small CNN trained with labels on a labelled split that the
   probe never uses (the stand-in for CLIP, which learnt its semantics from other data);
   its 4x4 feature map (one vector per 8x8 patch) is the per-patch target, like CLIP's patch tokens;
2. two tokenizers of identical architecture (``vlcore.tokenizers.VQKD``: ViT encoder,
   l2-normalised EMA codebook with k-means init, ViT decoder, cosine loss + commitment):
   VQ-KD regresses the teacher's patch features; the pixel tokenizer regresses each
   patch's normalised pixels (a pixel-level VQ tokenizer, the kind BEiT v1 used);
3. three students of identical architecture (:class:`beit2.models.BeitV2ForMIM`, shared
   relative position bias, layer scale, [CLS]-bottleneck branch): MIM on VQ-KD codes,
   MIM on pixel codes, and no pretraining;
4. linear probes (multinomial logistic regression, L-BFGS, weight decay chosen on a
   held-out tenth of the probe's training split) on the frozen final features.

Everything is plain tensors in memory: no data loader, so the run is fast and exactly
repeatable for a seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlcore.masking import BlockwiseMaskGenerator
from vlcore.tokenizers.vqkd import VQKD, ModuleTeacher, Teacher, VQKDConfig
from vlcore.train.optim import lr_at, param_groups_lrd

from beit2.models.pretrain import BeitV2ForMIM

__all__ = ["MiniConfig", "MiniData", "PatchPixels", "load_mini_data", "run_seed", "linear_probe"]


@dataclass(frozen=True)
class MiniConfig:
    image_size: int = 32
    patch_size: int = 8
    batch_size: int = 128
    # labelled images per class that train the teacher; the probe trains on the rest
    teacher_per_class: int = 150
    teacher_epochs: int = 10
    teacher_lr: float = 2e-3
    teacher_width: int = 64
    # tokenizers
    num_codes: int = 32  # ~30 codes carry this teacher's content on 5,000 images (see README)
    code_dim: int = 16
    tok_dim: int = 64
    tok_depth: int = 2
    tok_heads: int = 4
    tok_decoder_depth: int = 1
    tok_epochs: int = 2
    tok_lr: float = 2e-3
    # the official 0.99 spans ~250k tokenizer steps; a run of ~80 steps needs a shorter memory
    tok_decay: float = 0.9
    # students
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    early_layers: int = 2
    head_layers: int = 1
    num_masked: int = 6  # of 16 patches, ~40% as 75 / 196
    min_block: int = 2
    mim_epochs: int = 4
    mim_lr: float = 1.5e-3
    mim_betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    clip_grad: float = 3.0
    # probes
    probe_steps: int = 100
    probe_wds: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    max_pretrain_images: int | None = None  # cap for smoke runs
    max_probe_images: int | None = None


@dataclass
class MiniData:
    source: str  # which data, for the report
    pretrain: torch.Tensor  # N, 3, H, W float in [0, 1], unlabelled
    teacher_x: torch.Tensor
    teacher_y: torch.Tensor
    probe_x: torch.Tensor
    probe_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


def _split_per_class(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    first = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        first.append(rng.permutation(rows)[:per_class])
    first = np.sort(np.concatenate(first))
    rest = np.setdiff1d(np.arange(len(labels)), first)
    return first, rest


def load_mini_data(cfg: MiniConfig, *, data_root: str | Path | None, seed: int = 0) -> MiniData:
    """CIFAR-10 subset from the shared data folder; generated coloured shapes when it is absent."""
    from vlcore.data import DataNotFoundError

    try:
        from vlcore.data.cifar import load_cifar10_arrays

        train = load_cifar10_arrays("train", root=data_root)
        test = load_cifar10_arrays("test", root=data_root)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float().div(255)  # noqa: E731
        x_tr, y_tr, x_te, y_te = to_t(train.images), train.labels, to_t(test.images), test.labels
        source = (f"real: CIFAR-10 subset ({len(y_tr)} train / {len(y_te)} test images, 32x32) from "
                  f"shared/data/cifar10")
        classes = len(train.classes)
    except DataNotFoundError:
        from vlcore.data.synthetic import SceneConfig, SyntheticScenes

        scfg = SceneConfig(image_size=cfg.image_size, min_objects=1, max_objects=1, label_by="shape")
        make = lambda n, s: SyntheticScenes(num_scenes=n, seed=s, config=scfg)  # noqa: E731
        tr, te = make(4000, 1000), make(1000, 2000)
        x_tr = torch.stack([tr[i]["image"] for i in range(len(tr))]).float()
        x_te = torch.stack([te[i]["image"] for i in range(len(te))]).float()
        if x_tr.max() > 1.5:
            x_tr, x_te = x_tr / 255, x_te / 255
        y_tr = np.array([int(tr.scene(i).objects[0].label) for i in range(len(tr))])
        y_te = np.array([int(te.scene(i).objects[0].label) for i in range(len(te))])
        source = "generated: one coloured shape per 32x32 image, label = shape (CIFAR-10 subset not found)"
        classes = len(scfg.class_names)
    t_idx, p_idx = _split_per_class(y_tr, cfg.teacher_per_class, seed)
    pre = x_tr if cfg.max_pretrain_images is None else x_tr[: cfg.max_pretrain_images]
    if cfg.max_probe_images is not None:
        p_idx, x_te, y_te = p_idx[: cfg.max_probe_images], x_te[: cfg.max_probe_images], y_te[: cfg.max_probe_images]
    y = torch.from_numpy(np.asarray(y_tr)).long()
    return MiniData(
        source=source, pretrain=pre, teacher_x=x_tr[t_idx], teacher_y=y[t_idx], probe_x=x_tr[p_idx],
        probe_y=y[p_idx], test_x=x_te, test_y=torch.from_numpy(np.asarray(y_te)).long(), num_classes=classes,
    )


# --- pieces -------------------------------------------------------------------


class TeacherCNN(nn.Module):
    """Conv stack with overall stride 8: a 32x32 image -> a 4x4 map, one vector per 8x8 patch."""

    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()

        def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        # the last block stops before its ReLU: the patch features are centred, like CLIP's
        # LayerNorm-ed patch tokens, rather than non-negative
        self.features = nn.Sequential(*conv(3, width // 2, 2), *conv(width // 2, width, 2),
                                      *conv(width, 2 * width, 2), *conv(2 * width, 2 * width, 1)[:2])
        self.out_dim = 2 * width
        self.fc = nn.Linear(self.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # B, C, 4, 4

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x)).mean((2, 3))  # B, C: what the classifier sees

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


class PatchPixels(nn.Module):
    """Per-patch pixel vectors, each normalised to zero mean / unit variance (the pixel target)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.p = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p = self.p
        t = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), -1)
        return (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()  # B, N, p*p*C


def _augment(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip; returns the images and which were flipped."""
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x), flip


def _batches(n: int, batch: int, g: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch] for i in range(0, n - batch + 1, batch)]


def _adamw(model: nn.Module, wd: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups_lrd(model, wd, 1.0), lr=0.0, betas=betas)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def train_teacher(cfg: MiniConfig, data: MiniData, g: torch.Generator) -> TeacherCNN:
    model = TeacherCNN(cfg.teacher_width, data.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.teacher_lr, weight_decay=5e-4)
    n = len(data.teacher_y)
    steps = cfg.teacher_epochs * max(1, n // cfg.batch_size)
    step = 0
    model.train()
    for _ in range(cfg.teacher_epochs):
        for idx in _batches(n, min(cfg.batch_size, n), g):
            x, _ = _augment(data.teacher_x[idx], g)
            # random translation by up to 4 pixels (pad + crop), the usual CIFAR augmentation
            dx, dy = torch.randint(-4, 5, (2,), generator=g).tolist()
            x = torch.roll(F.pad(x, (4, 4, 4, 4), mode="reflect"), (dy, dx), (2, 3))[:, :, 4:-4, 4:-4]
            _set_lr(opt, lr_at(step, lr=cfg.teacher_lr, total_steps=steps, warmup_steps=max(1, steps // 20)))
            loss = F.cross_entropy(model.logits(x), data.teacher_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return model.eval()


def tokenizer_config(cfg: MiniConfig, target_dim: int) -> VQKDConfig:
    return VQKDConfig(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.tok_dim, depth=cfg.tok_depth,
                      num_heads=cfg.tok_heads, mlp_ratio=cfg.mlp_ratio, decoder_embed_dim=cfg.tok_dim,
                      decoder_depth=cfg.tok_decoder_depth, decoder_num_heads=cfg.tok_heads, num_codes=cfg.num_codes,
                      code_dim=cfg.code_dim, target_dim=target_dim, decay=cfg.tok_decay)


def train_tokenizer(cfg: MiniConfig, images: torch.Tensor, teacher: Teacher, g: torch.Generator) -> tuple[VQKD, dict]:
    """VQ-KD training on unlabelled images against ``teacher``'s patch features."""
    model = VQKD(tokenizer_config(cfg, teacher.out_dim)).train()
    opt = _adamw(model, 1e-4, (0.9, 0.99))
    n = len(images)
    steps = cfg.tok_epochs * (n // cfg.batch_size)
    step, rec = 0, []
    for _ in range(cfg.tok_epochs):
        for idx in _batches(n, cfg.batch_size, g):
            x, _ = _augment(images[idx], g)
            _set_lr(opt, lr_at(step, lr=cfg.tok_lr, total_steps=steps, warmup_steps=max(1, steps // 10),
                               min_lr=cfg.tok_lr / 20))
            out = model(x, teacher(x))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            rec.append(out.rec_loss.item())
            step += 1
    return model.eval(), {"rec_loss_first": rec[0], "rec_loss_last": float(np.mean(rec[-5:]))}


@torch.no_grad()
def tokenize(model: VQKD, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model.get_codebook_indices(images[i : i + batch]) for i in range(0, len(images), batch)])


@torch.no_grad()
def codebook_usage(model: VQKD, images: torch.Tensor) -> dict[str, float]:
    model.quantize.reset_usage()
    tokenize(model, images)
    return model.quantize.usage()


def build_student(cfg: MiniConfig) -> BeitV2ForMIM:
    return BeitV2ForMIM(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.dim, depth=cfg.depth,
                        num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, vocab_size=cfg.num_codes,
                        early_layers=cfg.early_layers, head_layers=cfg.head_layers, init_values=0.1)


def train_mim(
    cfg: MiniConfig, images: torch.Tensor, codes: torch.Tensor, codes_flipped: torch.Tensor, seed: int,
    g: torch.Generator,
) -> tuple[BeitV2ForMIM, list[list[float]], dict]:
    """BEiT v2 MIM: blockwise masks, CE on the codes of masked patches (+ the aggregation branch)."""
    torch.manual_seed(seed)
    model = build_student(cfg).train()
    opt = _adamw(model, cfg.weight_decay, cfg.mim_betas)
    grid = cfg.image_size // cfg.patch_size
    masker = BlockwiseMaskGenerator(input_size=grid, num_masking_patches=cfg.num_masked,
                                    min_num_patches=cfg.min_block, seed=seed)
    n = len(images)
    steps = cfg.mim_epochs * (n // cfg.batch_size)
    step, curve, accs = 0, [], []
    for _ in range(cfg.mim_epochs):
        for idx in _batches(n, cfg.batch_size, g):
            x, flip = _augment(images[idx], g)
            target = torch.where(flip[:, None], codes_flipped[idx], codes[idx])  # B, N
            mask = masker.batch(len(idx))
            _set_lr(opt, lr_at(step, lr=cfg.mim_lr, total_steps=steps,
                               warmup_steps=max(1, int(cfg.warmup_frac * steps)), min_lr=cfg.mim_lr / 100))
            out = model.mim_loss(x, mask, target)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            accs.append(out.acc_main.item())
            if step % 10 == 0 or step == steps - 1:
                curve.append([step, out.acc_main.item()])
            step += 1
    return model.eval(), curve, {"mim_code_acc_last": float(np.mean(accs[-5:])), "mim_steps": steps}


@torch.no_grad()
def student_features(model: nn.Module, images: torch.Tensor, batch: int = 500) -> dict[str, torch.Tensor]:
    """Final normalised [CLS], mean of patch tokens, and both concatenated."""
    model.eval()
    toks = torch.cat([model.forward_features(images[i : i + batch]) for i in range(0, len(images), batch)])
    cls, mean = toks[:, 0], toks[:, 1:].mean(1)
    return {"cls": cls, "mean": mean, "cls+mean": torch.cat((cls, mean), dim=1)}


@torch.no_grad()
def teacher_features(teacher: TeacherCNN, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([teacher.pooled(images[i : i + batch]) for i in range(0, len(images), batch)])


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, classes: int, wd: float, steps: int) -> nn.Linear:
    lin = nn.Linear(x.shape[1], classes)
    nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y) + 0.5 * wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *, classes: int,
    wds: tuple[float, ...] = (1e-4, 1e-3, 1e-2), steps: int = 100, seed: int = 0,
) -> dict[str, float]:
    """Top-1 (%) of a multinomial logistic regression on standardised frozen features; the
    weight decay is chosen on a held-out tenth of the training split, then refit on all of it."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    tr, te = (train_x - mu) / sd, (test_x - mu) / sd
    perm = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, len(train_y) // 10)
    val, fit = perm[:n_val], perm[n_val:]
    with torch.enable_grad():
        scores = {}
        for wd in wds:
            lin = _fit_logreg(tr[fit], train_y[fit], classes, wd, steps)
            scores[wd] = (lin(tr[val]).argmax(-1) == train_y[val]).float().mean().item()
        best = max(wds, key=lambda w: (scores[w], -w))
        lin = _fit_logreg(tr, train_y, classes, best, steps)
    acc = (lin(te).argmax(-1) == test_y).float().mean().item() * 100
    return {"top1": acc, "wd": best}


def run_seed(cfg: MiniConfig, data: MiniData, seed: int, log: Callable[[str], None] = print) -> dict:
    """The whole pipeline for one seed; returns every number the report needs."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    times: dict[str, float] = {}
    t0 = time.time()
    probe = lambda f_tr, f_te: linear_probe(f_tr, data.probe_y, f_te, data.test_y,  # noqa: E731
                                            classes=data.num_classes, wds=cfg.probe_wds, steps=cfg.probe_steps,
                                            seed=seed)["top1"]

    teacher_net = train_teacher(cfg, data, g)
    teacher_acc = probe(teacher_features(teacher_net, data.probe_x), teacher_features(teacher_net, data.test_x))
    times["teacher"] = time.time() - t0
    log(f"  teacher probe {teacher_acc:.1f}% ({times['teacher']:.0f}s)")

    teachers = {
        "vqkd": ModuleTeacher(teacher_net, out_dim=teacher_net.out_dim, mean=(0.4914, 0.4822, 0.4465),
                              std=(0.2470, 0.2435, 0.2616)),
        "pixel": ModuleTeacher(PatchPixels(cfg.patch_size), out_dim=3 * cfg.patch_size**2),
    }
    result: dict = {"teacher": teacher_acc}
    curves: dict[str, list[list[float]]] = {}
    for name, teacher in teachers.items():
        t = time.time()
        tok, tok_stats = train_tokenizer(cfg, data.pretrain, teacher, g)
        usage = codebook_usage(tok, data.test_x)
        codes, codes_f = tokenize(tok, data.pretrain), tokenize(tok, data.pretrain.flip(-1))
        times[f"{name}_tokenizer"] = time.time() - t
        t = time.time()
        student, curve, mim_stats = train_mim(cfg, data.pretrain, codes, codes_f, seed, g)
        times[f"{name}_mim"] = time.time() - t
        feats_tr, feats_te = student_features(student, data.probe_x), student_features(student, data.test_x)
        accs = {k: probe(feats_tr[k], feats_te[k]) for k in feats_tr}
        result[name] = {"probe": accs, "codebook_usage": usage["usage"], "codebook_perplexity": usage["perplexity"],
                        **tok_stats, **mim_stats}
        curves[f"{name}-MIM masked-code accuracy"] = curve
        log(f"  {name}: usage {usage['usage']:.2f}, tokenizer rec {tok_stats['rec_loss_last']:.3f}, "
            f"MIM code acc {mim_stats['mim_code_acc_last']:.3f}, probe {accs} "
            f"({times[f'{name}_tokenizer']:.0f}s + {times[f'{name}_mim']:.0f}s)")
    torch.manual_seed(seed)
    random_student = build_student(cfg)
    f_tr, f_te = student_features(random_student, data.probe_x), student_features(random_student, data.test_x)
    result["random"] = {"probe": {k: probe(f_tr[k], f_te[k]) for k in f_tr}}
    times["total"] = time.time() - t0
    result["times_s"] = {k: round(v, 1) for k, v in times.items()}
    result["curves"] = curves
    log(f"  random init: probe {result['random']['probe']}  (seed total {times['total']:.0f}s)")
    return result
