"""MMDetection 3.x plug-in: `custom_imports = dict(imports=['conformer.mmdet'])` registers `ConformerDet`."""

from conformer.mmdet.backbone import ConformerDet

__all__ = ["ConformerDet"]
