"""CIFAR-10 from the official python-pickle release (cifar-10-python.tar.gz, extracted).

Expected: `root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`; `root` may also
be the `cifar-10-batches-py` folder itself. The pickles are read here (encoding='bytes', as they
were written by Python 2) by an unpickler that builds only what a CIFAR batch holds: dicts,
lists, bytes, str, numbers and numpy arrays. A pickle can name any function to call while it
loads (os.system, say), so a data file from anywhere else must not be trusted with plain
`pickle.load`. torchvision's CIFAR10 class is not used because it wants to verify/download the
archive.

A missing batch file, or one that is truncated, not a pickle, or has the wrong shape, raises
DataError naming the file. All 50k/10k images are decoded into one uint8 array at build time
(150 MB for train), so nothing can fail later in `__getitem__`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from repro.data.transforms import classification_transforms
from repro.errors import DataError

FOLDER = "cifar-10-batches-py"
FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]}
LAYOUT = f"root/{FOLDER}/{{data_batch_1..5,test_batch,batches.meta}}"


def _batches_dir(root: Path) -> Path:
    if (root / FOLDER).is_dir():
        return root / FOLDER
    if (root / "data_batch_1").is_file() or (root / "test_batch").is_file():
        return root  # root points at the batches folder itself
    hint = ""
    if (root / "cifar-10-python.tar.gz").is_file():
        hint = " (found cifar-10-python.tar.gz: extract it there)"
    elif any(root.glob("data_batch_1.bin")) or (root / "cifar-10-batches-bin").is_dir():
        hint = " (found the binary version: the python-pickle version is needed)"
    raise DataError(f"no CIFAR-10 batches under {root}{hint}; expected {LAYOUT}")


# The only globals a CIFAR batch's pickle names: numpy's array reconstruction (under numpy 1's and
# numpy 2's module names; `_frombuffer` is protocol 5's) and, for bytes pickled by Python 3 at
# protocol 2, codecs.encode. Dicts, lists, bytes, str and ints are pickle opcodes, not globals.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class RefusedPickle(pickle.UnpicklingError):
    pass


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedPickle(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {path} is missing; expected {LAYOUT}")
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except RefusedPickle as e:
        raise DataError(f"CIFAR-10 file {path} asks to call {e} while loading, which no CIFAR batch does; "
                        "refused (replace it with the file from the official cifar-10-python.tar.gz)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, UnicodeDecodeError) as e:
        raise DataError(f"CIFAR-10 file {path} is corrupt or truncated ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 file {path} is not a CIFAR batch (unpickled a {type(obj).__name__})")
    return obj


def _read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if data is None or labels is None:
        raise DataError(f"CIFAR-10 file {path} lacks the b'data'/b'labels' entries (is it CIFAR-100?)")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != data.shape[0]:
        raise DataError(
            f"CIFAR-10 file {path} has data of shape {data.shape} and {len(labels)} labels; "
            f"expected (N, 3072) and N labels"
        )
    # Rows are channel-major (R plane, G plane, B plane); PIL wants height x width x channel.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), [int(x) for x in labels]


class InMemoryImages(torch.utils.data.Dataset):
    """HWC uint8 images held in memory (CIFAR-10, SVHN): nothing can fail after loading."""

    def __init__(self, images: np.ndarray, labels, classes: list[str], transform):
        self.images = np.ascontiguousarray(images)
        self.targets = [int(t) for t in labels]
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.targets[index]


def build(cfg: dict, split: str, root: Path, transform=None) -> InMemoryImages:
    root = Path(root)
    if transform is None:  # the split's default, without a recipe's augmentation
        transform = classification_transforms(cfg, train=split == "train")
    if not root.is_dir():
        raise DataError(f"CIFAR-10 folder {root} does not exist; expected {LAYOUT}")
    if split not in FILES:
        raise DataError(f"cifar10 has splits 'train' and 'val', not {split!r}")
    batches = _batches_dir(root)

    parts = [_read_batch(batches / name) for name in FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = [y for p in parts for y in p[1]]
    if labels and not 0 <= min(labels) <= max(labels) < 10:
        raise DataError(f"CIFAR-10 labels under {batches} range {min(labels)}..{max(labels)}; expected 0..9")

    classes = [str(i) for i in range(10)]
    meta = batches / "batches.meta"
    if meta.is_file():  # only used for class names, so optional
        names = _unpickle(meta).get(b"label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    return InMemoryImages(images, labels, classes, transform)
