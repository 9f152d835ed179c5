"""`repro bench data`: ImageNet-style JPEG decode + train augmentation throughput per DataLoader worker.

A temporary ImageFolder of synthetic JPEGs (ImageNet-like: ~500x375 px, smooth content plus
noise, quality 90, so file sizes are near ImageNet's ~110 kB average) is read through the real
pipeline, `repro.data.imagenet.build(cfg, "train")` (PIL decode -> RandomResizedCrop -> flip ->
ToImage -> float -> Normalize), with a DataLoader of 0, 1, 2 ... workers. Each setting reports
steady-state images/s (batches after the first) and the start-up time (first batch: worker
start + first decode).

Result fields (kind "data"): pipeline, image_size, batch, images, settings [{workers, images_per_s,
startup_s}], per_worker_images_per_s (the 1-worker rate, or the in-process rate if 1 was not run),
gpu {images_per_s, source, workers_per_gpu}, verdict {input_bound, workers_needed, text}.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

from repro.errors import ConfigError

# A GPU training-throughput figure to compare the input pipeline with. No GPU is measured here, so
# the default is a published one (override with --gpu-images-per-s): timm's own benchmark of
# efficientnet_b0 training, AMP, NCHW, batch 384, 224 px on one RTX 3090 (PyTorch 1.12):
REFERENCE_GPU = {
    "images_per_s": 1459.11,
    "source": "timm results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv, efficientnet_b0 "
              "(train_samples_per_sec, batch 384, 224 px, AMP); ghostnet_100 is 1601.5 there. "
              "A newer GPU (A100/H100/H200) is faster, so this is a lower bound on the demand.",
}
# Loader workers per GPU in the paper presets (papers/shufflenet/presets.yaml: num_workers 8).
WORKERS_PER_GPU = 8
N_CLASSES = 4


def write_jpeg_folder(root: Path, images: int, seed: int = 0) -> Path:
    """root/train/<class>/*.JPEG with `images` ImageNet-sized synthetic JPEGs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = root / "train" / f"n{i % N_CLASSES:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        # Smooth colour blobs (upsampled coarse noise) plus fine noise: compresses like a photo.
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img_{i:05d}.JPEG", quality=90)
    return root


def time_loader(dataset, workers: int, batch: int) -> dict:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=False)
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter()
    n = 0
    for x, _ in it:
        n += x.shape[0]
    end = time.perf_counter()
    del it
    return {"workers": workers, "images_per_s": n / max(end - first, 1e-9), "startup_s": first - start, "timed_images": n}


def run_data_bench(args, proto: dict) -> dict:
    from repro.data.imagenet import build

    workers = getattr(args, "workers", None) or [0, 1, 2]
    images = getattr(args, "images", None) or 96
    batch = getattr(args, "batch", None) or 16
    size = getattr(args, "image_size", None) or 224
    if min(workers) < 0 or images < 2 * batch:
        raise ConfigError(f"bench data: need workers >= 0 and --images >= 2 x batch ({2 * batch}); got {workers}, {images}")
    gpu_ips = getattr(args, "gpu_images_per_s", None)
    gpu = ({"images_per_s": gpu_ips, "source": "given with --gpu-images-per-s"} if gpu_ips else dict(REFERENCE_GPU))
    gpu["workers_per_gpu"] = WORKERS_PER_GPU

    with tempfile.TemporaryDirectory(prefix="repro-bench-data-") as tmp:
        print(f"writing {images} JPEGs to {tmp} ...", file=sys.stderr, flush=True)
        root = write_jpeg_folder(Path(tmp), images)
        kb = sum(p.stat().st_size for p in root.rglob("*.JPEG")) / images / 1024
        cfg = {"name": "imagenet", "image_size": size, "num_classes": N_CLASSES, "augment": "imagenet"}
        dataset = build(cfg, "train", root)
        settings = []
        for w in workers:
            rec = time_loader(dataset, w, batch)
            settings.append(rec)
            print(f"  workers {w}: {rec['images_per_s']:.1f} images/s (start-up {rec['startup_s']:.2f} s)",
                  file=sys.stderr, flush=True)

    by_workers = {s["workers"]: s["images_per_s"] for s in settings}
    per_worker = by_workers.get(1, by_workers.get(0, max(by_workers.values())))
    needed = math.ceil(gpu["images_per_s"] / per_worker)
    supply = per_worker * WORKERS_PER_GPU
    bound = supply < gpu["images_per_s"]
    text = (f"At {per_worker:.0f} images/s per worker, {WORKERS_PER_GPU} workers supply ~{supply:.0f} images/s against "
            f"a GPU that trains {gpu['images_per_s']:.0f} images/s: "
            + (f"input-bound; it would need ~{needed} worker cores per GPU (or GPU-side decode, e.g. DALI)."
               if bound else f"not input-bound ({needed} workers suffice).")
            + " Per-worker rates are from this CPU's cores; faster server cores decode faster.")
    print(text, file=sys.stderr)
    proto.update(batch=batch, image_size=size)
    return {
        "pipeline": "repro.data.imagenet train: PIL decode -> RandomResizedCrop -> flip -> ToImage -> float -> Normalize",
        "image_size": size, "batch": batch, "images": images, "mean_jpeg_kb": round(kb, 1),
        "settings": settings, "per_worker_images_per_s": per_worker, "gpu": gpu,
        "verdict": {"input_bound": bound, "workers_needed": needed, "text": text},
    }
