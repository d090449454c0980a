"""What ``train`` and ``eval`` share: building the model, datasets and per-task step / eval functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from vlcore.config import ConfigError

from magneto.config import MagnetoConfig
from magneto.data import TextData, corpus_text, load_text_data, reversal_splits
from magneto.models import REGISTRY, mask_tokens
from magneto.models.bert import IGNORE_INDEX


@dataclass
class TaskData:
    train: Dataset
    val: Dataset
    description: str
    vocab_size: int | None = None
    text: TextData | None = None


def _blocks(ids: torch.Tensor, block: int) -> TensorDataset:
    """Non-overlapping (x, y) next-token blocks."""
    n = (ids.numel() - 1) // block
    if n < 1:
        raise ValueError(f"{ids.numel()} tokens cannot fill one block of {block} + 1")
    x = ids[: n * block].view(n, block)
    y = ids[1 : n * block + 1].view(n, block)
    return TensorDataset(x, y)


def build_data(cfg: MagnetoConfig, work_dir: Path) -> TaskData:
    d = cfg.data
    root = d.root or None
    if cfg.task == "image_cls":
        from vlcore.data.cifar import CIFAR10Subset

        train, val = CIFAR10Subset(split="train", root=root), CIFAR10Subset(split="test", root=root)
        return TaskData(train, val, f"real: CIFAR-10 subset ({len(train)} train / {len(val)} test)")
    text = load_text_data(
        corpus=d.corpus, root=root, tokenizer=d.tokenizer, spm_model=d.spm_model, spm_vocab_size=d.spm_vocab_size,
        spm_max_sentences=d.spm_max_sentences, val_fraction=d.val_fraction, work_dir=work_dir,
    )
    if cfg.task == "clm":
        return TaskData(_blocks(text.train, d.block_size), _blocks(text.val, d.block_size), text.description,
                        text.vocab_size, text)
    if cfg.task == "mlm":
        tr, va = _blocks(text.train, d.block_size), _blocks(text.val, d.block_size)
        return TaskData(TensorDataset(tr.tensors[0]), TensorDataset(va.tensors[0]), text.description,
                        text.vocab_size, text)
    train, val = reversal_splits(corpus_text(d.corpus, root), text.tokenizer, max_len=d.block_size,
                                 val_fraction=d.val_fraction)
    desc = f"{text.description}; seq2seq: each line -> its words reversed ({len(train)} / {len(val)} pairs)"
    return TaskData(train, val, desc, text.vocab_size, text)


def build_model(cfg: MagnetoConfig, data: TaskData) -> nn.Module:
    kw = cfg.model.build_kwargs()
    if cfg.task != "image_cls":
        kw["vocab_size"] = data.vocab_size
        kw["max_seq_len"] = max(cfg.data.block_size, 2)
    try:
        REGISTRY.get(cfg.model.name)
    except KeyError as e:
        raise ConfigError(f"key 'model.name': {e.args[0]}") from None
    try:
        return REGISTRY.build(cfg.model.name, **kw)
    except TypeError as e:  # a size key this family does not have (depth on an encoder-decoder, ...)
        raise ConfigError(f"model {cfg.model.name!r} does not take a setting given in 'model': {e}") from None


def step_fn(cfg: MagnetoConfig, data: TaskData) -> Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]:
    """(model, batch) -> (loss, metrics) for the trainer."""
    if cfg.task == "clm":

        def clm(model, batch):
            x, y = batch
            loss = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())
            return loss, {}

        return clm
    if cfg.task == "mlm":
        text = data.text
        if text is None or text.mask_id is None:
            raise ValueError("mlm needs a tokenizer with a <mask> piece")

        def mlm(model, batch):
            (x,) = batch
            corrupted, labels = mask_tokens(x.cpu(), mask_id=text.mask_id, vocab_size=text.vocab_size,
                                            mask_prob=cfg.data.mask_prob, special_ids=text.special_ids)
            corrupted, labels = corrupted.to(x.device), labels.to(x.device)
            logits = model(corrupted)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
            return loss, {}

        return mlm
    if cfg.task == "seq2seq":

        def s2s(model, batch):
            src, t_in, t_out = batch
            return model.loss(src, t_in, t_out), {}

        return s2s

    def cls(model, batch):
        x, y = batch
        logits = model(_normalise(x))
        return F.cross_entropy(logits.float(), y), {"acc": (logits.argmax(-1) == y).float().mean().item()}

    return cls


_MEAN = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
_STD = torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - _MEAN.to(x.device)) / _STD.to(x.device)


@torch.no_grad()
def evaluate(cfg: MagnetoConfig, model: nn.Module, data: TaskData, *, batches: int | None = None) -> dict[str, float]:
    """Validation metrics: loss (+ perplexity for LMs, accuracy for classification).

    Deterministic: the first ``batches`` batches of the split in order; MLM masks with a fixed seed.
    """
    model.eval()
    bs = cfg.train.per_device_batch_size
    n_batches = batches if batches is not None else cfg.data.eval_batches
    device = next(model.parameters()).device
    total, count, correct = 0.0, 0, 0
    gen = torch.Generator().manual_seed(0)
    n = len(data.val)
    limit = n if not n_batches else min(n, n_batches * bs)
    for start in range(0, limit, bs):
        items = [data.val[i] for i in range(start, min(start + bs, limit))]
        batch = [torch.stack([torch.as_tensor(it[j]) for it in items]).to(device) for j in range(len(items[0]))]
        if cfg.task == "clm":
            x, y = batch
            loss = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten(), reduction="sum")
            total, count = total + loss.item(), count + y.numel()
        elif cfg.task == "mlm":
            text = data.text
            (x,) = batch
            corrupted, labels = mask_tokens(x.cpu(), mask_id=text.mask_id, vocab_size=text.vocab_size,
                                            mask_prob=cfg.data.mask_prob, special_ids=text.special_ids, generator=gen)
            logits = model(corrupted.to(device)).float()
            labels = labels.to(device)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
            keep = labels != IGNORE_INDEX
            correct += int((logits.argmax(-1)[keep] == labels[keep]).sum())
            total, count = total + loss.item(), count + int(keep.sum())
        elif cfg.task == "seq2seq":
            src, t_in, t_out = batch
            logits = model(src, t_in).float()
            keep = t_out != model.pad_id
            loss = F.cross_entropy(logits.flatten(0, 1), t_out.flatten(), ignore_index=model.pad_id, reduction="sum")
            correct += int((logits.argmax(-1)[keep] == t_out[keep]).sum())
            total, count = total + loss.item(), count + int(keep.sum())
        else:
            x, y = batch
            logits = model(_normalise(x.float())).float()
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    loss = total / max(count, 1)
    out = {"loss": loss, "items": float(count)}
    if cfg.task in ("clm", "mlm", "seq2seq"):
        out["perplexity"] = math.exp(min(loss, 50.0))
    if cfg.task in ("mlm", "seq2seq", "image_cls"):
        out["accuracy"] = correct / max(count, 1)
    return out
