"""The ten papers of the monorepo, in the order `make repro` runs them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    package: str
    title: str
    issue: int


PAPERS: tuple[Paper, ...] = (
    Paper("magneto", "Magneto: a foundation Transformer (Sub-LN + DeepNet-derived init)", 3),
    Paper("beit2", "BEiT v2: masked image modelling with VQ-KD visual tokenizers", 4),
    Paper("maskdistill", "MaskDistill: a unified view of masked image modelling", 5),
    Paper("beit3", "BEiT-3: Multiway Transformer, masked data modelling on images and texts", 6),
    Paper("g2sd", "G2SD: generic-to-specific distillation of masked autoencoders", 7),
    Paper("imted", "imTED: integrally migrating MAE encoder-decoders into a detector", 8),
    Paper("lda", "LDA: long-tailed recognition as domain adaptation", 9),
    Paper("conformer", "Conformer: concurrent CNN and transformer branches coupled by FCUs", 10),
    Paper("kosmos2", "Kosmos-2: grounding multimodal LLMs to the world", 11),
    Paper("kosmos_g", "Kosmos-G: image generation in context with multimodal LLMs", 12),
)


def paper(package: str) -> Paper:
    for p in PAPERS:
        if p.package == package:
            return p
    raise KeyError(f"unknown paper '{package}'; known: {', '.join(p.package for p in PAPERS)}")
