"""MMDetection 3.x plug-in of G2SD specific distillation for detection / instance segmentation.

Importing this package (``custom_imports=dict(imports=['g2sd.mmdet'])``) registers:
``G2SDViTDet`` (plain ViT backbone with window + global attention and decomposed relative
position), ``G2SDSimpleFPN`` (ViTDet's simple feature pyramid, p2-p6), ``G2SDLN2d``,
``G2SDDistillMaskRCNN`` (student Mask R-CNN + frozen teacher + FRS feature / objectness
distillation) and ``G2SDViTLayerDecayConstructor`` (layer-wise lr decay).
"""

from g2sd.mmdet.distill_mask_rcnn import G2SDDistillMaskRCNN
from g2sd.mmdet.layer_decay import ViTLayerDecayOptimizerConstructor
from g2sd.mmdet.vitdet import LayerNorm2d, SimpleFPN, ViTDet

__all__ = ["G2SDDistillMaskRCNN", "LayerNorm2d", "SimpleFPN", "ViTDet", "ViTLayerDecayOptimizerConstructor"]
