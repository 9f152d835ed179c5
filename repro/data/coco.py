"""COCO 2017 instance detection/segmentation.

Expected: `root/annotations/instances_{train,val}2017.json` and `root/{train,val}2017/*.jpg`
(cfg `year` changes 2017). Items are `(image, target)`: image float [0, 1] (3, H, W); target
has `boxes` (N, 4) xyxy float, `labels` (N,) int64 in 1..K, `masks` (N, H, W) uint8,
`image_id` int. Labels are contiguous: the sorted category ids map to 1..K (0 is background
for torchvision-style detectors); `label_to_cat_id` maps back for evaluation.

Checked when the dataset is built (DataError):
  * the annotation json missing or unreadable, the image folder missing;
  * images listed in the json but missing on disk (how many, and the first).
Not errors, by design:
  * annotations with a box of width or height <= 0 (or that vanish when clipped to the image)
    are skipped and counted in `skipped_annotations`: real COCO train has a handful of them
    and a training run should not stop for them; a box with no extent cannot be learned.
  * crowd annotations (iscrowd=1) are left out of the targets, as in torchvision's detection
    references; COCOeval still sees them through the json and treats them as "ignore".
  * an annotation without a usable segmentation gets its box as mask.
  * in the train split, images with no usable annotation are dropped (they give no gradient to
    the box heads); the val split keeps every image so evaluation covers the whole set.
Images are decoded in `__getitem__`; a corrupt file raises DataError naming it.
Train split: horizontal flip of image, boxes and masks unless cfg `hflip: false`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from repro.data.transforms import load_rgb
from repro.errors import DataError

LAYOUT = "root/annotations/instances_<split>2017.json and root/<split>2017/*.jpg"


def load_coco(json_path: Path) -> COCO:
    """pycocotools' COCO with its progress prints silenced and its failures turned into DataError."""
    if not json_path.is_file():
        raise DataError(f"COCO annotation file {json_path} is missing; expected {LAYOUT}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(json_path))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AssertionError) as e:
        raise DataError(f"COCO annotation file {json_path} is not valid COCO json ({type(e).__name__}: {e})") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in coco.dataset]
    if missing:
        raise DataError(f"COCO annotation file {json_path} lacks {', '.join(missing)}; is it an instances_*.json?")
    return coco


def ann_to_mask(segmentation, height: int, width: int) -> np.ndarray | None:
    """Polygon list, uncompressed RLE or compressed RLE -> (H, W) uint8 mask (None: no usable polygon)."""
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        # Parts with < 3 points are dropped: pycocotools would read a 4-number part as a box.
        parts = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not parts:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowd-style)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def detection_collate(batch):
    """Detection batches are lists: images differ in size and targets in object count."""
    return tuple(zip(*batch))


class CocoDetection(torch.utils.data.Dataset):
    def __init__(self, json_path: Path, image_dir: Path, train: bool, hflip: bool = True):
        json_path, image_dir = Path(json_path), Path(image_dir)
        self.coco = load_coco(json_path)
        if not image_dir.is_dir():
            raise DataError(f"COCO image folder {image_dir} is missing; expected {LAYOUT}")
        self.image_dir = image_dir
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id = {i + 1: c for i, c in enumerate(self.cat_ids)}
        self.classes = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self.num_classes = len(self.cat_ids)

        images = [self.coco.imgs[i] for i in sorted(self.coco.imgs)]
        if not images:
            raise DataError(f"{json_path} lists no images; expected {LAYOUT}")
        unknown = [a["id"] for a in self.coco.anns.values() if a["category_id"] not in self.cat_id_to_label]
        if unknown:
            raise DataError(f"{len(unknown)} annotations in {json_path} have a category_id missing from "
                            f"its categories (first: annotation {unknown[0]})")
        # One listdir instead of 118k stat calls; names with a subfolder fall back to a stat.
        on_disk = set(os.listdir(image_dir))
        missing = [im["file_name"] for im in images
                   if im["file_name"] not in on_disk and not (image_dir / im["file_name"]).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(images)} images listed in {json_path} are missing "
                f"from {image_dir} (first: {missing[0]})"
            )

        self.skipped_annotations = 0
        self.annotations: dict[int, list[dict]] = {}
        for im in images:
            usable = []
            for ann in self.coco.imgToAnns.get(im["id"], []):
                if ann.get("iscrowd", 0):
                    continue
                box = self._clipped_box(ann["bbox"], im["width"], im["height"])
                if box is None:
                    self.skipped_annotations += 1
                    continue
                usable.append({**ann, "box_xyxy": box})
            self.annotations[im["id"]] = usable
        if train:
            images = [im for im in images if self.annotations[im["id"]]]
        self.images = images
        self.ids = [im["id"] for im in images]
        self.flip = v2.RandomHorizontalFlip() if (train and hflip) else None

    @staticmethod
    def _clipped_box(bbox, width: int, height: int):
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            return None
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(width), x + w), min(float(height), y + h)
        if x2 <= x1 or y2 <= y1:  # entirely outside the image
            return None
        return [x1, y1, x2, y2]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        info = self.images[index]
        path = self.image_dir / info["file_name"]
        pil = load_rgb(path)
        h, w = info["height"], info["width"]
        if pil.size != (w, h):  # masks are rasterised at the json size, so they must agree
            raise DataError(f"image {path} is {pil.size[0]}x{pil.size[1]} but the json says {w}x{h}")
        anns = self.annotations[info["id"]]
        masks = np.zeros((len(anns), h, w), dtype=np.uint8)
        for i, ann in enumerate(anns):
            mask = ann_to_mask(ann["segmentation"], h, w) if ann.get("segmentation") else None
            if mask is not None:
                masks[i] = mask
            else:
                x1, y1, x2, y2 = ann["box_xyxy"]
                masks[i, int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1

        image = F.to_dtype(F.to_image(pil), torch.float32, scale=True)
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.tensor([a["box_xyxy"] for a in anns], dtype=torch.float32).reshape(-1, 4),
                format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "image_id": int(info["id"]),
        }
        if self.flip is not None:
            image, target = self.flip(image, target)
        # Plain tensors out: tv_tensors would otherwise leak their subclass into models and losses.
        target["boxes"] = target["boxes"].as_subclass(torch.Tensor)
        target["masks"] = target["masks"].as_subclass(torch.Tensor)
        return image.as_subclass(torch.Tensor), target


def build(cfg: dict, split: str, root: Path) -> CocoDetection:
    root = Path(root)
    year = cfg.get("year", 2017)
    if not root.is_dir():
        raise DataError(f"COCO folder {root} does not exist; expected {LAYOUT}")
    if split not in ("train", "val"):
        raise DataError(f"coco has splits 'train' and 'val', not {split!r}")
    return CocoDetection(
        root / "annotations" / f"instances_{split}{year}.json",
        root / f"{split}{year}",
        train=split == "train",
        hflip=bool(cfg.get("hflip", True)),
    )
