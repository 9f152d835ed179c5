"""Where a number came from: code version, software and hardware."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]

# What decides a run's number: the framework, the papers' models and modules, their specs, presets and
# published numbers, and the dependencies. Generated outputs (REPORT.md, report.json, plots, results/,
# runs/) are not here, so rebuilding a report or adding results never marks a later run as changed.
SOURCE_PATHSPECS = (":(glob)repro/**", ":(glob)papers/**/*.py", ":(glob)papers/**/*.yaml", ":(glob)papers/**/*.yml",
                    "pyproject.toml")
MAX_LISTED_CHANGES = 20


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit the code was checked out at: a plain sha ('unknown' outside a git checkout).
    Whether the run's source differed from it is `source_changes()`, recorded beside it."""
    out = _git("rev-parse", "HEAD")
    if out is None or out.returncode != 0:
        return "unknown"
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def source_changes() -> dict:
    """Files that matter to a run and differ from the commit (edited, staged, deleted or new, not
    ignored): {"source_changes": first MAX_LISTED_CHANGES paths, sorted, "source_changes_total": n}.
    None for both when git cannot tell (no checkout, no git)."""
    out = _git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *SOURCE_PATHSPECS)
    if out is None or out.returncode != 0:
        return {"source_changes": None, "source_changes_total": None}
    paths, fields = set(), out.stdout.split("\0")
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # a rename or copy is followed by its source path, which also changed
            if i < len(fields) and fields[i]:
                paths.add(fields[i])
            i += 1
    changed = sorted(paths)
    return {"source_changes": changed[:MAX_LISTED_CHANGES], "source_changes_total": len(changed)}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "gpus": gpus,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
