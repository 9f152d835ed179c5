"""ImageNet (ILSVRC-2012) in the ImageFolder layout.

Expected: `root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG` (the validation images sorted
into the same class folders as train, e.g. with the usual `valprep.sh`). Labels are the index of
the class folder in sorted order, exactly as torchvision's ImageFolder assigns them.

Layout problems are caught when the dataset is built and raise DataError: root missing, split
folder missing, no class folders (including the unsorted flat `val/` of the original tarball),
class folders without images, val classes that differ from train classes, and a class count
that differs from cfg `num_classes`.

Corrupt images: a clear error, not skip-and-count. Checking every file up front would mean
decoding 1.28M JPEGs (tens of minutes) before the first step, so the check happens where the
file is decoded anyway, in `__getitem__`, which raises DataError naming the file. We do not skip
silently because a reproduction must train and evaluate on the full dataset; a dropped
validation image changes the reported top-1. (A known ImageNet copy has no undecodable files;
PIL reads its CMYK and PNG-in-disguise oddities fine, so a decode error means a damaged copy.)
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from repro.data.transforms import classification_transforms, load_rgb
from repro.errors import DataError

LAYOUT = "root/train/<class>/*.JPEG and root/val/<class>/*.JPEG"


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def build(cfg: dict, split: str, root: Path, transform=None):
    root = Path(root)
    if transform is None:  # the split's default, without a recipe's augmentation
        transform = classification_transforms(cfg, train=split == "train")
    if not root.is_dir():
        raise DataError(f"imagenet folder {root} does not exist; expected {LAYOUT}")
    folder = {"train": "train", "val": "val"}.get(split)
    if folder is None:
        raise DataError(f"imagenet has splits 'train' and 'val', not {split!r}")
    split_dir = root / folder
    if not split_dir.is_dir():
        raise DataError(f"imagenet split folder {split_dir} is missing; expected {LAYOUT}")

    classes = _class_dirs(split_dir)
    if not classes:
        loose = any(n.lower().endswith(IMG_EXTENSIONS) for n in os.listdir(split_dir))
        hint = " (the images lie loose: sort them into class folders, e.g. with valprep.sh)" if loose else ""
        raise DataError(f"no class folders in {split_dir}{hint}; expected {LAYOUT}")

    # Labels are folder indices, so val must have the very same class folders as train.
    train_dir = root / "train"
    if split == "val" and train_dir.is_dir():
        train_classes = _class_dirs(train_dir)
        if train_classes != classes:
            only = sorted(set(classes) ^ set(train_classes))
            raise DataError(
                f"class folders of {split_dir} ({len(classes)}) differ from {train_dir} "
                f"({len(train_classes)}), e.g. {only[0]!r}; labels would not line up"
            )

    expected = cfg.get("num_classes")
    if expected is not None and int(expected) != len(classes):
        raise DataError(
            f"{split_dir} has {len(classes)} class folders but data.num_classes is {expected}"
        )

    # allow_empty: we report empty classes ourselves, with a count and an example.
    dataset = ImageFolder(
        str(split_dir),
        transform=transform,
        loader=load_rgb,
        allow_empty=True,
    )
    counts = Counter(dataset.targets)
    empty = [c for i, c in enumerate(dataset.classes) if counts[i] == 0]
    if empty:
        raise DataError(
            f"{len(empty)} class folder(s) in {split_dir} contain no images (first: {empty[0]}); "
            f"expected {LAYOUT}"
        )
    return dataset
