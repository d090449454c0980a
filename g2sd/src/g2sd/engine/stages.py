"""The four stages as functions over a :class:`G2SDConfig`, each on ``vlcore.train.Trainer``.

    run_stage(cfg) -> StageResult(model, summary)

Teachers are frozen, kept out of the optimised model (so checkpoints hold the student
only) and moved to the batch's device on first use. Layer-wise lr decay follows the
official fine-tuning code: patch embedding / class token / position table at layer 0,
block i at i + 1, and everything else (final norm, heads, the distillation token) at the
top with the full lr.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from vlcore.checkpoint import latest_checkpoint
from vlcore.errors import UserError
from vlcore.models.mae import MaskedAutoencoderViT, load_mae_checkpoint, mae_state_dict_to_timm
from vlcore.train import Trainer, TrainSummary, evaluate, vit_layer_id

from g2sd.config import ArchConfig, G2SDConfig, GDConfig
from g2sd.data import build_eval_set, build_train_set, pad_crop_flip
from g2sd.engine.losses import generic_distillation_loss, hard_distillation_loss, soft_target_cross_entropy
from g2sd.models import G2SDStudentMAE, build_classifier, freeze, teacher_features


@dataclass
class StageResult:
    model: nn.Module
    summary: TrainSummary


# --- models -------------------------------------------------------------------


def build_mae_model(a: ArchConfig, *, norm_pix_loss: bool = True, mask_ratio: float = 0.75) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(
        img_size=a.img_size, patch_size=a.patch_size, embed_dim=a.embed_dim, depth=a.depth, num_heads=a.num_heads,
        decoder_embed_dim=a.decoder_embed_dim, decoder_depth=a.decoder_depth, decoder_num_heads=a.decoder_num_heads,
        norm_pix_loss=norm_pix_loss, mask_ratio=mask_ratio,
    )


def build_student_mae(cfg: G2SDConfig) -> G2SDStudentMAE:
    a, t = cfg.model, cfg.teacher
    return G2SDStudentMAE(
        img_size=a.img_size, patch_size=a.patch_size, embed_dim=a.embed_dim, depth=a.depth, num_heads=a.num_heads,
        decoder_embed_dim=a.decoder_embed_dim, decoder_depth=a.decoder_depth, decoder_num_heads=a.decoder_num_heads,
        target_dim=t.decoder_embed_dim, encoder_target_dim=t.embed_dim, mask_ratio=cfg.mae.mask_ratio,
    )


def build_vit(a: ArchConfig, num_classes: int, *, distilled: bool = False) -> nn.Module:
    return build_classifier(
        embed_dim=a.embed_dim, depth=a.depth, num_heads=a.num_heads, patch_size=a.patch_size, img_size=a.img_size,
        num_classes=num_classes, distilled=distilled, global_pool=a.global_pool, drop_path_rate=a.drop_path_rate,
    )


def resolve_weights(path: str | Path) -> Path:
    """A weights file, a step folder (``model.safetensors``) or a run folder (its newest checkpoint)."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / "model.safetensors").is_file():
        return p / "model.safetensors"
    for ckpt_dir in (p / "ckpt", p):
        if ckpt_dir.is_dir():
            latest = latest_checkpoint(ckpt_dir)
            if latest is not None and (latest / "model.safetensors").is_file():
                return latest / "model.safetensors"
    raise UserError(f"no weights found at {p} (a .pth / .safetensors file, a step folder or a run folder)")


def _state_dict(source: str | dict) -> dict[str, torch.Tensor]:
    if isinstance(source, dict):
        return source
    from g2sd.convert import read_any_state_dict

    return read_any_state_dict(resolve_weights(source))


def init_classifier_from_pretrained(model: nn.Module, source: str | dict, *, head_std: float = 2e-5) -> list[str]:
    """Load a pre-trained encoder (MAE, G2SD GD, or a classifier) into a ViT classifier.

    Decoder / predictor keys are dropped; the heads (and a distillation token) start
    fresh, the class head with std ``head_std`` as in MAE / G2SD fine-tuning. Returns the
    keys left at their initial values; any other difference is an error.
    """
    sd = mae_state_dict_to_timm(_state_dict(source))
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "head_dist.", "fc_norm."))}
    if "norm.weight" in sd and "norm.weight" not in own:  # MAE global-pool fine-tuning: the encoder norm goes
        sd.pop("norm.weight"), sd.pop("norm.bias")
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if unexpected or mismatched:
        raise UserError(f"pre-trained weights do not fit the classifier: unexpected {unexpected[:5]}, "
                        f"shape mismatches {mismatched[:5]}")
    missing = sorted(set(own) - set(sd))
    allowed = ("head.", "head_dist.", "dist_token", "fc_norm.")
    bad = [k for k in missing if not k.startswith(allowed)]
    if bad:
        raise UserError(f"pre-trained weights lack encoder keys {bad[:5]}")
    model.load_state_dict(sd, strict=False)
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        nn.init.trunc_normal_(head.weight, std=head_std)
        nn.init.zeros_(head.bias)
    return missing


def load_classifier(model: nn.Module, source: str | dict, *, resize_pos_embed: bool = False,
                    name: str | None = None) -> None:
    """Weights of a whole classifier (ours or an official fine-tuned file), every key required.

    A position table for another grid is refused unless ``resize_pos_embed`` asks for it to be
    resampled (bicubic, class token kept): evaluating at a resolution the weights never saw is a
    choice, not a default."""
    sd = dict(_state_dict(source))
    what = name or (source if isinstance(source, str) else "state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise UserError(f"{what} does not fit the classifier: missing {missing[:5]}, unexpected {unexpected[:5]}")
    pe = sd.get("pos_embed")
    if pe is not None and pe.shape != own["pos_embed"].shape:
        if not resize_pos_embed:
            raise UserError(f"{what}: pos_embed {tuple(pe.shape)} does not fit the model's {tuple(own['pos_embed'].shape)} "
                            f"(image size {model.patch_embed.img_size}); pass --resize-pos-embed to resample it")
        from vlcore.layers.pos_embed import resample_pos_embed

        prefix = own["pos_embed"].shape[1] - model.patch_embed.num_patches
        sd["pos_embed"] = resample_pos_embed(pe, new_grid=tuple(model.patch_embed.grid_size), num_prefix_tokens=prefix)
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if sd[k].shape != own[k].shape]
    if bad:
        raise UserError(f"{what} does not fit the classifier: shape mismatch {', '.join(bad[:3])}")
    model.load_state_dict(sd)


def cls_layer_id(name: str, num_layers: int) -> int:
    # Official G2SD fine-tuning: the distillation token trains at the top layer's lr.
    if name == "dist_token":
        return num_layers + 1
    return vit_layer_id(name, num_layers)


# --- batches --------------------------------------------------------------------


class _Lazy:
    """A frozen teacher moved to the batch's device on first use."""

    def __init__(self, module: nn.Module) -> None:
        self.module = freeze(module)

    def __call__(self, device: torch.device) -> nn.Module:
        if next(self.module.parameters()).device != device:
            self.module.to(device)
        return self.module


def _augment(cfg: G2SDConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    if cfg.data.dataset == "cifar10":
        return lambda x: pad_crop_flip(x, cfg.data.pad_crop)
    return lambda x: x  # image folders are augmented per image


def _targets(cfg: G2SDConfig) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    c, k = cfg.cls, cfg.data.num_classes
    if c.mixup > 0 or c.cutmix > 0:
        from timm.data import Mixup

        mix = Mixup(mixup_alpha=c.mixup, cutmix_alpha=c.cutmix, label_smoothing=c.label_smoothing, num_classes=k)
        return lambda x, y: mix(x, y)

    def smooth(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        off = c.label_smoothing / k
        t = torch.full((y.shape[0], k), off, device=y.device)
        t.scatter_(1, y[:, None], 1.0 - c.label_smoothing + off)
        return x, t

    return smooth


# --- stages ---------------------------------------------------------------------


def _fit(cfg: G2SDConfig, model: nn.Module, step_fn, layer_id_fn=None) -> StageResult:
    trainer = Trainer(model, step_fn, build_train_set(cfg), cfg.train, layer_id_fn=layer_id_fn, run_config=cfg)
    summary = trainer.fit()
    return StageResult(model, summary)


def run_mae_pretrain(cfg: G2SDConfig, *, init: dict | None = None) -> StageResult:
    model = build_mae_model(cfg.model, norm_pix_loss=cfg.mae.norm_pix_loss, mask_ratio=cfg.mae.mask_ratio)
    if cfg.init_checkpoint or init:
        load_mae_checkpoint(model, init or _state_dict(cfg.init_checkpoint))
    aug = _augment(cfg)

    def step(m, batch):
        x, _ = batch
        loss, _, _ = m(aug(x))
        return loss, {}

    return _fit(cfg, model, step)


def run_gd(cfg: G2SDConfig, *, teacher: MaskedAutoencoderViT | None = None) -> StageResult:
    """Generic distillation; ``teacher`` (an MAE with decoder) or ``cfg.teacher_checkpoint``."""
    if teacher is None:
        if not cfg.teacher_checkpoint:
            raise UserError("stage gd needs teacher_checkpoint: an MAE checkpoint with its decoder")
        teacher = build_mae_model(cfg.teacher, mask_ratio=cfg.mae.mask_ratio)
        load_mae_checkpoint(teacher, _state_dict(cfg.teacher_checkpoint), require_decoder=True)
    if not 1 <= cfg.gd.layer_index <= len(teacher.decoder_blocks):
        raise UserError(f"gd.layer_index must be in [1, {len(teacher.decoder_blocks)}], got {cfg.gd.layer_index}")
    student = build_student_mae(cfg)
    if cfg.init_checkpoint:
        load_mae_checkpoint(student, _state_dict(cfg.init_checkpoint), require_decoder=False,
                            extra_ok=("decoderfeature_pred.", "encoderfeature_pred."))
    tea = _Lazy(teacher)
    aug = _augment(cfg)

    def step(m, batch):
        x, _ = batch
        x = aug(x)
        noise = torch.rand(x.shape[0], student.patch_embed.num_patches, device=x.device)  # one mask for both
        return gd_step(m, tea(x.device), x, noise, gd=cfg.gd, mask_ratio=cfg.mae.mask_ratio)

    return _fit(cfg, student, step)


def gd_step(
    student: nn.Module, teacher: MaskedAutoencoderViT, x: torch.Tensor, noise: torch.Tensor, *, gd: GDConfig,
    mask_ratio: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One generic-distillation loss: both models see the mask drawn by ``noise`` (B, L)."""
    t = teacher_features(teacher, x, noise, layer_index=gd.layer_index, mask_ratio=mask_ratio)
    s = student(x, noise, mask_ratio)
    loss_dec = generic_distillation_loss(s["decoder"], t["decoder"], mask=s["mask"], supervise_all=gd.supervise_all,
                                         beta=gd.beta)
    loss_enc = generic_distillation_loss(s["encoder"], t["encoder"], beta=gd.beta)
    # The official encoder-feature term is computed and logged with weight 0 by default.
    loss = loss_dec + gd.encoder_loss_weight * loss_enc
    return loss, {"loss_decoder": loss_dec.detach(), "loss_encoder": loss_enc.detach()}


def _classifier(cfg: G2SDConfig, *, distilled: bool, init: dict | str | None) -> nn.Module:
    model = build_vit(cfg.model, cfg.data.num_classes, distilled=distilled)
    source = init if init is not None else cfg.init_checkpoint
    if source is not None:
        init_classifier_from_pretrained(model, source, head_std=cfg.cls.reinit_head_std)
    return model


def run_finetune(cfg: G2SDConfig, *, init: dict | str | None = None) -> StageResult:
    """Supervised fine-tuning (or training from scratch when nothing is given to start from)."""
    model = _classifier(cfg, distilled=False, init=init)
    aug, targets = _augment(cfg), _targets(cfg)

    def step(m, batch):
        x, y = batch
        x, t = targets(aug(x), y)
        logits = m(x)
        loss = soft_target_cross_entropy(logits, t)
        return loss, {}

    return _fit(cfg, model, step, cls_layer_id)


def run_sd(cfg: G2SDConfig, *, teacher: nn.Module | None = None, init: dict | str | None = None) -> StageResult:
    """Specific distillation for classification: distillation-token student, hard teacher labels."""
    if teacher is None:
        if not cfg.teacher_checkpoint:
            raise UserError("stage sd needs teacher_checkpoint: a fine-tuned classifier")
        teacher = build_vit(cfg.teacher, cfg.data.num_classes)
        load_classifier(teacher, cfg.teacher_checkpoint)
    model = _classifier(cfg, distilled=True, init=init)
    tea = _Lazy(teacher)
    aug, targets = _augment(cfg), _targets(cfg)

    def step(m, batch):
        x, y = batch
        x, t = targets(aug(x), y)
        with torch.no_grad():
            t_logits = tea(x.device)(x)  # the teacher sees the same mixed batch
        cls, dist = m(x)
        out = hard_distillation_loss(cls, dist, t, t_logits)
        return out["loss"], {"loss_gt": out["loss_gt"], "loss_dist": out["loss_dist"]}

    return _fit(cfg, model, step, cls_layer_id)


STAGES: dict[str, Callable[..., StageResult]] = {
    "mae_pretrain": run_mae_pretrain,
    "gd": run_gd,
    "finetune": run_finetune,
    "sd": run_sd,
}


def run_stage(cfg: G2SDConfig, **kwargs: Any) -> StageResult:
    return STAGES[cfg.stage](cfg, **kwargs)


# --- evaluation -------------------------------------------------------------------


def top1(model: nn.Module, cfg: G2SDConfig, *, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (%) on the evaluation split; a distillation-token model averages its two heads."""
    loader = DataLoader(build_eval_set(cfg), batch_size=cfg.eval_batch_size, shuffle=False)
    model = model.to(device)

    def eval_fn(m, batch):
        x, y = batch
        return {"top1": (m(x).argmax(-1) == y).float().mean() * 100.0}

    return evaluate(model, loader, eval_fn, device=device)["top1"]
