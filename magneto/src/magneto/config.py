"""Typed configs of ``python -m magneto.train`` / ``eval`` (presets under ``magneto/configs/``).

A preset holds only what differs from these defaults; ``--set a.b=v`` overrides. The
``model.norm`` switch selects the layout; torchscale users may also write its flags
``model.subln`` / ``model.deepnorm``. Settings that contradict each other (Sub-LN with
DeepNorm, a flag against ``norm``, an init rule of another layout) are errors naming the
keys, never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.config import ConfigError
from vlcore.train import TrainConfig

from magneto.models.trunk import ArchitectureError, norm_from_torchscale_flags, resolve_init

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

Task = Literal["clm", "mlm", "seq2seq", "image_cls"]


@dataclass(frozen=True)
class ModelConfig:
    name: str = "magneto_gpt_tiny"  # a name of magneto.models.REGISTRY
    norm: Optional[Literal["post", "pre", "deepnorm", "subln"]] = None  # None: from the flags, else subln
    init: Literal["auto", "magneto", "deepnet", "none"] = "auto"
    value_init: Literal["xavier_normal", "scale"] = "xavier_normal"
    subln: Optional[bool] = None  # torchscale's flag; must agree with norm
    deepnorm: Optional[bool] = None  # torchscale's flag; must agree with norm
    # size overrides of the registered configuration (None keeps it)
    depth: Optional[int] = None
    encoder_depth: Optional[int] = None
    decoder_depth: Optional[int] = None
    dim: Optional[int] = None
    num_heads: Optional[int] = None
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        try:
            resolve_init(self.resolved_norm(), self.init)
        except ArchitectureError as e:
            raise ConfigError(f"model: {e}") from None

    def resolved_norm(self) -> str:
        """``norm``, checked against the torchscale-style flags when they are given."""
        if self.subln and self.deepnorm:
            raise ConfigError(
                "keys 'model.subln' and 'model.deepnorm' are both true: Sub-LN (Magneto) and DeepNorm exclude each other"
            )
        if self.subln is None and self.deepnorm is None:
            return self.norm or "subln"
        flags_norm = None
        if self.subln or self.deepnorm:
            flags_norm = norm_from_torchscale_flags(
                subln=bool(self.subln), deepnorm=bool(self.deepnorm), normalize_before=bool(self.subln)
            )
        if self.norm is None:
            if flags_norm is None:
                raise ConfigError("keys 'model.subln' / 'model.deepnorm' are false but 'model.norm' is not set: "
                                  "set model.norm to post or pre")
            return flags_norm
        if flags_norm is not None and flags_norm != self.norm:
            raise ConfigError(f"key 'model.norm' is {self.norm!r} but the torchscale flags say {flags_norm!r}")
        if self.subln is False and self.norm == "subln":
            raise ConfigError("key 'model.norm' is 'subln' but 'model.subln' is false")
        if self.deepnorm is False and self.norm == "deepnorm":
            raise ConfigError("key 'model.norm' is 'deepnorm' but 'model.deepnorm' is false")
        return self.norm

    def build_kwargs(self) -> dict:
        kw: dict = {"norm": self.resolved_norm(), "init": self.init, "value_init": self.value_init}
        for k in ("depth", "encoder_depth", "decoder_depth", "dim", "num_heads"):
            v = getattr(self, k)
            if v is not None:
                kw[k] = v
        kw["drop"], kw["attn_drop"], kw["drop_path_rate"] = self.drop, self.attn_drop, self.drop_path_rate
        return kw


@dataclass(frozen=True)
class DataConfig:
    corpus: Literal["tiny_shakespeare", "wikitext2", "cifar10"] = "tiny_shakespeare"
    root: str = ""  # real-data root; "" = ../shared/data next to the repository (or $VLREPRO_DATA)
    tokenizer: Literal["char", "word", "sentencepiece"] = "char"
    spm_model: str = ""  # an existing SentencePiece .model; "" trains one into the run folder
    spm_vocab_size: int = 1000
    spm_max_sentences: int = 20000  # lines the SentencePiece trainer reads (the first ones)
    block_size: int = 128  # tokens per LM block; max source / target length for seq2seq
    val_fraction: float = 0.1
    mask_prob: float = 0.15  # mlm
    eval_batches: int = 20  # validation batches of per_device_batch_size (0: the whole split)


@dataclass(frozen=True)
class MagnetoConfig:
    task: Task = "clm"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            out_dir="runs/magneto", total_steps=200, global_batch_size=32, per_device_batch_size=32, lr=1e-3,
            betas=(0.9, 0.98), weight_decay=0.01, warmup_steps=20, schedule="cosine", ckpt_interval=1000,
        )
    )
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        if self.task == "image_cls" and self.data.corpus != "cifar10":
            raise ConfigError("task 'image_cls' reads data.corpus 'cifar10'")
        if self.task != "image_cls" and self.data.corpus == "cifar10":
            raise ConfigError(f"task {self.task!r} needs a text corpus (tiny_shakespeare, wikitext2), not cifar10")
        if self.task in ("mlm", "seq2seq") and self.data.tokenizer != "sentencepiece":
            raise ConfigError(f"task {self.task!r} needs data.tokenizer 'sentencepiece' (mask / BOS / EOS pieces)")
        if not 0.0 < self.data.mask_prob < 1.0:
            raise ConfigError(f"key 'data.mask_prob' must be in (0, 1), got {self.data.mask_prob}")


def resolve_config_path(name_or_path: str) -> Path:
    """A preset name (``gpt_tiny``) under magneto/configs, or a YAML path; works from any directory."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    for cand in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config not found: {name_or_path} (presets: {', '.join(known)})")
