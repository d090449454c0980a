"""Long-tailed data: published split files, the CIFAR-LT construction, shot groups."""

from lda.data.longtail import ShotGroups, class_counts, shot_groups
from lda.data.splits import LTSplit, read_inaturalist_json, read_split, read_split_txt

__all__ = ["LTSplit", "ShotGroups", "class_counts", "read_inaturalist_json", "read_split", "read_split_txt",
           "shot_groups"]
