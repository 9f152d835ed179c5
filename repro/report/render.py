"""Build the report from the store: report.json (data) and REPORT.md (the same, for people).

The report reads the results store and the specs; it never talks to a launcher or to W&B.
Proxy results are shown apart from the paper comparison and are never called a reproduction.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

from repro.complexity import COUNTING_RULE, cell_complexity
from repro.report import verdicts as V
from repro.spec.cells import expand_cells
from repro.spec.load import list_papers, load_table
from repro.store import Store

METRIC_NAMES = {"top1_err": "top-1 error", "top5_err": "top-5 error", "top1_acc": "top-1 accuracy",
                "box_ap": "box AP", "mask_ap": "mask AP"}


def build_report(store: Store, tables: list[str] | None = None) -> dict:
    by_group = defaultdict(list)
    for r in store.results():
        by_group[r.get("group_key")].append(r)
    report = {"generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "store": str(store.root),
              "counting_rule": COUNTING_RULE, "tables": []}
    for paper in list_papers():
        for name in paper.table_names():
            ref = f"{paper.name}/{name}"
            if tables and ref not in tables:
                continue
            report["tables"].append(_table_report(load_table(ref), by_group, store))
    return report


def _table_report(table, by_group, store) -> dict:
    spec, published = table.spec, table.paper.published.tables[table.spec.table]
    metric = spec.metric
    out = {
        "id": table.id, "title": spec.title, "source": published.source, "read_from": published.read_from,
        "arxiv": f"{table.paper.published.arxiv}{table.paper.published.version or ''}",
        "metric": metric.name, "unit": metric.unit, "better": metric.better, "tolerance": spec.tolerance,
        "notes": list(spec.notes), "cells": [], "trends": {}, "presets": {},
    }
    grids: dict[str, dict] = defaultdict(dict)
    for preset_name, preset in table.paper.presets.items():
        cells = expand_cells(table, preset_name)
        has_runs = any(by_group.get(c.group_key) for c in cells if c.runnable)
        if not has_runs and preset_name != table.spec.presets.get("paper", "paper"):
            continue
        out["presets"][preset_name] = {"proxy": preset.proxy, "data": preset.data.name, "description": preset.description}
        for cell in cells:
            entry = _cell_entry(out, cell, table)
            runs = sorted(by_group.get(cell.group_key, []) if cell.runnable else [], key=lambda r: r["seed"])
            values = [r["metrics"][_metric_key(metric.name)] for r in runs if _metric_key(metric.name) in r["metrics"]]
            stats = V.summarize(values)
            verdict = _static_verdict(cell) or V.cell_verdict(stats["mean"], cell.published, metric.better, spec.tolerance, preset.proxy)
            entry["runs"][preset_name] = {
                **stats, "values": values, "verdict": verdict,
                "delta": None if stats["mean"] is None or cell.published is None or preset.proxy else stats["mean"] - cell.published,
                "run_dirs": [str(store.run_dir(r["cell_id"])) for r in runs],
                "seeds": [r["seed"] for r in runs],
                "git_commits": sorted({r.get("git_commit", "?") for r in runs}),
                "hardware": sorted({(r.get("hardware") or {}).get("cpu", "?") for r in runs}),
            }
            if stats["mean"] is not None:
                grids[preset_name][(cell.row, cell.column)] = stats["mean"]
    rows, cols = [r.id for r in spec.rows], [c.id for c in spec.columns]
    for preset_name, means in grids.items():
        out["trends"][preset_name] = [V.trend_verdict(t, means, rows, cols, metric.better) for t in spec.trend]
    return out


def _metric_key(name: str) -> str:
    return {"top1_acc": "top1_acc"}.get(name, name)


def _static_verdict(cell) -> str | None:
    if cell.model is None:
        return V.NOT_IN_SUITE
    if cell.skip:
        return f"{V.NOT_REPRODUCIBLE}: {cell.skip}"
    return None


def _cell_entry(out, cell, table) -> dict:
    for e in out["cells"]:
        if e["row"] == cell.row and e["column"] == cell.column:
            return e
    complexity = None
    if cell.runnable:
        c = cell_complexity(table, cell)
        complexity = {"params_m": c["params"] / 1e6, "mflops": c["mflops"], "input_size": c["input_size"]}
    unit = table.spec.complexity.unit if table.spec.complexity else "MFLOPs"
    if complexity is not None:
        complexity["in_unit"] = complexity["mflops"] / (1000.0 if unit == "GFLOPs" else 1.0)
    entry = {"row": cell.row, "column": cell.column, "label": cell.label, "published": cell.published,
             "published_note": cell.published_note, "published_complexity": cell.published_complexity,
             "complexity_unit": unit,
             "complexity": complexity, "runs": {}}
    out["cells"].append(entry)
    return entry


# ------------------------------------------------------------------ markdown
def _fmt(v, digits=1):
    return "—" if v is None else f"{v:.{digits}f}"


def _ours(run: dict, link_base: Path | None) -> str:
    if not run or run["n"] == 0:
        return "—"
    text = f"{run['mean']:.1f}" + (f" ± {run['std']:.1f}" if run["n"] > 1 else "") + f" (n={run['n']})"
    if link_base is not None and run["run_dirs"]:
        rel = os.path.relpath(run["run_dirs"][0], link_base)
        text += f" [run]({rel})"
    return text


def render_markdown(report: dict, out_dir: Path) -> str:
    lines = [
        "# REPORT: published numbers beside ours",
        "",
        f"Generated by `repro report` on {report['generated_at']} from the results store. Do not edit by hand.",
        "",
        "How to read it: each table compares the paper's number with ours from the **paper** preset (the",
        "paper's data and recipe). A cell is *reproduced* when ours is within the table's tolerance of the",
        "published number or better. Runs of a **proxy** preset (the embedded synthetic data) are listed apart",
        "and are never compared with the paper: they show the pipeline works and how the variants rank there.",
        f"Complexity: {report['counting_rule']}.",
        "",
        "## Summary",
        "",
        "| table | cells | paper preset: reproduced / not / not run | proxy runs |",
        "|---|---|---|---|",
    ]
    for t in report["tables"]:
        paper_runs = [c["runs"].get("paper", {}) for c in t["cells"]]
        count = lambda v: sum(1 for r in paper_runs if r.get("verdict") == v)  # noqa: E731
        proxy_n = sum(r.get("n", 0) for c in t["cells"] for p, r in c["runs"].items() if t["presets"][p]["proxy"])
        lines.append(f"| [{t['id']}](#{_anchor(t['id'])}) | {len(t['cells'])} | {count(V.REPRODUCED)} / "
                     f"{count(V.NOT_REPRODUCED)} / {count(V.NOT_RUN)} | {proxy_n} |")
    for t in report["tables"]:
        lines += ["", *_table_markdown(t, out_dir)]
    return "\n".join(lines) + "\n"


def _anchor(table_id: str) -> str:
    return table_id.replace("/", "").lower()


def _table_markdown(t: dict, out_dir: Path) -> list[str]:
    better = "lower is better" if t["better"] == "lower" else "higher is better"
    metric = METRIC_NAMES.get(t["metric"], t["metric"])
    lines = [
        f"<a id=\"{_anchor(t['id'])}\"></a>",
        f"## {t['id']}: {t['title']}",
        "",
        f"Published: {t['source']}. Metric: {metric} ({t['unit']}, {better}); tolerance ±{t['tolerance']}.",
        "",
        "| row | column | published | ours (paper preset) | Δ | verdict | FLOPs (mult-adds) paper / ours | params ours (M) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in t["cells"]:
        run = c["runs"].get("paper", {})
        cx = c["complexity"]
        pub = _fmt(c["published"]) if c["published"] is not None else ("n/a" if not c["published_note"] else "not transcribed")
        lines.append(
            f"| {c['row']} | {c['column']} | {pub} | {_ours(run, out_dir)} | {_fmt(run.get('delta'), 2) if run else '—'} | "
            f"{run.get('verdict', V.NOT_RUN)} | {_complexity(c)} | "
            f"{_fmt(cx and cx['params_m'], 3)} |"
        )
    for preset, info in t["presets"].items():
        if not info["proxy"]:
            continue
        lines += _proxy_grid(t, preset, info, out_dir)
    notes = [c for c in t["cells"] if c["published_note"]]
    if notes or t["notes"]:
        lines += ["", "Notes:"]
        lines += [f"- {n}" for n in t["notes"]]
        lines += [f"- ({c['row']}, {c['column']}): {c['published_note']}" for c in notes]
    return lines


def _complexity(c: dict) -> str:
    cx, pub = c["complexity"], c["published_complexity"]
    if cx is None and pub is None:
        return "—"
    digits = 2 if c["complexity_unit"] == "GFLOPs" else 1
    pub_text = "—" if pub is None else f"{pub:g}"
    return f"{pub_text} / {_fmt(cx and cx['in_unit'], digits)} {c['complexity_unit'][0]}"


def _proxy_grid(t: dict, preset: str, info: dict, out_dir: Path) -> list[str]:
    rows = list(dict.fromkeys(c["row"] for c in t["cells"]))
    cols = list(dict.fromkeys(c["column"] for c in t["cells"]))
    get = {(c["row"], c["column"]): c["runs"].get(preset) for c in t["cells"]}
    lines = [
        "",
        f"**Proxy preset `{preset}`** ({info['data']} data: not comparable with the paper; {info['description']}). "
        f"Ours, {METRIC_NAMES.get(t['metric'], t['metric'])} ({t['unit']}):",
        "",
        "| | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = []
        for c in cols:
            run = get.get((r, c))
            if run and run["verdict"].startswith(V.NOT_REPRODUCIBLE):
                cells.append("skipped")
            elif run and run["verdict"] == V.NOT_IN_SUITE:
                cells.append("n/a")
            else:
                cells.append(_ours(run, out_dir))
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    for trend in t["trends"].get(preset, []):
        detail = f" (fails in: {', '.join(trend['failures'])})" if trend["failures"] else ""
        lines.append(f"\nPaper's claim on proxy data: *{trend['claim']}* — {trend['status']}{detail}.")
    return lines


def write_report(store: Store, out: Path, tables: list[str] | None = None) -> dict:
    import json

    out = Path(out)
    report = build_report(store, tables)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(report, out.parent.resolve()))
    (out.parent / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
