"""Data utilities shared by the papers.

paths      where the real data lives (`../shared/data`, `$VLREPRO_DATA`), missing-data errors
images     image decoding that fails loudly on corrupt files
cifar      CIFAR-10 subset, long-tailed and balanced subsets
coco       COCO detection dataset with validation, COCOeval helper, captions / grounding / VQA files
text       tiny-shakespeare and WikiText-2, char and word tokenizers, LM blocks
ade20k     ADE20K layout reader, confusion-matrix mIoU
synthetic  seeded coloured-shape scenes with boxes, masks, captions, grounding and QA

Names are imported from their submodule on first use, so `import vlcore.data` stays cheap
and pycocotools is only needed by the COCO helpers.
"""

from __future__ import annotations

import importlib
from typing import Any

from vlcore.data.paths import (
    DataFormatError,
    DataNotFoundError,
    dataset_dir,
    repo_root,
    require_dir,
    require_file,
    shared_data_root,
)

_LAZY = {
    "images": ("CorruptImageError", "load_image", "load_rgb", "load_label_map", "to_tensor"),
    "cifar": (
        "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CifarArrays", "CIFAR10Subset", "load_cifar10",
        "load_cifar10_arrays", "long_tail_counts", "long_tail_indices", "balanced_subset_indices",
    ),
    "coco": (
        "COCO_STAT_NAMES", "CocoAnnotationError", "CocoDetection", "CocoSemanticSegmentation", "coco_mini_paths",
        "load_coco", "validate_coco", "coco_evaluate", "predictions_to_coco", "ground_truth_as_detections",
        "load_coco_captions", "load_refexp", "load_grounded_captions", "load_vqa",
    ),
    "text": (
        "TextDecodeError", "read_text", "load_tiny_shakespeare", "load_wikitext2", "CharTokenizer", "WordVocab",
        "TokenBlockDataset", "split_ids", "random_blocks", "LMCorpus", "shakespeare_char_corpus",
        "wikitext2_word_corpus",
    ),
    "ade20k": (
        "ADE20KSceneParsing", "load_ade20k_classes", "reduce_zero_label", "confusion_matrix",
        "metrics_from_confusion", "mean_iou", "SegmentationMeter",
    ),
    "synthetic": ("SceneConfig", "Scene", "SceneObject", "generate_scene", "SyntheticScenes", "collate_scenes"),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

__all__ = [
    "DataFormatError", "DataNotFoundError", "dataset_dir", "repo_root", "require_dir", "require_file",
    "shared_data_root", *_WHERE,
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'vlcore.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vlcore.data.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
