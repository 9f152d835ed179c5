"""`repro report`: REPORT.md, report.json and the figures, all from the results store.

    build.py     the data (report.json; its schema is documented there)
    markdown.py  REPORT.md
    plots.py     <out dir>/report/*.png, referenced from REPORT.md

Proxy results are shown apart from the paper comparison and are never called a reproduction.
"""

from __future__ import annotations

import json
from pathlib import Path

from repro.report.build import build_report
from repro.report.markdown import render_markdown
from repro.report.plots import accuracy_vs_flops_plot, table_plot
from repro.store import Store
from repro.store.store import atomic_write_text

PLOT_DIR = "report"

__all__ = ["build_report", "render_markdown", "write_report"]


def write_report(store: Store, out: Path, tables: list[str] | None = None, plots: bool = True) -> dict:
    out = Path(out)
    base = out.parent.resolve()
    report = build_report(store, tables)
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
