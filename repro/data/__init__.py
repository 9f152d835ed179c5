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

DATA_ROOT_ENV = "REPRO_DATA_ROOT"


def resolve_root(cfg: dict, data_root: str | os.PathLike | None) -> Path | None:
    if cfg.get("path"):
        return Path(cfg["path"]).expanduser()
    base = data_root or os.environ.get(DATA_ROOT_ENV)
    if base is None:
        return None
    return Path(base).expanduser() / cfg["name"]


def build_dataset(cfg: dict, split: str, data_root: str | os.PathLike | None = None):
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
    return module.build(cfg, split, root)
