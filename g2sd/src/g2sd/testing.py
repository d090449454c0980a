"""Tiny models and inputs for the g2sd tests (importable, so no conftest is needed)."""

from __future__ import annotations

import torch

from vlcore.models.mae import MaskedAutoencoderViT

from g2sd.models import G2SDStudentMAE


def tiny_teacher(**kw) -> MaskedAutoencoderViT:
    cfg = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=4,
               decoder_num_heads=2)
    cfg.update(kw)
    return MaskedAutoencoderViT(**cfg)


def tiny_student(**kw) -> G2SDStudentMAE:
    cfg = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16, decoder_depth=2,
               decoder_num_heads=2, target_dim=32, encoder_target_dim=48)
    cfg.update(kw)
    return G2SDStudentMAE(**cfg)


def tiny_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (3, 3, 32, 32) and masking noise (3, 16)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 3, 32, 32, generator=g), torch.rand(3, 16, generator=g)


def train_step_and_evaluate(cfg, registry_scope: str):
    """One optimiser step and one evaluation, built the runner's way but without a Runner (no config dumps)."""
    from mmengine.evaluator import Evaluator
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    DefaultScope.get_instance(f"g2sd-test-{registry_scope}-{id(cfg)}", scope_name=registry_scope)
    from mmengine.registry import MODELS as ROOT

    model = ROOT.build(cfg.model)
    model.init_weights()
    train_loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    val_loader = Runner.build_dataloader(cfg.val_dataloader, seed=0)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    log_vars = model.train_step(next(iter(train_loader)), optim)
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = val_loader.dataset.metainfo
    model.eval()
    with torch.no_grad():
        for batch in val_loader:
            evaluator.process(data_samples=model.val_step(batch), data_batch=batch)
    return model, train_loader, log_vars, evaluator.evaluate(len(val_loader.dataset))
