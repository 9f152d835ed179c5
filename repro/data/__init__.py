"""Datasets by name. Each loader module exposes `build(cfg, split, root) -> torch Dataset`.

`cfg` is the preset's `data` mapping (name, image_size, num_classes, ...); `split` is "train" or
"val"; `root` is the folder of that dataset (`<data-root>/<name>` unless cfg sets `path`).
Items are `(image_tensor[C,H,W] float, label int)` for classification, `(image, target_dict)` for
detection. A missing or wrongly laid out dataset raises `repro.errors.DataError` whose one-line
message says what layout is expected where. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from repro.errors import DataError

# name -> module under repro.data; imported only when asked for
LOADERS = {
    "synthetic": "repro.data.synthetic",
    "imagenet": "repro.data.imagenet",
    "cifar10": "repro.data.cifar",
    "svhn": "repro.data.svhn",
    "gtsrb": "repro.data.gtsrb",
    "coco": "repro.data.coco",
    "synthetic_coco": "repro.data.synthetic_coco",
}

# The data keys each dataset reads, beside name/image_size/num_classes/path. Kept here rather than
# in the loader modules so a spec is checked without importing them; any other key is refused
# (a key that changes a cell's hash must change its run).
_TRANSFORM = ("augment", "crop_pct", "interpolation", "mean", "std")  # repro.data.transforms
KEYS = {
    "synthetic": (*_TRANSFORM, "train_size", "val_size", "seed", "noise"),
    "imagenet": _TRANSFORM,
    "cifar10": _TRANSFORM,
    "svhn": (*_TRANSFORM, "extra"),
    "gtsrb": (*_TRANSFORM, "crop_roi"),
    "coco": ("year", "hflip", "size_scale"),
    "synthetic_coco": ("num_train", "num_val", "max_objects", "seed", "hflip", "size_scale"),
}
COMMON_KEYS = ("name", "image_size", "num_classes", "path")
# Datasets of boxes, whose loaders apply their own (box-aware) transforms.
DETECTION_DATASETS = ("coco", "synthetic_coco")
# Datasets whose images already have (or are resized by the loader to) the training size.
SMALL_IMAGE_DATASETS = ("cifar10", "svhn", "gtsrb")
AUGMENT_STYLES = ("imagenet", "cifar", "none")  # repro.data.transforms documents each


def augment_style(cfg: dict) -> str:
    """data.augment, or the dataset's default: `cifar` for the 32 px datasets, `none` for the
    synthetic tensors, `imagenet` for everything else."""
    name = cfg.get("name")
    default = "cifar" if name in SMALL_IMAGE_DATASETS else "none" if name == "synthetic" else "imagenet"
    style = cfg.get("augment", default)
    if style not in AUGMENT_STYLES:
        raise DataError(f"unknown data.augment {style!r}; use one of {', '.join(AUGMENT_STYLES)}")
    return style


def unknown_keys(cfg: dict) -> list[str]:
    """Keys of a data cfg that its dataset does not read."""
    return sorted(set(cfg) - set(COMMON_KEYS) - set(KEYS.get(cfg.get("name"), ())))

DATA_ROOT_ENV = "REPRO_DATA_ROOT"


def resolve_root(cfg: dict, data_root: str | os.PathLike | None) -> Path | None:
    if cfg.get("path"):
        return Path(cfg["path"]).expanduser()
    base = data_root or os.environ.get(DATA_ROOT_ENV)
    if base is None:
        return None
    return Path(base).expanduser() / cfg["name"]


def build_dataset(cfg: dict, split: str, data_root: str | os.PathLike | None = None, transform=None):
    """`transform`: the classification transform (repro.data.transforms); None builds the split's
    default, without a recipe's augmentation."""
    name = cfg.get("name")
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    root = resolve_root(cfg, data_root)
    if root is None and name not in ("synthetic", "synthetic_coco"):
        raise DataError(
            f"dataset {name!r} needs a location: pass --data-root DIR (expects DIR/{name}/...) "
            f"or set {DATA_ROOT_ENV}"
        )
    module = importlib.import_module(LOADERS[name])
    if name in DETECTION_DATASETS:
        return module.build(cfg, split, root)
    return module.build(cfg, split, root, transform)
