"""`repro bench`: how fast the models train and infer, how fast the input pipeline is, and what
running a cell costs besides its optimizer steps. A benchmark reports; nothing here asserts speed.

Targets:  `repro bench papers/<paper>/<table>` (every runnable cell model of the paper preset,
deduplicated), `repro bench paper:model[:json-args]` (one model), `repro bench data` (JPEG decode +
augment throughput per DataLoader worker), `repro bench overhead` (orchestration cost of a cell).

Results file: `<store>/bench/<target-slug>-<device>[-fast][-bf16][-vs-timm].json` (or `--out`), one per
invocation, written atomically. Schema "repro.bench/1":

    schema       "repro.bench/1"
    kind         "models" | "data" | "overhead"
    target       the target as given;  command: the argv that produced the file
    created_at   UTC ISO time;  git_commit: code version (a sha; older records end -dirty);
                 source_changes, source_changes_total: source files that differed from it
    protocol     how every number below was taken:
                 {device, device_name, cpu, threads, torch, timm, python, timer, batch, latency_batch,
                  image_size ("paper" or px), warmup, repeats, latency_repeats, fast, compile, dtype, train_step}
    kind "models":
      models   [{name, impl ("repro"|"timm"), paper, model, args, label, params, image_size, batch,
                 protocol: {fast, dtype, memory_format, compile, fused_bn, bn_folded, batchnorms},
                 train:   {images_per_s, median_s, iqr_s, times_s},   # fwd + loss + bwd + SGD step
                 infer:   {images_per_s, median_s, iqr_s, times_s},   # inference_mode forward
                 latency: {median_ms, median_s, iqr_s, times_s}}]     # batch 1
      vs_timm  [{ours, timm, params, ours_fast, train_ratio, infer_ratio, latency_ratio}]
               ratios are ours/timm speed (> 1: ours faster); timm always runs its default path
    kind "data":      see repro/bench/data.py (images_per_s per worker count, input-bound verdict)
    kind "overhead":  see repro/bench/overhead.py (per-phase seconds of run_cell)

`render_bench_markdown(store)` turns every such file into a Markdown section for the report.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from repro.errors import ConfigError

SCHEMA = "repro.bench/1"


def add_bench_arguments(sp: argparse.ArgumentParser) -> None:
    """Every option of `repro bench` (the CLI may call this to stay in sync)."""
    sp.add_argument("target", help="papers/<paper>/<table>, paper:model[:json-args], 'data' or 'overhead'")
    sp.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    sp.add_argument("--batch", type=int, default=None, help="batch for throughput (default 8 on CPU, 128 on CUDA)")
    sp.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's current setting)")
    sp.add_argument("--vs", choices=["timm"], default=None, help="time the same architecture from timm side by side")
    sp.add_argument("--fast", action="store_true", help="the fast path: channels_last, fused BN, torch.compile, bf16 where native (see --dtype)")
    sp.add_argument("--out", default=None, help="results file (default <store>/bench/<target>-<device>.json)")
    add_extra_bench_arguments(sp)


def add_extra_bench_arguments(sp: argparse.ArgumentParser) -> None:
    """The options the CLI's original `bench` parser lacks."""
    sp.add_argument("--image-size", type=int, default=None, help="input size (default: each model's paper resolution)")
    sp.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 2 CPU / 10 CUDA)")
    sp.add_argument("--repeats", type=int, default=None, help="timed calls; the median is reported (default 5 / 20)")
    sp.add_argument("--latency-repeats", type=int, default=None, help="timed batch-1 calls (default 10 / 50)")
    sp.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                    help="fast path compute dtype (default: bf16 where the device computes it natively "
                         "(CUDA Ampere+, CPU AVX512-BF16/AMX), else fp32)")
    sp.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile on the fast path (default: on; --no-compile skips the compile time)")
    sp.add_argument("--workers", type=int, nargs="*", default=None, help="bench data: worker counts (default 0 1 2)")
    sp.add_argument("--images", type=int, default=None, help="bench data: JPEGs to decode per setting (default 96)")
    sp.add_argument("--gpu-images-per-s", type=float, default=None,
                    help="bench data: GPU training throughput to compare with (default: a published figure)")


def _opt(args, name, default=None):
    value = getattr(args, name, None)
    return default if value is None else value


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                          "use --device cpu")


def protocol(args, device: str, threads: int) -> dict:
    import os
    import platform

    import torch

    from repro.train.provenance import cpu_model

    try:
        import timm
        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else cpu_model(),
        "cpu": cpu_model(), "threads": threads, "torch": torch.__version__, "timm": timm_version,
        "python": platform.python_version(),
        # Other processes on the machine slow every number down; a reader should know how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
        "timer": "torch.utils.benchmark.Timer.timeit(number=1) x repeats, median (IQR kept); after warm-up calls",
    }


def run_bench(args) -> int:
    import torch

    from repro.store import Store, atomic_write_json
    from repro.train.provenance import git_commit, source_changes

    device = _opt(args, "device", "cpu")
    check_device(device)
    threads = _opt(args, "threads", torch.get_num_threads())
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    target = args.target.strip()
    models = None
    if target not in ("data", "overhead"):
        from repro.bench.targets import resolve_target

        models = resolve_target(target)  # a bad target fails here, before anything is timed
    torch.set_num_threads(threads)
    _warn_if_busy(threads)
    record = {"schema": SCHEMA, "target": target, "command": _command_line(),
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": git_commit(),
              **source_changes(), "protocol": protocol(args, device, threads)}
    if target == "data":
        from repro.bench.data import run_data_bench

        record.update(kind="data", **run_data_bench(args, record["protocol"]))
    elif target == "overhead":
        from repro.bench.overhead import run_overhead_bench

        record.update(kind="overhead", **run_overhead_bench(args, record["protocol"]))
    else:
        record.update(kind="models", **_models_bench(args, models, device, threads, record["protocol"]))
    slug = _slug(args, device, record["protocol"].get("dtype", "fp32"))
    out = Path(args.out) if getattr(args, "out", None) else Store(getattr(args, "store", None)).root / "bench" / slug
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, record)
    print(f"wrote {out}")
    return 0


def _command_line() -> str | None:
    """The command that produced the file, as typed (None when called from Python, e.g. a test)."""
    import shlex

    script = sys.argv[0].replace("\\", "/")
    if script.endswith("bench/__main__.py"):
        return shlex.join(["python", "-m", "repro.bench", *sys.argv[1:]])
    if Path(script).name == "repro" or script.endswith("repro/__main__.py"):
        return shlex.join(["repro", *sys.argv[1:]])
    return None


def _warn_if_busy(threads: int) -> None:
    import os

    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        # Multi-threaded ops spin-wait on their slowest thread: on an oversubscribed machine
        # 2 threads can be 10x slower than 1, so the figures would measure the neighbours.
        print(f"note: this machine is busy (load {load:.1f} on {cores} cores): timings will be noisy"
              f"{'; --threads 1 is more stable' if threads > 1 else ''}", file=sys.stderr)


def _models_bench(args, models, device: str, threads: int, proto: dict) -> dict:
    from repro.bench import fastpath
    from repro.bench.models import BenchOptions, bench_models

    cuda = device == "cuda"
    fast = bool(getattr(args, "fast", False))
    opts = BenchOptions(
        device=device, threads=threads, fast=fast,
        batch=_opt(args, "batch", 128 if cuda else 8),
        image_size=_opt(args, "image_size"),
        warmup=_opt(args, "warmup", 10 if cuda else 2),
        repeats=_opt(args, "repeats", 20 if cuda else 5),
        latency_repeats=_opt(args, "latency_repeats", 50 if cuda else 10),
        compile=_opt(args, "compile", fastpath.default_compile(device, fast)),
        dtype=_dtype(args, device, fast),
    )
    for name in ("batch", "repeats", "latency_repeats", "image_size"):
        value = getattr(opts, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if opts.warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {opts.warmup}")
    proto.update(batch=opts.batch, latency_batch=1, image_size=opts.image_size or "paper", warmup=opts.warmup,
                 repeats=opts.repeats, latency_repeats=opts.latency_repeats, fast=fast, compile=opts.compile, dtype=opts.dtype,
                 train_step="forward + cross-entropy + backward + SGD(momentum 0.9) step, random data")
    entries, comparisons = bench_models(models, opts, vs_timm=getattr(args, "vs", None) == "timm")
    return {"models": entries, "vs_timm": comparisons}


def _dtype(args, device: str, fast: bool) -> str:
    from repro.bench import fastpath

    try:
        return fastpath.fast_dtype(device, fast, getattr(args, "dtype", None))
    except ValueError as exc:
        raise ConfigError(f"--dtype: {exc}") from None


def _slug(args, device: str, dtype: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", args.target.strip().removeprefix("papers/")).strip("_")[:80]
    tags = [device] + (["fast"] if getattr(args, "fast", False) else []) + \
        (["bf16"] if dtype == "bf16" else []) + (["vs-timm"] if getattr(args, "vs", None) else [])
    return f"{name}-{'-'.join(tags)}.json"


def render_bench_markdown(store) -> str:
    """A Markdown performance section from every `<store>/bench/*.json` ('' when there is none)."""
    from repro.bench.render import render_bench_markdown as render

    return render(store)
