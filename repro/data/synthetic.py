"""The embedded default dataset: deterministic, class-conditional textures generated on the fly.

Each class owns a grating (orientation, spatial frequency) and a colour; an image is its class's
grating at a random phase and contrast, plus a weaker grating of another random class as a
distractor, plus pixel noise. A CNN learns it in a few hundred steps, far above chance, yet a
linear model on raw pixels does not solve it (the phase is random), so it still ranks networks.
Same (seed, split, index) -> same image, on every machine: the whole split is generated from one
seeded torch.Generator. It stands in for ImageNet only as a proxy: results on it are never
compared with the paper's numbers.
"""

from __future__ import annotations

import math

import torch
from PIL import Image
from torch.utils.data import Dataset

# Distinct seeds per split so train and val never share an image.
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003}


def _class_prototypes(num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Spread orientations evenly and shuffle frequencies so neighbouring classes differ in both.
    angles = torch.arange(num_classes) * math.pi / num_classes
    freqs = 1.5 + 3.0 * torch.rand(num_classes, generator=g)
    colours = torch.rand(num_classes, 3, generator=g) * 2 - 1
    colours = colours / colours.norm(dim=1, keepdim=True)
    return {"angle": angles, "freq": freqs, "colour": colours}


def _gratings(protos, labels, size, phase, g):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    angle, freq = protos["angle"][labels], protos["freq"][labels]
    proj = xs[None] * torch.cos(angle)[:, None, None] + ys[None] * torch.sin(angle)[:, None, None]
    wave = torch.sin(math.pi * freq[:, None, None] * proj + phase[:, None, None])
    return protos["colour"][labels][:, :, None, None] * wave[:, None]


class SyntheticImages(Dataset):
    """`transform`: None serves the generated tensors (the proxies); a transform (data.augment
    `imagenet` or `cifar`) gets each image as an 8-bit PIL image, as a decoded file would be, so a
    paper recipe's augmentation runs on it unchanged (the recipe canaries)."""

    def __init__(self, num_classes: int = 10, size: int = 2048, image_size: int = 32,
                 seed: int = 0, split: str = "train", noise: float = 0.5, transform=None):
        if num_classes < 2:
            raise ValueError("synthetic data needs at least 2 classes")
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(seed * 7919 + _SPLIT_OFFSET[split])
        protos = _class_prototypes(num_classes, seed)
        self.labels = torch.arange(size) % num_classes
        self.labels = self.labels[torch.randperm(size, generator=g)]
        phase = torch.rand(size, generator=g) * 2 * math.pi
        contrast = 0.6 + 0.8 * torch.rand(size, 1, 1, 1, generator=g)
        images = contrast * _gratings(protos, self.labels, image_size, phase, g)
        distractor = torch.randint(0, num_classes, (size,), generator=g)
        images += 0.35 * _gratings(protos, distractor, image_size, torch.rand(size, generator=g) * 6.3, g)
        images += noise * torch.randn(images.shape, generator=g)
        self.images = images.contiguous()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        if self.transform is None:
            return self.images[index], int(self.labels[index])
        # Roughly +-2 std of the generated values onto 0..255.
        pixels = ((self.images[index] * 0.25 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return self.transform(Image.fromarray(pixels.permute(1, 2, 0).numpy())), int(self.labels[index])


def build(cfg: dict, split: str, root=None, transform=None) -> SyntheticImages:
    size = cfg.get("train_size", 2048) if split == "train" else cfg.get("val_size", 512)
    return SyntheticImages(
        num_classes=cfg.get("num_classes", 10), size=size, image_size=cfg.get("image_size", 32),
        seed=cfg.get("seed", 0), split=split, noise=cfg.get("noise", 0.5), transform=transform,
    )
