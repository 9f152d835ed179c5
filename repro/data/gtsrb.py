"""GTSRB (German Traffic Sign Recognition Benchmark), the official "Final" release.

Expected (`root` may also contain these under a `GTSRB/` folder, as the zips extract):
  train: root/Final_Training/Images/<00000..00042>/*.ppm, each class folder with GT-<class>.csv
  val:   root/Final_Test/Images/*.ppm and root/GT-final_test.csv (the separately released
         ground truth; the GT-final_test.test.csv inside Final_Test/Images has no ClassId)
CSVs are semicolon separated: Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId.

The CSVs are the index: a missing csv, missing column, or an image listed there but absent on
disk raises DataError at build time (naming the file; for missing images how many and the
first). Images are decoded lazily in `__getitem__` (corrupt file -> DataError naming it).

ROI crop: off by default (cfg `crop_roi: true` turns it on). The whole image, resized to
image_size x image_size by the transform, is the common practice in the efficient-CNN papers;
the ROI (sign without the ~10% margin) is there for those who crop. ROI corners are inclusive.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from repro.data.transforms import classification_transforms, load_rgb
from repro.errors import DataError

COLUMNS = ("Filename", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
LAYOUT = (
    "root/Final_Training/Images/<00000..00042>/{*.ppm,GT-<class>.csv} and "
    "root/Final_Test/Images/*.ppm with root/GT-final_test.csv"
)


def _base(root: Path) -> Path:
    for base in (root, root / "GTSRB"):
        if (base / "Final_Training").is_dir() or (base / "Final_Test").is_dir():
            return base
    return root


def _read_csv(path: Path) -> list[dict]:
    """Rows of a GT csv, with the columns we need checked."""
    if not path.is_file():
        raise DataError(f"GTSRB annotation file {path} is missing; expected {LAYOUT}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=";")
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"GTSRB annotation file {path} lacks column(s) {', '.join(missing)}; expected "
                "semicolon-separated Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
            )
        rows = list(reader)
    try:
        return [
            {"file": r["Filename"], "label": int(r["ClassId"]),
             "roi": tuple(int(r[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))}
            for r in rows
        ]
    except (TypeError, ValueError) as e:
        raise DataError(f"GTSRB annotation file {path} has a malformed row ({e})") from None


def _check_files_exist(samples: list[tuple[Path, int, tuple]], where: Path) -> None:
    missing = [p for p, _, _ in samples if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(samples)} GTSRB images listed in the csv files are missing "
            f"under {where} (first: {missing[0]})"
        )


def _train_samples(base: Path) -> list[tuple[Path, int, tuple]]:
    images = base / "Final_Training" / "Images"
    if not images.is_dir():
        raise DataError(f"GTSRB training folder {images} is missing; expected {LAYOUT}")
    classes = sorted(e.name for e in os.scandir(images) if e.is_dir())
    if not classes:
        raise DataError(f"no class folders (00000..00042) in {images}; expected {LAYOUT}")
    samples = []
    for name in classes:
        for row in _read_csv(images / name / f"GT-{name}.csv"):
            samples.append((images / name / row["file"], row["label"], row["roi"]))
    return samples


def _test_samples(base: Path) -> list[tuple[Path, int, tuple]]:
    images = base / "Final_Test" / "Images"
    if not images.is_dir():
        raise DataError(f"GTSRB test folder {images} is missing; expected {LAYOUT}")
    candidates = [base / "GT-final_test.csv", base.parent / "GT-final_test.csv", images / "GT-final_test.csv"]
    gt = next((p for p in candidates if p.is_file()), None)
    if gt is None:
        raise DataError(
            f"GTSRB test labels {base / 'GT-final_test.csv'} are missing (they come in "
            f"GTSRB_Final_Test_GT.zip; GT-final_test.test.csv has no ClassId); expected {LAYOUT}"
        )
    return [(images / r["file"], r["label"], r["roi"]) for r in _read_csv(gt)]


class GTSRB(torch.utils.data.Dataset):
    classes = [f"{i:05d}" for i in range(43)]

    def __init__(self, samples: list[tuple[Path, int, tuple]], transform, crop_roi: bool):
        self.samples = samples
        self.targets = [label for _, label, _ in samples]
        self.transform = transform
        self.crop_roi = crop_roi

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label, (x1, y1, x2, y2) = self.samples[index]
        image = load_rgb(path)
        if self.crop_roi:
            image = image.crop((x1, y1, x2 + 1, y2 + 1))  # PIL's right/bottom are exclusive
        return self.transform(image), label


def build(cfg: dict, split: str, root: Path, transform=None) -> GTSRB:
    root = Path(root)
    if transform is None:  # the split's default, without a recipe's augmentation
        transform = classification_transforms(cfg, train=split == "train")
    if not root.is_dir():
        raise DataError(f"GTSRB folder {root} does not exist; expected {LAYOUT}")
    base = _base(root)
    if split == "train":
        samples = _train_samples(base)
    elif split == "val":
        samples = _test_samples(base)
    else:
        raise DataError(f"gtsrb has splits 'train' and 'val', not {split!r}")
    if not samples:
        raise DataError(f"the GTSRB {split} csv files under {base} list no images; expected {LAYOUT}")
    _check_files_exist(samples, base)
    labels = [s[1] for s in samples]
    if not 0 <= min(labels) <= max(labels) < 43:
        raise DataError(f"GTSRB {split} labels range {min(labels)}..{max(labels)}; expected 0..42")
    return GTSRB(samples, transform, crop_roi=bool(cfg.get("crop_roi", False)))
