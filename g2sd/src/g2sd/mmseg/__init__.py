"""MMSegmentation 1.x plug-in of G2SD specific distillation for semantic segmentation.

Importing this package (``custom_imports=dict(imports=['g2sd.mmseg'])``) registers
``G2SDDistillEncoderDecoder`` (UperNet student + frozen teacher + channel-wise
distillation of the logits) and ``G2SDCocoMiniSemantic`` (coco_mini's semantic maps, used
by the smoke configuration). The backbone is mmseg's BEiT-derived ``MAE`` (absolute and
per-block relative position, layer scale), the neck ``Feature2Pyramid``.
"""

from g2sd.mmseg.coco_mini import CocoMiniSemantic
from g2sd.mmseg.distill_encoder_decoder import G2SDDistillEncoderDecoder

__all__ = ["CocoMiniSemantic", "G2SDDistillEncoderDecoder"]
