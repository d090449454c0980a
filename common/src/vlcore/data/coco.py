"""COCO-format detection data: a validated dataset, COCOeval in one call, and the VL files of coco_mini.

Boxes leave this module as xyxy in pixels of the stored image; COCO json keeps xywh.
Category ids (1..90, with gaps) become contiguous labels 0..K-1 in sorted id order;
`cat_id_to_label` / `label_to_cat_id` convert both ways. pycocotools is imported on
first use so that the rest of vlcore does not depend on it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vlcore.data.images import load_image, load_label_map, to_tensor
from vlcore.data.paths import DataFormatError, dataset_dir, require_dir, require_file
from vlcore.errors import UserError

COCO_MINI_FOLDER = "coco_mini"
# The 12 numbers COCOeval.summarize() prints, in its order.
COCO_STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
IGNORE_INDEX = 255


class CocoAnnotationError(DataFormatError):
    """An annotation is unusable; the message names the file and the annotation id."""


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UserError("pycocotools is required for COCO data: pip install 'vlcore[coco]'") from e
    return COCO, COCOeval, mask_utils


def read_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Parse a json file; a missing file or bad json raises an error naming it."""
    p = require_file(path, what)
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{p}: not valid json ({e.msg} at line {e.lineno} column {e.colno})") from e
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason})") from e


# --- validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotationIssue:
    ann_id: Any
    image_id: Any
    problem: str


def find_annotation_issues(data: dict, *, bound_tol: float = 1.0) -> list[AnnotationIssue]:
    """Problems of each instance annotation: unknown image or category, bad or degenerate box, box outside the image.

    A box may overhang the image by `bound_tol` pixels (COCO's own boxes are float-rounded).
    """
    images = {im["id"]: im for im in data.get("images", [])}
    cat_ids = {c["id"] for c in data.get("categories", [])}
    issues = []
    for a in data.get("annotations", []):
        aid, iid = a.get("id"), a.get("image_id")
        im = images.get(iid)
        if im is None:
            issues.append(AnnotationIssue(aid, iid, f"image_id {iid} is not in 'images'"))
            continue
        if a.get("category_id") not in cat_ids:
            issues.append(AnnotationIssue(aid, iid, f"unknown category_id {a.get('category_id')}"))
            continue
        box = a.get("bbox")
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in box
        ):
            issues.append(AnnotationIssue(aid, iid, f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"))
            continue
        x, y, w, h = box
        if w <= 0 or h <= 0:
            issues.append(AnnotationIssue(aid, iid, f"bbox {box} has non-positive width or height"))
            continue
        W, H = im.get("width"), im.get("height")
        if W is not None and H is not None and (
            x < -bound_tol or y < -bound_tol or x + w > W + bound_tol or y + h > H + bound_tol
        ):
            issues.append(AnnotationIssue(aid, iid, f"bbox {box} lies outside the {W}x{H} image"))
    return issues


def validate_coco(data: dict, *, source: str, strict: bool = True, bound_tol: float = 1.0) -> dict:
    """Check an instances json; strict: raise on the first bad annotation, else drop bad ones with one warning."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(f"{source}: not a COCO instances file (no '{key}' list)")
    ann_ids = [a.get("id") for a in data["annotations"]]
    if len(set(ann_ids)) != len(ann_ids):
        dup = next(i for i in ann_ids if ann_ids.count(i) > 1)
        raise CocoAnnotationError(f"{source}: duplicate annotation id {dup}")
    issues = find_annotation_issues(data, bound_tol=bound_tol)
    if not issues:
        return data
    first = issues[0]
    if strict:
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise CocoAnnotationError(
            f"{source}: annotation id {first.ann_id} (image {first.image_id}): {first.problem}{more}; "
            "pass strict=False to drop such annotations"
        )
    shown = ", ".join(str(i.ann_id) for i in issues[:5]) + (", ..." if len(issues) > 5 else "")
    warnings.warn(
        f"{source}: dropped {len(issues)} invalid annotation(s) (ids {shown}); first: {first.problem}",
        stacklevel=3,
    )
    bad = {i.ann_id for i in issues}
    out = dict(data)
    out["annotations"] = [a for a in data["annotations"] if a.get("id") not in bad]
    return out


def coco_from_dict(data: dict):
    """A pycocotools COCO object over an in-memory dict (without its console output)."""
    COCO, _, _ = _pycocotools()
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(ann_file: str | os.PathLike[str], *, strict: bool = True, bound_tol: float = 1.0):
    """Read, validate and index an instances json; returns a pycocotools COCO object."""
    data = read_json(ann_file, what="COCO instances annotations")
    return coco_from_dict(validate_coco(data, source=str(ann_file), strict=strict, bound_tol=bound_tol))


# --- dataset ----------------------------------------------------------------------------------


def coco_mini_paths(
    split: str = "val2017", *, kind: str = "instances", root: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """(annotation json, image folder) of coco_mini; kind is 'instances', 'instances_from_panoptic' or 'captions'."""
    base = require_dir(dataset_dir(COCO_MINI_FOLDER, root=root), "coco_mini (images/, annotations/)")
    names = {
        "instances": f"instances_{split}.json",
        "instances_from_panoptic": f"instances_{split}_from_panoptic.json",
        "captions": f"captions_{split}.json",
        "person_keypoints": f"person_keypoints_{split}.json",
    }
    if kind not in names:
        raise ValueError(f"kind must be one of {sorted(names)}, got {kind!r}")
    ann = require_file(base / "annotations" / names[kind], f"COCO {kind} annotations")
    img_dir = require_dir(base / "images" / split, f"COCO {split} JPEG images")
    return ann, img_dir


class CocoDetection(Dataset):
    """COCO instances as (image, target) pairs.

    image: float32 # 3, H, W in [0, 1]. target: boxes float32 # N, 4 (xyxy, clipped to the image),
    labels int64 # N (contiguous), cat_ids, ann_ids, iscrowd, area, image_id, orig_size (H, W),
    and masks uint8 # N, H, W when `with_masks`. Crowd regions are left out unless `include_crowd`.
    `transform(image, target) -> (image, target)` must move boxes and masks with the image.
    """

    def __init__(
        self,
        *,
        ann_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        with_masks: bool = False,
        include_crowd: bool = False,
        skip_empty: bool = False,
        strict: bool = True,
        bound_tol: float = 1.0,
        transform: Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]] | None = None,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = require_dir(image_dir, f"the images listed in {self.ann_file.name}")
        self.coco = load_coco(self.ann_file, strict=strict, bound_tol=bound_tol)
        self.with_masks = with_masks
        self.include_crowd = include_crowd
        self.transform = transform
        self.cat_ids: list[int] = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id = dict(enumerate(self.cat_ids))
        self.classes = tuple(self.coco.cats[c]["name"] for c in self.cat_ids)
        ids = sorted(self.coco.getImgIds())
        if skip_empty:
            ids = [i for i in ids if self._anns(i)]
        self.image_ids: list[int] = ids
        names = [self.coco.imgs[i]["file_name"] for i in ids]
        missing = [n for n in names if not (self.image_dir / n).is_file()]
        if missing:
            raise DataFormatError(
                f"{self.ann_file}: {len(missing)} image(s) missing from {self.image_dir}, e.g. {missing[0]}"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def _anns(self, image_id: int) -> list[dict]:
        anns = self.coco.imgToAnns.get(image_id, [])
        return [a for a in anns if self.include_crowd or not a.get("iscrowd", 0)]

    def image_path(self, i: int) -> Path:
        return self.image_dir / self.coco.imgs[self.image_ids[i]]["file_name"]

    def target(self, i: int) -> dict:
        """The target of item i without decoding its image."""
        image_id = self.image_ids[i]
        info = self.coco.imgs[image_id]
        H, W = int(info["height"]), int(info["width"])
        anns = self._anns(image_id)
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)  # N, 4 xywh
        boxes[:, 2:] += boxes[:, :2]  # xyxy
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
        t = {
            "image_id": image_id,
            "boxes": boxes.float(),
            "labels": torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "cat_ids": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "ann_ids": torch.tensor([a["id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "orig_size": (H, W),
        }
        if self.with_masks:
            with warnings.catch_warnings():
                # pycocotools' decoder trips numpy 2's __array__(copy=) deprecation; the masks are correct.
                warnings.filterwarnings("ignore", message=".*__array__ implementation", category=DeprecationWarning)
                masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, H, W), np.uint8)
            t["masks"] = torch.from_numpy(masks)  # N, H, W
        return t

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        path = self.image_path(i)
        img = load_image(path)
        t = self.target(i)
        H, W = t["orig_size"]
        if img.size != (W, H):
            raise DataFormatError(f"{path}: image is {img.size[0]}x{img.size[1]}, {self.ann_file.name} says {W}x{H}")
        x = to_tensor(img)  # 3, H, W
        if self.transform is not None:
            x, t = self.transform(x, t)
        return x, t

    @staticmethod
    def collate(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
        """Images differ in size: keep lists (pad later, where the model's stride is known)."""
        return [b[0] for b in batch], [b[1] for b in batch]

    def category_counts(self) -> dict[str, int]:
        """Annotations per class name (the long-tail statistic), crowd regions excluded unless included."""
        counts = {n: 0 for n in self.classes}
        for iid in self.image_ids:
            for a in self._anns(iid):
                counts[self.classes[self.cat_id_to_label[a["category_id"]]]] += 1
        return counts


# --- evaluation -------------------------------------------------------------------------------


def predictions_to_coco(
    *,
    image_id: int,
    boxes_xyxy: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    label_to_cat_id: dict[int, int],
    masks: torch.Tensor | np.ndarray | None = None,
    mask_threshold: float = 0.5,
) -> list[dict]:
    """One image's predictions as COCO result dicts (bbox xywh; masks as RLE with str counts)."""
    _, _, mask_utils = _pycocotools()
    b = np.asarray(torch.as_tensor(boxes_xyxy).detach().cpu(), dtype=np.float64).reshape(-1, 4)  # N, 4
    s = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64).reshape(-1)
    lab = np.asarray(torch.as_tensor(labels).detach().cpu()).reshape(-1)
    if not (len(b) == len(s) == len(lab)):
        raise ValueError(f"boxes, scores and labels disagree in length: {len(b)}, {len(s)}, {len(lab)}")
    if len(b) == 0:
        return []
    rles = None
    if masks is not None:
        m = torch.as_tensor(masks).detach().cpu()
        if m.ndim != 3 or m.shape[0] != len(b):
            raise ValueError(f"masks must be N, H, W with N = {len(b)}, got {tuple(m.shape)}")
        m = (m > mask_threshold) if m.is_floating_point() else m.bool()
        m = np.asfortranarray(m.numpy().astype(np.uint8).transpose(1, 2, 0))  # H, W, N
        rles = mask_utils.encode(m)
        for r in rles:
            r["counts"] = r["counts"].decode("ascii")
    out = []
    for k in range(len(b)):
        x0, y0, x1, y1 = b[k]
        d = {
            "image_id": int(image_id),
            "category_id": int(label_to_cat_id[int(lab[k])]),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "score": float(s[k]),
        }
        if rles is not None:
            d["segmentation"] = rles[k]
        out.append(d)
    return out


def ground_truth_as_detections(coco, *, iou_type: str = "bbox") -> list[dict]:
    """Every non-crowd ground-truth instance as a detection with score 1 (a sanity check: AP must be 1)."""
    dets = []
    for a in coco.dataset["annotations"]:
        if a.get("iscrowd", 0):
            continue
        d = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
        if iou_type == "segm":
            rle = coco.annToRLE(a)
            counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
            d["segmentation"] = {"size": rle["size"], "counts": counts}
        dets.append(d)
    return dets


def coco_evaluate(
    detections: Iterable[dict],
    *,
    coco_gt: Any,
    iou_type: str = "bbox",
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """COCOeval on `detections` (COCO result dicts); returns the 12 summary numbers keyed by COCO_STAT_NAMES.

    `coco_gt` is a COCO object or the path of an instances json. `image_ids` limits the evaluation
    (default: every image of the ground truth, so images without detections count as misses).
    With no detections at all every number is 0.
    """
    COCO, COCOeval, _ = _pycocotools()
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt = coco_gt if not isinstance(coco_gt, (str, os.PathLike)) else load_coco(coco_gt)
    dets = list(detections)
    if not dets:
        return {k: 0.0 for k in COCO_STAT_NAMES}
    known = set(gt.getImgIds())
    unknown = sorted({d["image_id"] for d in dets} - known)
    if unknown:
        raise ValueError(f"{len(unknown)} detection image ids are not in the ground truth, e.g. {unknown[0]}")
    if iou_type == "segm":
        if any("segmentation" not in d for d in dets):
            raise ValueError("segm evaluation needs a 'segmentation' (RLE) in every detection")
        # With a bbox present, loadRes takes the box area as the instance area, which changes the
        # small/medium/large split; without it the mask area is used, as for the ground truth.
        dets = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
    else:
        dets = [{k: v for k, v in d.items() if k != "segmentation"} for d in dets]
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(COCO_STAT_NAMES, ev.stats)}


# --- captions and vision-language files -------------------------------------------------------


def load_coco_captions(ann_file: str | os.PathLike[str]) -> dict[int, list[str]]:
    """image id -> its captions (file order), for every image listed (empty list if none)."""
    data = read_json(ann_file, what="COCO captions")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataFormatError(f"{ann_file}: not a COCO captions file (no 'annotations' list)")
    out: dict[int, list[str]] = {int(im["id"]): [] for im in data.get("images", [])}
    for a in data["annotations"]:
        if "caption" not in a:
            raise DataFormatError(f"{ann_file}: annotation id {a.get('id')} has no 'caption'")
        out.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
    return dict(sorted(out.items()))


def _xywh_to_xyxy(b: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in b)
    return (x, y, x + w, y + h)


@dataclass(frozen=True)
class RefExp:
    """A referring expression and its target box (xyxy pixels)."""

    image_id: int
    image: str  # path relative to the coco_mini folder
    sentence: str
    box: tuple[float, float, float, float]
    dataset: str  # refcoco, refcoco+ or refcocog
    split: str
    ref_key: str
    width: int
    height: int


def _items(path: str | os.PathLike[str], *, what: str, key: str) -> list[dict]:
    data = read_json(path, what=what)
    items = data.get(key) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DataFormatError(f"{path}: expected a list under '{key}'")
    return items


def load_refexp(path: str | os.PathLike[str]) -> list[RefExp]:
    """coco_mini/vl/refexp_subset.json (RefCOCO / RefCOCO+ / RefCOCOg expressions)."""
    out = []
    for i, r in enumerate(_items(path, what="referring expressions", key="data")):
        try:
            out.append(
                RefExp(
                    image_id=int(r["image_id"]), image=str(r["image"]), sentence=str(r["sentence"]),
                    box=_xywh_to_xyxy(r["bbox_xywh"]), dataset=str(r["dataset"]), split=str(r["split"]),
                    ref_key=str(r.get("ref_key", "")), width=int(r["width"]), height=int(r["height"]),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(f"{path}: item {i} is malformed ({type(e).__name__}: {e})") from e
    return out


@dataclass(frozen=True)
class CaptionPhrase:
    text: str
    span: tuple[int, int]  # characters [start, end) of the caption
    boxes: tuple[tuple[float, float, float, float], ...]  # xyxy
    category: str


@dataclass(frozen=True)
class GroundedCaption:
    image_id: int
    file_name: str
    caption: str
    width: int
    height: int
    phrases: tuple[CaptionPhrase, ...]


def load_grounded_captions(path: str | os.PathLike[str]) -> list[GroundedCaption]:
    """coco_mini/derived/grounded_captions_val2017_heuristic.json (heuristic links, not human grounding)."""
    out = []
    for i, r in enumerate(_items(path, what="grounded captions", key="data")):
        try:
            phrases = []
            for p in r["phrases"]:
                s, e = (int(v) for v in p["span"])
                if r["caption"][s:e] != p["text"]:
                    raise ValueError(f"span {s}:{e} of the caption is {r['caption'][s:e]!r}, not {p['text']!r}")
                phrases.append(
                    CaptionPhrase(p["text"], (s, e), tuple(_xywh_to_xyxy(b) for b in p["boxes_xywh"]), p["category"])
                )
            out.append(
                GroundedCaption(int(r["image_id"]), str(r["file_name"]), str(r["caption"]), int(r["width"]),
                                int(r["height"]), tuple(phrases))
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(f"{path}: item {i} is malformed ({type(e).__name__}: {e})") from e
    return out


@dataclass(frozen=True)
class VQAItem:
    question_id: str
    image_id: int
    question: str
    answers: tuple[str, ...]  # human answers (10 for OK-VQA / A-OKVQA) or the one computed answer
    choices: tuple[str, ...] = ()  # A-OKVQA multiple choice
    correct_choice: int | None = None
    image: str | None = None  # path relative to coco_mini when the file gives one


def load_vqa(path: str | os.PathLike[str]) -> list[VQAItem]:
    """Any of coco_mini's VQA files: vl/aokvqa_val_subset.json, vl/okvqa_val_subset.json,
    derived/vqa_template_val2017.json."""
    data = read_json(path, what="VQA questions")
    items = data.get("data", data.get("questions")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DataFormatError(f"{path}: expected a list under 'data' or 'questions'")
    out = []
    for i, r in enumerate(items):
        try:
            if "direct_answers" in r:
                answers = tuple(r["direct_answers"])
            elif "answers" in r:
                answers = tuple(r["answers"])
            else:
                answers = (str(r["answer"]),)
            out.append(
                VQAItem(
                    question_id=str(r["question_id"]), image_id=int(r["image_id"]), question=str(r["question"]),
                    answers=tuple(str(a) for a in answers), choices=tuple(r.get("choices", ())),
                    correct_choice=r.get("correct_choice_idx"), image=r.get("image"),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataFormatError(f"{path}: item {i} is malformed ({type(e).__name__}: {e})") from e
    return out


# --- semantic segmentation (COCO panoptic classes) ----------------------------------------------


def panoptic_label_lut(categories: Sequence[dict]) -> np.ndarray:
    """uint8 lookup # 256: panoptic category id -> contiguous 0..K-1 (sorted id order), else IGNORE_INDEX."""
    ids = sorted(int(c["id"]) for c in categories)
    if len(ids) >= IGNORE_INDEX or ids[-1] > 255:
        raise DataFormatError(f"{len(ids)} categories with ids up to {ids[-1]} do not fit a uint8 label map")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[ids] = np.arange(len(ids), dtype=np.uint8)
    return lut


class CocoSemanticSegmentation(Dataset):
    """coco_mini/semantic_masks: (image float32 # 3, H, W, label int64 # H, W with 0..132 and 255 = unlabeled).

    The stored PNG values are COCO panoptic category ids; they are mapped with the 133
    panoptic categories (80 things + 53 stuff) in sorted id order.
    """

    def __init__(
        self,
        *,
        split: str = "val2017",
        root: str | os.PathLike[str] | None = None,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        base = require_dir(dataset_dir(COCO_MINI_FOLDER, root=root), "coco_mini (images/, semantic_masks/)")
        self.mask_dir = require_dir(base / "semantic_masks" / split, f"COCO {split} semantic label PNGs")
        self.image_dir = require_dir(base / "images" / split, f"COCO {split} JPEG images")
        cats = read_json(base / "annotations" / "panoptic_coco_categories.json", what="COCO panoptic categories")
        self.lut = panoptic_label_lut(cats)
        by_id = {int(c["id"]): c for c in cats}
        self.classes = tuple(by_id[i]["name"] for i in sorted(by_id))
        self.isthing = tuple(bool(by_id[i].get("isthing", 0)) for i in sorted(by_id))
        self.names = sorted(p.stem for p in self.mask_dir.glob("*.png"))
        missing = [n for n in self.names if not (self.image_dir / f"{n}.jpg").is_file()]
        if missing:
            raise DataFormatError(
                f"{self.mask_dir}: {len(missing)} label map(s) without an image, e.g. {missing[0]}.jpg"
            )
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.names)

    def label(self, i: int) -> torch.Tensor:
        path = self.mask_dir / f"{self.names[i]}.png"
        raw = load_label_map(path)
        if raw.dtype != np.uint8:
            raise DataFormatError(f"{path}: label values up to {raw.max()} exceed the 8-bit category ids")
        return torch.from_numpy(self.lut[raw].astype(np.int64))  # H, W

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.image_dir / f"{self.names[i]}.jpg"
        x = to_tensor(load_image(path))  # 3, H, W
        y = self.label(i)
        if tuple(y.shape) != tuple(x.shape[1:]):
            raise DataFormatError(f"{path}: image is {tuple(x.shape[1:])}, its label map {tuple(y.shape)}")
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y
