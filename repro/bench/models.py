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
    dtype: str = "fp32"              # our runner's compute dtype ("bf16": autocast); timm's is always fp32


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(fns: list, opts: BenchOptions, repeats: int, label: str) -> list[dict]:
    """Median (and IQR, all samples) of `repeats` single calls of each fn after `opts.warmup` calls.

    Several fns (ours and timm's) are timed in interleaved rounds (A B A B ...), so a change in
    the machine's load during the run hits both alike instead of biasing their ratio.
    """
    from torch.utils.benchmark import Measurement, Timer

    for fn in fns:
        for _ in range(opts.warmup):
            fn()
    timers = [Timer(stmt="fn()", globals={"fn": fn}, num_threads=opts.threads, label=label) for fn in fns]
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for timer, got in zip(timers, samples):
            got.append(timer.timeit(number=1))
    out = []
    for got in samples:
        m = Measurement.merge(got)[0]
        out.append({"median_s": m.median, "iqr_s": m.iqr, "times_s": [round(t, 6) for t in m.times]})
    return out


class Runner:
    """One model prepared for timing under one protocol: a training step and an inference call."""

    def __init__(self, build, image_size: int, num_classes: int, opts: BenchOptions, fast: bool):
        device, batch = opts.device, opts.batch
        self.fast, self.device, self.batch = fast, device, batch
        self.dtype = opts.dtype if fast else "fp32"
        self.compile = fast and opts.compile
        x = torch.randn(batch, 3, image_size, image_size, device=device)
        self.y = torch.randint(0, num_classes, (batch,), device=device)
        model = build().to(device).train()
        if fast:
            model = fastpath.prepare_for_training(model, device, channels_last=True, compile=self.compile,
                                                  dtype=self.dtype)
        self.model, self.x_train = model, fastpath.to_input_format(x, fast)
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        net = build().to(device).eval()
        self.batchnorms = fastpath.count_batchnorms(net)
        if fast:
            net = fastpath.prepare_for_inference(net, device, channels_last=True, fuse=True, compile=self.compile)
        self.folded = self.batchnorms - fastpath.count_batchnorms(net) if fast else 0
        self.net = net
        self.x_inf, self.x_lat = fastpath.to_input_format(x, fast), fastpath.to_input_format(x[:1].clone(), fast)

    def train_step(self):
        self.opt.zero_grad(set_to_none=True)
        with fastpath.autocast(self.device, self.dtype):
            loss = F.cross_entropy(self.model(self.x_train), self.y)
        loss.backward()
        self.opt.step()

    def infer(self, x):
        with torch.inference_mode(), fastpath.autocast(self.device, self.dtype):
            return self.net(x)

    def protocol(self) -> dict:
        dtype = "fp32" if self.dtype == "fp32" else "bf16 autocast" + (
            " (training: depthwise convs fp32)" if fastpath.depthwise_fp32_in_training(self.device, self.dtype) else "")
        return {"fast": self.fast, "dtype": dtype,
                "memory_format": "channels_last" if self.fast else "contiguous (NCHW)", "compile": self.compile,
                "fused_bn": self.fast, "bn_folded": self.folded, "batchnorms": self.batchnorms}


def time_runners(runners: list[Runner], opts: BenchOptions, label: str) -> list[dict]:
    """Train / infer / latency figures of each runner (interleaved when there are several)."""
    train = measure([r.train_step for r in runners], opts, opts.repeats, f"{label} train")
    infer = measure([lambda r=r: r.infer(r.x_inf) for r in runners], opts, opts.repeats, f"{label} infer")
    latency = measure([lambda r=r: r.infer(r.x_lat) for r in runners], opts, opts.latency_repeats, f"{label} latency")
    return [{"protocol": r.protocol(),
             "train": {**t, "images_per_s": r.batch / t["median_s"]},
             "infer": {**i, "images_per_s": r.batch / i["median_s"]},
             "latency": {**lat, "median_ms": lat["median_s"] * 1e3}}
            for r, t, i, lat in zip(runners, train, infer, latency)]


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
        if twin:
            check_same_architecture(ours, build_timm(twin, bm.num_classes), bm.name, twin)
        del ours
        _progress(f"[{i}/{len(models)}] {bm.name} @{size}px batch {opts.batch} ({params / 1e6:.2f}M params)"
                  f"{' fast path' if opts.fast else ''}{f' vs timm {twin} (interleaved)' if twin else ''}")
        runners = [Runner(bm.build, size, bm.num_classes, opts, opts.fast)]
        if twin:
            # timm runs its default path: channels_last/fusion are our fast path, not timm's out-of-box one.
            runners.append(Runner(lambda: build_timm(twin, bm.num_classes), size, bm.num_classes, opts, False))
        recs = time_runners(runners, opts, bm.name)
        del runners
        entry = {"name": bm.name, "impl": "repro", "paper": bm.paper, "model": bm.model, "args": bm.args,
                 "label": bm.label, "params": params, "image_size": size, "batch": opts.batch, **recs[0]}
        entries.append(entry)
        _progress("    ours: " + _summary(entry))
        if not twin:
            if vs_timm:
                _progress("    timm: no counterpart for this model")
            continue
        tentry = {"name": f"timm:{twin}", "impl": "timm", "model": twin, "args": {}, "label": f"timm twin of {bm.name}",
                  "params": params, "image_size": size, "batch": opts.batch, **recs[1]}
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
