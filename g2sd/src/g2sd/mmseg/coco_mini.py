"""coco_mini's semantic maps as an mmseg dataset (133 COCO panoptic classes, 0 = unlabeled -> 255)."""

from __future__ import annotations

import json
from pathlib import Path

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from vlcore.data.coco import panoptic_label_lut


@DATASETS.register_module(name="G2SDCocoMiniSemantic")
class CocoMiniSemantic(BaseSegDataset):
    """``data_root`` = coco_mini; ``data_prefix=dict(img_path='images/val2017', seg_map_path='semantic_masks/val2017')``.

    The PNGs store COCO panoptic category ids; they are remapped to 0..132 (sorted id order)
    through ``label_map``, unlabeled pixels to 255.
    """

    def __init__(self, **kwargs) -> None:
        root = Path(kwargs.get("data_root") or ".")
        cats = json.loads((root / "annotations" / "panoptic_coco_categories.json").read_text())
        lut = panoptic_label_lut(cats)
        names = tuple(c["name"] for c in sorted(cats, key=lambda c: int(c["id"])))
        kwargs.setdefault("img_suffix", ".jpg")
        kwargs.setdefault("seg_map_suffix", ".png")
        kwargs["metainfo"] = dict(classes=names, palette=[[i % 256, (7 * i) % 256, (13 * i) % 256] for i in range(len(names))])
        self._lut = {int(i): int(lut[i]) for i in range(256)}
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        # Only some images have a semantic map: list the maps, not the images.
        img_dir, ann_dir = Path(self.data_prefix["img_path"]), Path(self.data_prefix["seg_map_path"])
        out = []
        for seg in sorted(ann_dir.glob(f"*{self.seg_map_suffix}")):
            img = img_dir / (seg.name[: -len(self.seg_map_suffix)] + self.img_suffix)
            if not img.is_file():
                raise FileNotFoundError(f"{seg}: no image {img}")
            out.append(dict(img_path=str(img), seg_map_path=str(seg), label_map=self.label_map,
                            reduce_zero_label=self.reduce_zero_label, seg_fields=[]))
        return out

    def get_label_map(self, new_classes=None):  # noqa: D401 - mmseg hook
        # Every stored value is remapped (unknown ids and 0 -> 255), not only renamed classes.
        return getattr(self, "_lut", None)
