"""Image decoding and the classification transforms shared by every classification loader.

The `augment` key of the data cfg picks the geometry style (default: `cifar` for the 32 px
datasets cifar10/svhn/gtsrb, `none` for the synthetic tensors, `imagenet` for everything else):

* `imagenet`: timm's `create_transform`, as timm's train.py builds it from the recipe
  (RandomResizedCrop with `scale`/`ratio`/`train_interpolation`, flip, `aa` or `color_jitter`,
  random erasing); eval resizes to floor(image_size / crop_pct) with the data cfg's
  `interpolation` and centre-crops image_size (timm's rule; crop_pct 0.875: 224 -> 256).
* `cifar`: train = square Resize + RandomCrop(image_size, padding=4) + flip; eval = the resize
  only (a no-op for 32x32 CIFAR/SVHN; it squares GTSRB's variable-size signs).
* `none`: the synthetic dataset's tensors as generated (the proxies).

Normalisation: ImageNet mean/std unless the cfg sets `mean`/`std`. The flip probability is the
recipe's `hflip`, defaulting to 0.5, or 0 for svhn and gtsrb, where a mirrored digit or traffic
sign is a different (or no) class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from repro.data import augment_style
from repro.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875

# Datasets where a left-right mirror changes the meaning of the image.
NO_FLIP_DATASETS = ("svhn", "gtsrb")


def flip_probability(cfg: dict, recipe=None) -> float:
    if recipe is not None and recipe.hflip is not None:
        return recipe.hflip
    return 0.0 if cfg.get("name") in NO_FLIP_DATASETS else 0.5


def classification_transforms(cfg: dict, train: bool, recipe=None, image_size: int | None = None):
    """The transform of a split; `recipe` (a TrainRecipe) supplies the training augmentation, and
    `image_size` a progressive-resolution epoch's size. None for style `none`."""
    size = int(image_size or cfg.get("image_size", 224))
    style = augment_style(cfg)
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    if style == "none":
        return None
    if style == "imagenet":
        from timm.data import create_transform

        if train:
            r = recipe
            return create_transform(
                size, is_training=True, scale=r.scale if r else None, ratio=r.ratio if r else None,
                hflip=flip_probability(cfg, r), vflip=0.0, color_jitter=r.color_jitter if r else None,
                auto_augment=r.aa if r else None, interpolation=r.train_interpolation if r else "bilinear",
                re_prob=r.reprob if r else 0.0, mean=mean, std=std)
        return create_transform(size, is_training=False, interpolation=cfg.get("interpolation", "bilinear"),
                                crop_pct=float(cfg.get("crop_pct", DEFAULT_CROP_PCT)), mean=mean, std=std)
    # Square resize first: a no-op for CIFAR/SVHN (already 32x32), and it brings GTSRB's
    # 15..250 px signs to the training size.
    steps = [v2.Resize((size, size), antialias=True)]
    if train:
        steps.append(v2.RandomCrop(size, padding=4))
        flip = flip_probability(cfg, recipe)
        if flip:
            steps.append(v2.RandomHorizontalFlip(flip))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
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
