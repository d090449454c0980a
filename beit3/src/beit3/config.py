"""Typed configuration of BEiT-3 pretraining and fine-tuning (``python -m beit3.train --config ... --set k=v``).

One schema serves every task; a YAML preset holds only what differs from these defaults
(paper-scale recipes in ``beit3/configs/``, tiny ``smoke_*`` presets beside them).

* ``pretrain``: masked data modelling on image-only (blockwise-masked patches -> visual
  token ids), text-only (MLM) and image-text (MLM on the text, image visible) data; one
  batch item = one image + one text + one pair, so a batch of B is the paper's B/B/B mix;
* ``vqa``: fused encoder, pooler + MLP over the answer vocabulary, BCE x num_answers;
* ``nlvr2``: two fused passes, 2-way classifier;
* ``retrieval``: dual encoder, symmetric InfoNCE;
* ``captioning``: masked-token LM under the causal text mask, greedy or beam decoding, BLEU-4 / CIDEr-D;
* ``imagenet``: vision branch only, mean-pooled patches, LayerNorm, linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from vlcore.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
Task = Literal["pretrain", "vqa", "nlvr2", "retrieval", "captioning", "imagenet"]


@dataclass(frozen=True)
class ArchConfig:
    """The Multiway backbone (defaults: BEiT3-base, released decoupled layout)."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    vocab_size: int = 0  # 0: the tokenizer's size (64010 for the released sentencepiece model)
    max_text_len: int = 1024  # rows of the language position table
    multiway: Literal["decoupled", "shared_attention", "none"] = "decoupled"  # none: dense ablation
    vl_layers: int = 0  # shared_attention: top layers with a VL-FFN expert (paper giant: 3)
    drop_path_rate: float = 0.0
    magneto_init: bool = True  # Sub-LN gain sqrt(log 2N), applied after the trunc-normal init


@dataclass(frozen=True)
class DataConfig:
    # synthetic: generated scenes (vlcore.data.synthetic) with captions, questions and shape labels;
    # coco_captions: a COCO captions json + image folder (coco_mini or Karpathy-split files);
    # imagefolder: ROOT/train/<class>/*, ROOT/val/<class>/* (ImageNet);
    # karpathy: ROOT/{karpathy_file} (dataset_coco.json / dataset_flickr30k.json), splits train(+restval) / val / test;
    # vqav2: ROOT/v2_OpenEnded_mscoco_{split}_questions.json + v2_mscoco_{split}_annotations.json, ROOT/{split}/ images;
    # nlvr2: ROOT/{split}.json (jsonl), ROOT/images/{split}/ (layouts: beit3.datasets, beit3.data.*_corpus)
    dataset: Literal["synthetic", "coco_captions", "karpathy", "imagefolder", "vqav2", "nlvr2"] = "synthetic"
    root: Optional[str] = None  # coco_captions: folder with annotations/ and images/ (default ../shared/data/coco_mini)
    train_split: str = "train2017"
    eval_split: str = "val2017"
    karpathy_file: str = "dataset_coco.json"
    image_dir: str = ""  # karpathy: images under ROOT/{image_dir}; vqav2 / nlvr2: replaces {split} / images
    num_train: int = 2000  # synthetic: items generated; other datasets: 0 = all
    num_eval: int = 500
    seed: int = 0
    tokenizer: Literal["words", "spm"] = "words"  # words: vocabulary of the data; spm: sentencepiece (XLM-R ids)
    spm_path: Optional[str] = None  # beit3.spm for the released checkpoints
    max_text_len: int = 64  # tokens incl. <s> and </s> (official: 64; captioning 32)
    normalize: Literal["inception", "imagenet"] = "inception"  # 0.5/0.5 for VL tasks, ImageNet stats for ImageNet


@dataclass(frozen=True)
class MDMConfig:
    """Masked data modelling (paper section 2.2)."""

    visual_tokenizer: Literal["kmeans", "vqkd"] = "vqkd"
    tokenizer_checkpoint: Optional[str] = None  # vqkd: a BEiT v2 VQ-KD checkpoint (beit2.convert layouts)
    num_visual_tokens: int = 8192
    image_mask_ratio: float = 0.4  # blockwise, of the patches
    text_mask_ratio: float = 0.15  # monomodal text
    pair_text_mask_ratio: float = 0.5  # text of image-text pairs
    use_images: bool = True
    use_texts: bool = True
    use_pairs: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    init_checkpoint: Optional[str] = None  # our run folder / safetensors, or an official unilm .pth
    num_answers: int = 3129  # vqa: vqav2 keeps this many most frequent training answers; synthetic: all
    num_classes: int = 1000  # imagenet; synthetic data: the 6 shapes
    head_lr_weight: float = 1.0  # vqa: lr x this for parameters named head.* (official 20)
    label_smoothing: float = 0.1  # imagenet / captioning
    caption_mask_prob: float = 0.6  # captioning: masked-token ratio of caption tokens
    caption_max_len: int = 32
    num_beams: int = 1  # captioning decoding: 1 = greedy, > 1 = beam search (BEiT3ForCaptioning.generate_beam)
    length_penalty: float = 1.0  # beam score = sum log p / (generated tokens) ** length_penalty
    retrieval_ks: tuple[int, int, int] = (1, 5, 10)


@dataclass(frozen=True)
class BEiT3Config:
    task: Task = "pretrain"
    model: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mdm: MDMConfig = field(default_factory=MDMConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_batch_size: int = 64


def resolve_config_path(path: str | Path) -> Path:
    """A preset path as given, else relative to ``beit3/configs`` (any working directory works)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if cand.is_file():
            return cand
    from vlcore.config import ConfigError

    presets = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file not found: {path} (not a file, nor a preset in {CONFIG_DIR}: {presets})")
