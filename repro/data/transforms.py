"""Image decoding and the classification transforms shared by every classification loader.

Two recipes, picked by the `augment` key of the data cfg (default: `cifar` for the 32 px
datasets cifar10/svhn/gtsrb, `imagenet` for everything else):

* `imagenet`: train = RandomResizedCrop(image_size) + horizontal flip;
  eval = Resize(resize) + CenterCrop(image_size), with `resize` defaulting to
  round(image_size / 0.875) (224 -> 256, the usual ratio).
* `cifar`: for 32 px datasets (cifar10, svhn, gtsrb). train = RandomCrop(image_size, padding=4)
  + horizontal flip; eval = no geometry. Both first resize to image_size x image_size, which
  changes nothing for 32x32 CIFAR/SVHN and squares GTSRB's variable-size images.

Both end with ToImage -> float in [0, 1] -> Normalize (ImageNet mean/std unless cfg sets
`mean`/`std`). `hflip: false` in the cfg turns the flip off; it defaults to off for svhn and
gtsrb because a mirrored digit or traffic sign is a different (or no) class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from repro.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Datasets where a left-right mirror changes the meaning of the image.
NO_FLIP_DATASETS = ("svhn", "gtsrb")
# Datasets whose images already have (or are resized by the loader to) the training size.
SMALL_IMAGE_DATASETS = ("cifar10", "svhn", "gtsrb")


def classification_transforms(cfg: dict, train: bool) -> v2.Compose:
    size = int(cfg.get("image_size", 224))
    default = "cifar" if cfg.get("name") in SMALL_IMAGE_DATASETS else "imagenet"
    augment = cfg.get("augment", default)
    flip = bool(cfg.get("hflip", cfg.get("name") not in NO_FLIP_DATASETS))

    if augment == "cifar":
        # Square resize first: a no-op for CIFAR/SVHN (already 32x32), and it brings GTSRB's
        # 15..250 px signs to the training size.
        steps = [v2.Resize((size, size), antialias=True)]
        if train:
            steps.append(v2.RandomCrop(size, padding=4))
    elif augment == "imagenet":
        if train:
            steps = [v2.RandomResizedCrop(size, antialias=True)]
        else:
            resize = int(cfg.get("resize", round(size / 0.875)))
            steps = [v2.Resize(resize, antialias=True), v2.CenterCrop(size)]
    else:
        raise DataError(f"unknown data.augment {augment!r}; use 'imagenet' or 'cifar'")

    if train and flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(cfg.get("mean", IMAGENET_MEAN)), std=list(cfg.get("std", IMAGENET_STD))),
    ]
    return v2.Compose(steps)


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file to RGB, or raise DataError naming the file.

    `convert` forces the full decode inside the try, so a truncated file fails here (PIL's
    default refuses truncated images) instead of somewhere deep in a transform.
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file {path} is missing (it was listed when the dataset was indexed)") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(
            f"cannot decode image {path} ({type(e).__name__}: {e}); replace or delete the corrupt file"
        ) from None
