"""`repro report`: REPORT.md, report.json and the figures, all from the results store.

    build.py     the data (report.json; its schema is documented there)
    markdown.py  REPORT.md
    plots.py     <out dir>/report/*.png, referenced from REPORT.md

By default a store's report lives beside it (<store>/REPORT.md, <store>/report.json,
<store>/report/*.png): a user's runs never overwrite the REPORT.md this repository ships, which is
built from results/runs by `repro report --store results/runs --out REPORT.md`.

Proxy results are shown apart from the paper comparison and are never called a reproduction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from repro.errors import ConfigError, RunFailed
from repro.report.build import build_report
from repro.report.markdown import render_markdown
from repro.report.plots import accuracy_vs_flops_plot, table_plot
from repro.store import Store
from repro.store.store import atomic_write_text

PLOT_DIR = "report"
REPORT_NAME = "REPORT.md"

__all__ = ["build_report", "render_markdown", "write_report"]


def check_readable_store(store: Store) -> None:
    """A report of a store that is not there would be an empty report and exit 0: say so instead."""
    root = store.root
    if not root.exists():
        raise ConfigError(f"results store {root} does not exist; pass --store DIR (the folder `repro run` wrote to) "
                          "or set $REPRO_STORE")
    if not root.is_dir():
        raise ConfigError(f"results store {root} is not a directory; pass --store DIR (the folder `repro run` wrote to)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"results store {root} cannot be read (permission denied); pass --store DIR")


def default_report_path(store: Store) -> Path:
    """Where a store's report goes when no path is asked for: beside the runs it describes."""
    return store.root / REPORT_NAME


def shown_path(path: Path) -> str:
    """A path as a user would type it from here: relative to the working directory when inside it."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def report_written_line(out: Path, report: dict) -> str:
    """What `run` and `report` print once the report is written: where, so nobody has to guess
    which REPORT.md changed."""
    n = len(report["tables"])
    return f"report: {shown_path(out)} ({n} table{'s' if n != 1 else ''}; report.json and plots beside it)"


def write_report(store: Store, out: Path | None = None, tables: list[str] | None = None, plots: bool = True) -> dict:
    out = default_report_path(store) if out is None else Path(out)
    base = out.parent.resolve()
    if out.is_dir():  # checked first, not after drawing every figure
        raise RunFailed(f"cannot write the report to {out}: it is a directory; pass --out FILE, e.g. {out / 'REPORT.md'}")
    report = build_report(store, tables)
    try:
        return _write(report, store, out, base, plots)
    except OSError as exc:
        where = exc.filename or out
        raise RunFailed(f"cannot write the report: {where}: {exc.strerror or type(exc).__name__}; "
                        "pass --out FILE in a writable folder") from None


def _relative_paths(report: dict, base: Path) -> None:
    """Store and run folders relative to the report's folder, so the report (and its links) reads the
    same on any machine and after the folder is moved with its store; never the writer's home."""
    rel = lambda path: Path(os.path.relpath(path, base)).as_posix()  # noqa: E731
    report["store"] = rel(report["store"])
    for t in report["tables"]:
        for cell in t["cells"]:
            for preset_runs in cell["runs"].values():
                for run in preset_runs["runs"]:
                    if os.path.isabs(run["run_dir"]):  # a derived cell lists its source cells' runs again
                        run["run_dir"] = rel(run["run_dir"])


def _write(report: dict, store: Store, out: Path, base: Path, plots: bool) -> dict:
    _relative_paths(report, base)
    summary_plot = None
    if plots:
        for t in report["tables"]:
            png = table_plot(t, base / PLOT_DIR / f"{t['id'].replace('/', '__')}.png")
            t["plot"] = png.relative_to(base).as_posix() if png else None
        png = accuracy_vs_flops_plot(report, base / PLOT_DIR / "accuracy_vs_mflops.png")
        summary_plot = png.relative_to(base).as_posix() if png else None
    report["summary_plot"] = summary_plot
    from repro.bench import render_bench_markdown

    # Measured speed sits beside the accuracy tables: `repro bench` writes <store>/bench/*.json.
    performance = render_bench_markdown(store)
    atomic_write_text(out, render_markdown(report, base, summary_plot) + (f"\n{performance}\n" if performance else ""))
    atomic_write_text(base / "report.json", json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    return report
