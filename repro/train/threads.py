"""How many CPU threads a training process should use: what it may actually run on, not the core count.

torch starts one intra-op thread per core the machine has. A process confined to fewer CPUs (an
affinity mask, a container's CPU quota, a SLURM allocation) or sharing them with other work then
runs more threads than it gets CPUs, and OpenMP's idle threads spin while they wait for each other.
Measured on this project's 2-core machine under a load of ~3.5 (shufflenet table2, test preset,
1x g=3, 60 steps): torch's defaults took 90 s; 2 threads that sleep when idle 28 s; 1 thread 25 s.
So training commands size the thread pool from the CPUs this process may use, less those other work
keeps busy when it starts, and when there is such work make OpenMP's idle threads sleep
(OMP_WAIT_POLICY=PASSIVE, unless the user set it); `--threads N` overrides.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
CHOSEN_ENV = "REPRO_THREADS"  # set by the first cell of a process, inherited by its DDP ranks
CHOSEN_REASON_ENV = "REPRO_THREADS_REASON"
BUSY_ENV = "REPRO_BUSY_CPUS"  # other work's CPUs, measured once at start-up


def measure_before_torch() -> None:
    """Measure other work once, before torch is imported (OpenMP reads its wait policy once, at
    start-up), and make idle threads sleep only when there is other work: on this 2-core machine the
    15-cell ShuffleNet table took 10 min 41 s idle with sleeping threads against about 7.5 min with
    torch's spinning ones, while under load spinning threads were 3.5x slower."""
    if BUSY_ENV not in os.environ:
        busy = busy_cpus()
        os.environ[BUSY_ENV] = f"{busy:.2f}" if busy is not None else ""
    busy = _busy_from_env()
    cpus, _ = usable_cpus()
    if busy is not None and round(cpus - busy) < cpus:
        os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")


def _busy_from_env() -> float | None:
    try:
        return float(os.environ.get(BUSY_ENV, ""))
    except ValueError:
        return None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 `cpu.max`, v1 cfs files); None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> tuple[int, str]:
    """(CPUs this process may run on, what limits it)."""
    try:
        cpus, why = len(os.sched_getaffinity(0)), "affinity"
    except AttributeError:  # not Linux
        cpus, why = os.cpu_count() or 1, "cores"
    quota = cgroup_cpu_limit()
    if quota is not None and math.ceil(quota) < cpus:
        cpus, why = max(1, math.ceil(quota)), "cgroup quota"
    return cpus, why


def busy_cpus(cpus: set[int] | None = None, window_s: float = 0.5, stat: Path = Path("/proc/stat")) -> float | None:
    """How many of `cpus` (default: this process's affinity set) other work keeps busy right now,
    from /proc/stat over `window_s`; None where there is no /proc/stat. Measured at start-up, before
    this process computes anything, so it is other work; the load average would also count this
    process's previous cell for a minute after it ends."""
    import time

    def sample() -> dict[int, tuple[int, int]]:
        out = {}
        for line in stat.read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *ticks = line.split()
                values = [int(t) for t in ticks]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                out[int(name[3:])] = (sum(values), idle)
        return out

    try:
        cpus = cpus if cpus is not None else set(os.sched_getaffinity(0))
        before = sample()
        time.sleep(window_s)
        after = sample()
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0.0
    for cpu in cpus:
        if cpu in before and cpu in after:
            total = after[cpu][0] - before[cpu][0]
            idle = after[cpu][1] - before[cpu][1]
            busy += (total - idle) / total if total > 0 else 0.0
    return busy


def choose_threads(requested: int | None = None, processes: int = 1, load: float | None = None) -> tuple[int, str]:
    """(intra-op threads per process, why). `processes` share the CPUs (DDP ranks on one machine);
    `load` is how many CPUs other work keeps busy (measured when None)."""
    if requested:
        return requested, "--threads"
    for name in (CHOSEN_ENV, "OMP_NUM_THREADS"):  # a parent's choice (DDP ranks), or a launcher's (Ray sets 1)
        if os.environ.get(name, "").isdigit() and int(os.environ[name]) > 0:
            return int(os.environ[name]), name
    cpus, why = usable_cpus()
    share = max(1, cpus // max(1, processes))
    if load is None:
        load = _busy_from_env()  # measured at start-up by measure_before_torch
    if load is None:
        load = busy_cpus()
        if load is None:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    free = max(1, min(cpus, round(cpus - load)))
    if free < cpus:
        share = max(1, min(share, free // max(1, processes) or 1))
        why = f"{why}: {cpus} CPUs, {load:.1f} busy with other work"
    else:
        why = f"{why}: {cpus} CPUs"
    return share, why


def configure_threads(requested: int | None = None, processes: int = 1) -> dict:
    """Set torch's intra-op thread count; returns what to record in result.json."""
    import torch

    threads, why = choose_threads(requested, processes)
    # Decided once per process: later cells of the table (and DDP ranks started from it) keep it,
    # rather than measure a machine this process itself keeps busy.
    if why not in ("--threads", "OMP_NUM_THREADS"):
        os.environ[CHOSEN_ENV] = str(threads)
        why = os.environ.setdefault(CHOSEN_REASON_ENV, why)
    torch.set_num_threads(threads)
    return {"threads": threads, "threads_reason": why, "omp_wait_policy": os.environ.get(WAIT_POLICY_ENV, "")}
