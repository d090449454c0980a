"""Visual tokenizers shared by the papers (VQ-KD: BEiT v2, BEiT-3, MaskDistill)."""

from vlcore.tokenizers.vqkd import (
    VQKD,
    VQKD_CONFIGS,
    ClipTeacher,
    ModuleTeacher,
    NormEMAVectorQuantizer,
    Teacher,
    TimmTeacher,
    VQKDConfig,
    VQKDOutput,
    build_vqkd,
    kmeans_cosine,
    vqkd_state_dict_from_official,
)

__all__ = [
    "VQKD",
    "VQKD_CONFIGS",
    "ClipTeacher",
    "ModuleTeacher",
    "NormEMAVectorQuantizer",
    "Teacher",
    "TimmTeacher",
    "VQKDConfig",
    "VQKDOutput",
    "build_vqkd",
    "kmeans_cosine",
    "vqkd_state_dict_from_official",
]
