"""MMDetection 3.x plug-in of imTED: import this package (``custom_imports``) to register the modules."""

from imted.mmdet.backbone import ImTEDSimpleFPN, ImTEDViT
from imted.mmdet.detector import ImTED
from imted.mmdet.layer_decay import ImTEDLayerDecayConstructor
from imted.mmdet.roi_head import ImTEDRoIHead, MAEBBoxHead

__all__ = ["ImTED", "ImTEDLayerDecayConstructor", "ImTEDRoIHead", "ImTEDSimpleFPN", "ImTEDViT", "MAEBBoxHead"]
