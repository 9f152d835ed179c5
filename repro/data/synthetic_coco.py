"""A small synthetic detection dataset written in the COCO layout, so the detection pipeline
(loader, model, COCOeval) runs end to end without COCO.

Each image (image_size x image_size, default 96) has a noisy flat background and 1..max_objects
filled shapes that do not overlap: category 1 rectangle, 2 ellipse, 3 triangle, each with a
random colour that contrasts with the background, 20-50% of the image side. Shape is the only
thing that tells the classes apart, and the objects are large, clean and unoccluded, so a small
detector learns it in a few epochs. Segmentations are the very polygons that were drawn (the
ellipse is drawn as its 32-gon), so masks match the pixels.

cfg keys (defaults): image_size 96, num_train 256, num_val 64, max_objects 3, seed 0, path.
Generation is deterministic in those keys. Where it is written:
  * cfg `path` set: that folder (root), which must be new, empty, or an earlier synthetic_coco
    folder (recognised by its `synthetic_coco.json` marker; regenerated if the keys changed);
  * otherwise `$XDG_CACHE_HOME/repro/synthetic_coco/<hash of the keys>` (default ~/.cache);
    `root` from --data-root is ignored, so generated data never lands among real datasets.
The hash covers only the generation keys above, not e.g. the batch size, so presets that differ
elsewhere share one copy. Both splits are written at once, into a temporary folder renamed into
place, so concurrent ranks of a distributed run cannot see a half-written dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from repro.data.coco import CocoDetection
from repro.errors import DataError

DEFAULTS = {"image_size": 96, "num_train": 256, "num_val": 64, "max_objects": 3, "seed": 0}
VERSION = 1  # bump when the generator changes, so cached copies are regenerated
CATEGORIES = [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}, {"id": 3, "name": "triangle"}]
MARKER = "synthetic_coco.json"
SPLITS = {"train": ("num_train", 0), "val": ("num_val", 1)}  # count key, seed stream


def _params(cfg: dict) -> dict:
    params = {k: int(cfg.get(k, v)) for k, v in DEFAULTS.items()}
    params["version"] = VERSION
    return params


def _digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _shape_polygon(category: int, box: tuple[float, float, float, float], rng) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    if category == 1:
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if category == 2:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return list(zip((cx + rx * np.cos(t)).tolist(), (cy + ry * np.sin(t)).tolist()))
    apex = x0 + rng.uniform(0.2, 0.8) * (x1 - x0)  # apex on top, base along the bottom edge
    return [(apex, y0), (x1, y1), (x0, y1)]


def _overlaps(box, boxes, margin: float = 2.0) -> bool:
    return any(box[0] < b[2] + margin and b[0] < box[2] + margin and
               box[1] < b[3] + margin and b[1] < box[3] + margin for b in boxes)


def _make_image(rng, size: int, max_objects: int):
    background = rng.uniform(40, 215, size=3)
    canvas = Image.fromarray(np.broadcast_to(background, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):  # rejection sampling for a free spot
            w, h = rng.uniform(0.2, 0.5, size=2) * size
            x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            box = (round(x0), round(y0), round(x0 + w), round(y0 + h))
            if not _overlaps(box, boxes):
                break
        else:
            continue  # image is full; fewer objects is fine
        colour = rng.uniform(0, 255, size=3)
        while np.abs(colour - background).mean() < 70:  # keep shapes visible against the noise
            colour = rng.uniform(0, 255, size=3)
        category = int(rng.integers(1, 4))
        polygon = _shape_polygon(category, box, rng)
        draw.polygon(polygon, fill=tuple(int(c) for c in colour))
        boxes.append(box)
        objects.append((category, polygon))
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 12, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), objects


def _write_split(folder: Path, split: str, params: dict) -> None:
    count_key, stream = SPLITS[split]
    size = params["image_size"]
    rng = np.random.default_rng([params["seed"], stream])
    image_dir = folder / f"{split}2017"
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for index in range(params[count_key]):
        image, objects = _make_image(rng, size, params["max_objects"])
        name = f"{index:06d}.jpg"
        image.save(image_dir / name, quality=95)
        images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
        for category, polygon in objects:
            flat = [round(float(v), 2) for point in polygon for v in point]
            xs, ys = flat[0::2], flat[1::2]
            rle = mask_utils.frPyObjects([flat], size, size)[0]
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": category,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "segmentation": [flat], "area": float(mask_utils.area(rle)), "iscrowd": 0,
            })
    coco = {"images": images, "annotations": annotations, "categories": CATEGORIES,
            "info": {"description": "repro synthetic_coco", **params}}
    (folder / "annotations").mkdir(exist_ok=True)
    (folder / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(coco))


def _generate(folder: Path, params: dict, digest: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for split in SPLITS:
            _write_split(tmp, split, params)
        (tmp / MARKER).write_text(json.dumps({"digest": digest, "params": params}))
        if folder.exists():  # an older synthetic_coco copy (checked by the caller): replace it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _is_current(folder, digest):  # not another rank winning the race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_current(folder: Path, digest: str) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("digest") == digest
    except (OSError, ValueError):
        return False


def dataset_folder(cfg: dict) -> Path:
    """The folder holding the generated dataset for this cfg, generating it first if needed."""
    params = _params(cfg)
    digest = _digest(params)
    if cfg.get("path"):
        folder = Path(cfg["path"]).expanduser()
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = cache / "repro" / "synthetic_coco" / digest
    if _is_current(folder, digest):
        return folder
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise DataError(
            f"{folder} is not empty and was not written by synthetic_coco; set data.path to a new "
            "or empty folder (it is generated there)"
        )
    try:
        _generate(folder, params, digest)
    except OSError as e:
        raise DataError(f"cannot write the synthetic_coco dataset to {folder}: {e}") from None
    return folder


def build(cfg: dict, split: str, root: Path | None) -> CocoDetection:
    if split not in SPLITS:
        raise DataError(f"synthetic_coco has splits 'train' and 'val', not {split!r}")
    folder = dataset_folder(cfg)
    return CocoDetection(
        folder / "annotations" / f"instances_{split}2017.json",
        folder / f"{split}2017",
        train=split == "train",
        hflip=bool(cfg.get("hflip", True)),
    )
