"""LDA for long-tailed detection and instance segmentation, as an MMDetection 3.x plug-in.

Importing this package registers `LDABBoxHead`, `LDARoIHead` (mmdet MODELS) and
`LongTailCocoMetric` (mmdet METRICS). Configs load it with
`custom_imports = dict(imports=['lda.mmdet'], allow_failed_imports=False)`.
"""

from lda.mmdet.lda_bbox_head import LDABBoxHead, LDARoIHead, category_counts
from lda.mmdet.lt_coco_metric import LongTailCocoMetric, frequency_buckets

__all__ = ["LDABBoxHead", "LDARoIHead", "LongTailCocoMetric", "category_counts", "frequency_buckets"]
