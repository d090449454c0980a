"""MMSegmentation 1.x plug-in for BEiT v2: the backbone, a layer-decay optimizer
constructor for it, and a COCO panoptic-derived semantic segmentation dataset.

Load it from a config with ``custom_imports = dict(imports=['beit2.mmseg'])``.
"""

from beit2.mmseg.backbone import BEiTv2ViT
from beit2.mmseg.datasets import COCOPanopticSemanticDataset
from beit2.mmseg.optim import BEiTv2LayerDecayOptimizerConstructor

__all__ = ["BEiTv2ViT", "BEiTv2LayerDecayOptimizerConstructor", "COCOPanopticSemanticDataset"]
