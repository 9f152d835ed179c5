"""COCO box/mask AP with pycocotools' COCOeval, in the units papers print (percent).

`detections` are COCO result dicts: {"image_id", "category_id" (the json's id, not the
contiguous label), "bbox" [x, y, w, h], "score"} plus "segmentation" (RLE) for mask AP.
`to_coco_results` turns torchvision-style model outputs into that form.

Returned keys: box_ap (AP@[.5:.95]), box_ap50, box_ap75, box_ap_s/_m/_l, and the same with
mask_ for "segm". An area range without ground truth gives NaN (COCOeval's -1). No detections at
all gives 0 rather than pycocotools' crash on an empty result list.
Like every COCOeval user, this rewrites the polygons of `coco_gt`'s annotations into RLE in
place (same masks, other encoding); CocoDetection keeps its own copies, so it is unaffected.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

PREFIX = {"bbox": "box", "segm": "mask"}
# Positions in COCOeval.stats (see COCOeval.summarize).
STATS = {"ap": 0, "ap50": 1, "ap75": 2, "ap_s": 3, "ap_m": 4, "ap_l": 5}


def evaluate_coco(coco_gt: COCO, detections: list[dict], iou_types=("bbox", "segm")) -> dict:
    for iou_type in iou_types:
        if iou_type not in PREFIX:
            raise ValueError(f"unknown iou_type {iou_type!r}; use 'bbox' and/or 'segm'")
    if "segm" in iou_types and any("segmentation" not in d for d in detections):
        raise ValueError("mask AP needs a 'segmentation' in every detection; pass iou_types=('bbox',)")

    results = {}
    if not detections:
        for iou_type in iou_types:
            results.update({f"{PREFIX[iou_type]}_{k}": 0.0 for k in STATS})
        return results

    # loadRes adds ids/areas to the dicts it gets, so it gets a copy.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        for iou_type in iou_types:
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            for key, pos in STATS.items():
                value = float(evaluator.stats[pos])
                results[f"{PREFIX[iou_type]}_{key}"] = value * 100 if value >= 0 else math.nan
    return results


def to_coco_results(outputs: list[dict], image_ids: list[int], label_to_cat_id: dict[int, int],
                    mask_threshold: float = 0.5) -> list[dict]:
    """torchvision detector outputs (boxes xyxy, labels, scores, optional masks (N,1,H,W) in
    [0, 1]) -> COCO result dicts, with labels mapped back to the json's category ids."""
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu().float()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        labels = out["labels"].tolist()
        scores = out["scores"].tolist()
        rles = None
        if "masks" in out and len(labels):
            masks = (out["masks"].detach().cpu()[:, 0] > mask_threshold).numpy().astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for i, (box, label, score) in enumerate(zip(xywh, labels, scores)):
            det = {"image_id": int(image_id), "category_id": label_to_cat_id[int(label)],
                   "bbox": [round(v, 2) for v in box], "score": float(score)}
            if rles is not None:
                rle = rles[i]
                det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            results.append(det)
    return results
