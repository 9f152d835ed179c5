"""Model throughput and latency: training step, inference, batch-1 latency; ours vs timm.

Every number is the median of `repeats` timings of one call each, taken with
torch.utils.benchmark.Timer (which synchronises CUDA, pins the thread count, and reports median
and IQR) after `warmup` untimed calls. One training call = forward + cross-entropy + backward +
SGD step (momentum 0.9) on one batch of random images; one inference call = forward under
torch.inference_mode on one batch; latency = one inference call at batch 1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from repro.bench import fastpath
from repro.bench.targets import BenchModel
from repro.errors import ConfigError

# Our builder -> timm's name for the same architecture (identical parameter count is checked).
TIMM_FASTERNET = ("t0", "t1", "t2", "s", "m", "l")
GHOSTNET_WIDTHS = {0.5: "ghostnet_050", 1.0: "ghostnet_100", 1.3: "ghostnet_130"}


@dataclass
class BenchOptions:
    device: str = "cpu"
    batch: int = 8
    threads: int = 1
    image_size: int | None = None     # None: each model's paper resolution
    warmup: int = 2
    repeats: int = 5
    latency_repeats: int = 10
    fast: bool = False
    compile: bool = False


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(fn, opts: BenchOptions, repeats: int, label: str) -> dict:
    """Median (and IQR, all samples) of `repeats` single calls of fn after `opts.warmup` calls."""
    from torch.utils.benchmark import Measurement, Timer

    for _ in range(opts.warmup):
        fn()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=opts.threads, label=label)
    m = Measurement.merge([timer.timeit(number=1) for _ in range(repeats)])[0]
    return {"median_s": m.median, "iqr_s": m.iqr, "times_s": [round(t, 6) for t in m.times]}


def time_model(build, image_size: int, num_classes: int, opts: BenchOptions, fast: bool, label: str) -> dict:
    """Train / infer / latency figures of one model under one protocol (fast path or default)."""
    device, batch = opts.device, opts.batch
    compile_ = fast and opts.compile
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    x1 = x[:1].clone()

    model = build().to(device).train()
    if fast:
        model = fastpath.prepare_for_training(model, device, channels_last=True, compile=compile_)
        x_train = fastpath.to_input_format(x, True)
    else:
        x_train = x
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with fastpath.autocast(device, fast):
            loss = F.cross_entropy(model(x_train), y)
        loss.backward()
        opt.step()

    train = measure(train_step, opts, opts.repeats, f"{label} train")
    del model, opt

    net = build().to(device).eval()
    bns = fastpath.count_batchnorms(net)
    if fast:
        net = fastpath.prepare_for_inference(net, device, channels_last=True, fuse=True, compile=compile_)
    folded = bns - fastpath.count_batchnorms(net) if fast else 0
    x_inf, x_lat = (fastpath.to_input_format(x, fast), fastpath.to_input_format(x1, fast))

    def infer(inp):
        with torch.inference_mode(), fastpath.autocast(device, fast):
            return net(inp)

    infer_m = measure(lambda: infer(x_inf), opts, opts.repeats, f"{label} infer")
    latency = measure(lambda: infer(x_lat), opts, opts.latency_repeats, f"{label} latency")
    return {
        "protocol": {
            "fast": fast, "dtype": "bf16 autocast" if fast and device == "cuda" else "fp32",
            "memory_format": "channels_last" if fast else "contiguous (NCHW)",
            "compile": compile_, "fused_bn": fast, "bn_folded": folded, "batchnorms": bns,
        },
        "train": {**train, "images_per_s": batch / train["median_s"]},
        "infer": {**infer_m, "images_per_s": batch / infer_m["median_s"]},
        "latency": {**latency, "median_ms": latency["median_s"] * 1e3},
    }


def timm_counterpart(bm: BenchModel) -> str | None:
    """timm's name for the same architecture as our model, or None where timm has none."""
    a = bm.args
    if bm.paper == "efficientnet":
        variant = bm.model.removeprefix("efficientnet_") if bm.model != "efficientnet" else a.get("variant", "b0")
        untouched = all(a.get(k) in (None,) for k in ("width", "depth")) and a.get("se_ratio", 0.25) == 0.25
        return f"efficientnet_{variant}" if bm.model.startswith("efficientnet") and untouched else None
    if bm.paper == "ghostnet" and bm.model == "ghostnet":
        return GHOSTNET_WIDTHS.get(float(a.get("width", 1.0)))
    if bm.paper == "fasternet" and bm.model == "fasternet":
        variant = str(a.get("variant", "t0")).lower()
        knobs = ("partial_ratio", "norm", "act", "embed_dim", "depths")
        if variant in TIMM_FASTERNET and all(a.get(k) is None for k in knobs):
            return f"fasternet_{variant}"
    return None


def build_timm(name: str, num_classes: int) -> nn.Module:
    import os

    import timm

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything (pretrained=False anyway)
    if name not in timm.list_models(name):
        raise ConfigError(f"--vs timm: timm {timm.__version__} has no model {name!r}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def check_same_architecture(ours: nn.Module, theirs: nn.Module, ours_name: str, timm_name: str) -> int:
    """Both models' parameter counts, which must be equal before their times are compared."""
    n_ours, n_timm = count_params(ours), count_params(theirs)
    if n_ours != n_timm:
        raise ConfigError(f"--vs timm: {ours_name} has {n_ours:,} parameters but timm {timm_name} has {n_timm:,}; "
                          f"not the same architecture, refusing to compare their speed")
    return n_ours


def bench_models(models: list[BenchModel], opts: BenchOptions, vs_timm: bool = False) -> tuple[list, list]:
    """Time every model (ours, and timm's twin when asked); return (entries, timm comparisons)."""
    entries, comparisons = [], []
    for i, bm in enumerate(models, 1):
        size = opts.image_size or bm.image_size
        ours = bm.build()
        params = count_params(ours)
        twin = timm_counterpart(bm) if vs_timm else None
        timm_model = None
        if twin:
            timm_model = build_timm(twin, bm.num_classes)
            check_same_architecture(ours, timm_model, bm.name, twin)
        del ours
        _progress(f"[{i}/{len(models)}] {bm.name} @{size}px batch {opts.batch} ({params / 1e6:.2f}M params)"
                  f"{' fast path' if opts.fast else ''}")
        rec = time_model(bm.build, size, bm.num_classes, opts, opts.fast, bm.name)
        entry = {"name": bm.name, "impl": "repro", "paper": bm.paper, "model": bm.model, "args": bm.args,
                 "label": bm.label, "params": params, "image_size": size, "batch": opts.batch, **rec}
        entries.append(entry)
        _progress("    ours: " + _summary(entry))
        if timm_model is None:
            if vs_timm:
                _progress("    timm: no counterpart for this model")
            continue
        # timm runs its default path: channels_last/fusion are our fast path, not timm's out-of-box one.
        trec = time_model(lambda: build_timm(twin, bm.num_classes), size, bm.num_classes, opts, False, f"timm:{twin}")
        tentry = {"name": f"timm:{twin}", "impl": "timm", "model": twin, "args": {}, "label": f"timm twin of {bm.name}",
                  "params": params, "image_size": size, "batch": opts.batch, **trec}
        entries.append(tentry)
        ratio = {
            "ours": bm.name, "timm": twin, "params": params, "ours_fast": opts.fast,
            "train_ratio": entry["train"]["images_per_s"] / tentry["train"]["images_per_s"],
            "infer_ratio": entry["infer"]["images_per_s"] / tentry["infer"]["images_per_s"],
            "latency_ratio": tentry["latency"]["median_s"] / entry["latency"]["median_s"],
        }
        comparisons.append(ratio)
        _progress("    timm: " + _summary(tentry))
        _progress(f"    ours{' (fast)' if opts.fast else ''} / timm (default): train {ratio['train_ratio']:.2f}x, "
                  f"infer {ratio['infer_ratio']:.2f}x, latency {ratio['latency_ratio']:.2f}x (>1: ours faster)")
    return entries, comparisons


def _summary(e: dict) -> str:
    return (f"train {e['train']['images_per_s']:.1f} img/s, infer {e['infer']['images_per_s']:.1f} img/s, "
            f"latency {e['latency']['median_ms']:.1f} ms")


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
