"""SVHN, cropped-digits format (the `*_32x32.mat` files from ufldl.stanford.edu/housenumbers).

Expected: `root/train_32x32.mat` and `root/test_32x32.mat` (optionally `root/extra_32x32.mat`,
added to train when cfg `extra: true`). Each holds `X` (32, 32, 3, N) uint8 and `y` (N, 1) with
labels 1..10, where 10 stands for the digit 0; we map 10 -> 0 so label == digit.

Read with scipy.io.loadmat (the files are MATLAB v5). A missing file, an unreadable/truncated
file, missing keys or wrong shapes raise DataError naming the file, at build time.
Horizontal flips are off by default for SVHN (see transforms.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from repro.data.cifar import InMemoryImages
from repro.data.transforms import classification_transforms
from repro.errors import DataError

FILES = {"train": "train_32x32.mat", "val": "test_32x32.mat"}
LAYOUT = "root/train_32x32.mat and root/test_32x32.mat (keys X: 32x32x3xN uint8, y: Nx1)"


def _load_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading SVHN .mat files needs scipy: pip install scipy") from None
    if not path.is_file():
        raise DataError(f"SVHN file {path} is missing; expected {LAYOUT}")
    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except NotImplementedError:  # scipy raises this for MATLAB v7.3 (HDF5) files
        raise DataError(f"SVHN file {path} is MATLAB v7.3; the original v5 .mat release is expected") from None
    except Exception as e:  # scipy raises a zoo of types (ValueError, MatReadError, OSError, ...)
        raise DataError(f"SVHN file {path} is corrupt or not a .mat file ({type(e).__name__}: {e})") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"SVHN file {path} lacks the X and/or y arrays; expected {LAYOUT}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise DataError(f"SVHN file {path} has X {x.shape} and {y.shape[0]} labels; expected {LAYOUT}")
    if y.size and not (1 <= y.min() and y.max() <= 10):
        raise DataError(f"SVHN file {path} has labels {y.min()}..{y.max()}; expected 1..10")
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2).astype(np.uint8, copy=False))
    labels = (y % 10).astype(np.int64)  # 10 is the digit 0
    return images, labels


def build(cfg: dict, split: str, root: Path, transform=None) -> InMemoryImages:
    root = Path(root)
    if transform is None:  # the split's default, without a recipe's augmentation
        transform = classification_transforms(cfg, train=split == "train")
    if not root.is_dir():
        raise DataError(f"SVHN folder {root} does not exist; expected {LAYOUT}")
    if split not in FILES:
        raise DataError(f"svhn has splits 'train' and 'val', not {split!r}")
    files = [FILES[split]]
    if split == "train" and cfg.get("extra"):
        files.append("extra_32x32.mat")
    parts = [_load_mat(root / name) for name in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    digits = [str(d) for d in range(10)]
    return InMemoryImages(images, labels, digits, transform)
