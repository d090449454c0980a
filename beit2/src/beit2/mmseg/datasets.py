"""COCO semantic masks derived from the panoptic annotations, as an MMSegmentation dataset.

The masks hold COCO panoptic category ids (1..200, not contiguous; 0 = unlabelled).
They are mapped to 0..132 in the order of ``panoptic_coco_categories.json`` and 0 to
255 (ignored), through MMSegmentation's ``label_map`` (applied by ``LoadAnnotations``).
Only images that have a mask are listed.
"""

from __future__ import annotations

import json
import os.path as osp
from pathlib import Path

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class COCOPanopticSemanticDataset(BaseSegDataset):
    """``data_root`` e.g. ``shared/data/coco_mini``; ``data_prefix=dict(img_path='images/val2017',
    seg_map_path='semantic_masks/val2017')``; ``categories_file`` relative to ``data_root``."""

    def __init__(self, *, categories_file: str = "annotations/panoptic_coco_categories.json", data_root: str = "",
                 **kwargs) -> None:
        path = Path(data_root) / categories_file
        if not path.is_file():
            raise FileNotFoundError(f"COCO panoptic category list not found: {path}")
        cats = json.loads(path.read_text())
        self._lut = {int(c["id"]): i for i, c in enumerate(cats)}
        self._lut[0] = 255
        metainfo = dict(classes=tuple(c["name"] for c in cats), palette=[list(c["color"]) for c in cats])
        kwargs.setdefault("img_suffix", ".jpg")
        kwargs.setdefault("seg_map_suffix", ".png")
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        img_dir = self.data_prefix["img_path"]
        ann_dir = self.data_prefix["seg_map_path"]
        out = []
        for name in sorted(p.name for p in Path(ann_dir).glob(f"*{self.seg_map_suffix}")):
            stem = name[: -len(self.seg_map_suffix)]
            img = osp.join(img_dir, stem + self.img_suffix)
            if osp.isfile(img):
                out.append(dict(img_path=img, seg_map_path=osp.join(ann_dir, name), label_map=self._lut,
                                reduce_zero_label=False, seg_fields=[]))
        if not out:
            raise FileNotFoundError(f"no image / mask pairs under {img_dir} and {ann_dir}")
        return out
