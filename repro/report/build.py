"""Build the report data (the `report.json` twin of REPORT.md) from the store and the specs.

The report reads the results store and the specs; it never talks to a launcher or to W&B.
Schema of report.json (version 1; keys are only ever added, never renamed):

    schema_version: 1
    generated_at: "YYYY-MM-DD HH:MM UTC";  store: the results store, relative to REPORT.md's folder
    counting_rule: how params/FLOPs are counted;  complexity_rel_tol: tolerance of a "close" mark
    default_tolerance: the tolerance a spec gets when it states none (metric units)
    cell_verdicts: {verdict: meaning}
    tables: [ {
        id: "paper/table", paper, title, arxiv, source, read_from   (source of every published number)
        metric, unit, better: "lower"|"higher", tolerance, paper_preset (the preset compared with the paper)
        notes: [str], presets: {name: {proxy, data, description, num_classes}}   (paper + any with runs)
        plot: path of the table's PNG relative to REPORT.md, or null
        cells: [ {
            row, column, label, model (null: not in this suite), args, skip (reason or null)
            published: number|null, published_note, published_source: "source; read from ..."
            verdict: headline verdict (see cell_verdicts; "not reproducible" carries ": reason")
            complexity: null | {input_size, params_m, mflops (ours, at the paper's input size),
                                flops: null|{column, unit, published, ours, verdict}, params: same}
            runs: {preset: {n, mean, std, values, seeds, delta (ours - published; null for proxy), derived (a
                            difference_of column: mean of one column minus the other's; runs are theirs),
                            verdict, proxy, runs: [{seed, value, cell_id, run_dir (relative to REPORT.md),
                                                    git_commit (a sha), source_changes (source files that
                                                    differed from it, first 20; null: not known, as in
                                                    results recorded as "<sha>-dirty"), source_changes_total,
                                                    hardware, preset, steps, wall_time_s, finished_at}]}}
        } ]
        trends: [ {claim, kind, published: {status, checked, failures},
                   by_preset: {preset: {status, checked, failures}}} ]
    } ]
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

from repro.complexity import COUNTING_RULE, cell_complexity
from repro.report import verdicts as V
from repro.spec.cells import expand_cells
from repro.data import DETECTION_DATASETS
from repro.errors import SpecError
from repro.spec.load import list_papers, load_table, warn_broken_papers
from repro.spec.schema import TableSpec
from repro.store import Store

SCHEMA_VERSION = 1
DEFAULT_TOLERANCE = TableSpec.model_fields["tolerance"].default
# Published FLOPs units and their size in MFLOPs.
FLOP_UNITS = {"MFLOPs": 1.0, "GFLOPs": 1000.0, "B FLOPs": 1000.0}
PARAM_UNITS = {"M", "M params"}


def build_report(store: Store, tables: list[str] | None = None) -> dict:
    by_group = defaultdict(list)
    for r in store.results():
        by_group[r.get("group_key")].append(r)
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "store": str(store.root), "counting_rule": COUNTING_RULE,
        "complexity_rel_tol": V.COMPLEXITY_REL_TOL, "default_tolerance": DEFAULT_TOLERANCE,
        "cell_verdicts": V.CELL_VERDICTS, "tables": [],
    }
    papers = list_papers()
    warn_broken_papers()
    for paper in papers:
        for name in paper.table_names():
            ref = f"{paper.name}/{name}"
            if tables and ref not in tables and f"papers/{ref}" not in tables:
                continue
            try:
                table = load_table(ref)
            except SpecError as exc:
                if tables:  # asked for by name: its error is the answer
                    raise
                # One broken spec must not cost the report of every other table.
                print(f"repro: warning: skipping {ref} in the report: {exc}", file=sys.stderr)
                continue
            report["tables"].append(table_report(table, by_group, store))
    return report


def _other_column_notes(spec, published) -> list[str]:
    """Notes on published columns no cell shows (params, FLOPs): they explain the complexity marks."""
    shown = {c.id for c in spec.columns}
    return [f"({n.row or 'every row'}, {published.columns[n.column].label if n.column in published.columns else n.column}): "
            f"{n.note}" for n in published.notes if n.column is not None and n.column not in shown]


def complexity_columns(spec, published) -> dict[str, tuple[str, str]]:
    """Which published columns hold FLOPs and params: {"flops": (column, unit), "params": ...}.

    The spec's `complexity` wins; otherwise a column is recognised by its unit, so tables whose
    spec declares none (FasterNet's GFLOPs) still get their complexity checked.
    """
    found = {}
    ref = spec.complexity
    if ref and ref.column:
        found["flops"] = (ref.column, published.columns[ref.column].unit if
                          published.columns[ref.column].unit in FLOP_UNITS else ref.unit)
    else:
        for col_id, col in published.columns.items():
            if col.unit in FLOP_UNITS:
                found["flops"] = (col_id, col.unit)
                break
    if ref and ref.params_column:
        found["params"] = (ref.params_column, "M")
    else:
        for col_id, col in published.columns.items():
            if col.unit in PARAM_UNITS and any(w in (col_id + col.label).lower() for w in ("param", "weight")):
                found["params"] = (col_id, "M")
                break
    return found


def table_report(table, by_group: dict, store: Store) -> dict:
    spec, published = table.spec, table.paper.published.tables[table.spec.table]
    paper_preset, _ = table.paper.preset("paper", spec)
    out = {
        "id": table.id, "paper": table.paper.name, "title": spec.title,
        "arxiv": f"{table.paper.published.arxiv}{table.paper.published.version or ''}",
        "source": published.source, "read_from": published.read_from,
        "metric": spec.metric.name, "unit": spec.metric.unit, "better": spec.metric.better,
        "tolerance": spec.tolerance, "paper_preset": paper_preset,
        "notes": list(spec.notes) + [n.note for n in published.notes if n.row is None and n.column is None]
        + _other_column_notes(spec, published),
        "presets": {}, "plot": None, "cells": [], "trends": [],
    }
    source = published.source + (f"; read from {published.read_from}" if published.read_from else "")
    cx_cols = complexity_columns(spec, published)
    entries: dict[tuple[str, str], dict] = {}
    grids: dict[str, dict] = defaultdict(dict)
    shown_groups: set[str] = set()
    for preset_name, preset in table.paper.presets.items():
        if spec.presets.get(preset_name, preset_name) != preset_name:
            continue  # this table aliases the name to another preset, listed under its own name
        if (preset.data.name in DETECTION_DATASETS) != (spec.task == "detection"):
            continue  # a preset of the other kind: this table never runs it
        cells = expand_cells(table, preset_name)
        with_runs = {c.group_key for c in cells if c.runnable and by_group.get(c.group_key)}
        # A preset whose runs all show under an earlier one adds nothing (Table 3's r=1 rows are
        # the same cells under `proxy` and `proxy_32px`, which differ only on rows it does not run).
        if preset_name != paper_preset and with_runs <= shown_groups:
            continue
        shown_groups |= with_runs
        out["presets"][preset_name] = {"proxy": preset.proxy, "data": preset.data.name, "description": preset.description,
                                       "num_classes": preset.data.num_classes}
        # Derived cells last: they read the means of the cells they are computed from.
        for cell in sorted(cells, key=lambda c: c.difference_of is not None):
            key = (cell.row, cell.column)
            if key not in entries:
                entries[key] = _cell_entry(table, cell, source, published, cx_cols)
            if cell.difference_of:
                a, b = (entries[(cell.row, col)]["runs"].get(preset_name) for col in cell.difference_of)
                entry = _difference_runs(a, b, cell, spec, preset.proxy)
            else:
                runs = sorted(by_group.get(cell.group_key, []) if cell.runnable else [], key=lambda r: r.get("seed", 0))
                entry = _preset_runs(runs, cell, spec, preset.proxy, store)
            if entry["n"] or preset_name == paper_preset:
                entries[key]["runs"][preset_name] = entry
            if entry["mean"] is not None:
                grids[preset_name][key] = entry["mean"]
    for entry in entries.values():
        entry["verdict"] = _headline_verdict(entry, out["presets"])
    out["cells"] = list(entries.values())
    out["trends"] = _trends(table, entries, grids, paper_preset)
    return out


def _cell_entry(table, cell, source: str, published, cx_cols: dict) -> dict:
    entry = {
        "row": cell.row, "column": cell.column, "label": cell.label, "model": cell.model, "args": cell.args,
        "skip": cell.skip, "published": cell.published, "published_note": cell.published_note,
        "published_source": source, "verdict": None, "complexity": None, "runs": {},
    }
    if cell.runnable:
        c = cell_complexity(table, cell)
        values = published.rows[cell.row].values
        cx = {"input_size": c["input_size"], "params_m": c["params"] / 1e6, "mflops": c["mflops"], "flops": None, "params": None}
        if "flops" in cx_cols:
            col, unit = cx_cols["flops"]
            ours = c["mflops"] / FLOP_UNITS.get(unit, 1.0)
            cx["flops"] = {"column": col, "unit": unit, "published": values.get(col), "ours": ours,
                           "verdict": V.complexity_verdict(ours, values.get(col))}
        if "params" in cx_cols:
            col, unit = cx_cols["params"]
            ours = c["params"] / 1e6
            cx["params"] = {"column": col, "unit": unit, "published": values.get(col), "ours": ours,
                            "verdict": V.complexity_verdict(ours, values.get(col))}
        entry["complexity"] = cx
    return entry


def _preset_runs(runs: list[dict], cell, spec, proxy: bool, store: Store) -> dict:
    metric = spec.metric.name
    kept = [r for r in runs if metric in (r.get("metrics") or {})]
    values = [float(r["metrics"][metric]) for r in kept]
    stats = V.summarize(values)
    if cell.model is None:
        verdict = V.NOT_IN_SUITE
    elif cell.skip:
        verdict = f"{V.NOT_REPRODUCIBLE}: {cell.skip}"
    else:
        verdict = V.cell_verdict(stats["mean"], cell.published, spec.metric.better, spec.tolerance, proxy)
    comparable = stats["mean"] is not None and cell.published is not None and not proxy
    return {
        **stats, "values": values, "seeds": [r.get("seed") for r in kept], "proxy": proxy, "verdict": verdict,
        "delta": stats["mean"] - cell.published if comparable else None,
        "runs": [_provenance(r, value, store) for r, value in zip(kept, values)],
    }


def _difference_runs(a: dict | None, b: dict | None, cell, spec, proxy: bool) -> dict:
    """A derived cell: mean(a) - mean(b) over the seeds both columns ran; std from both columns'
    spreads (independent runs). Its runs are the source cells' runs."""
    if not a or not b or not a["n"] or not b["n"]:
        stats = V.summarize([])
        runs = []
    else:
        stats = {"n": min(a["n"], b["n"]), "mean": a["mean"] - b["mean"],
                 "std": (a["std"] ** 2 + b["std"] ** 2) ** 0.5}
        runs = a["runs"] + b["runs"]
    verdict = V.difference_verdict(stats["mean"], cell.published, spec.tolerance, proxy)
    comparable = stats["mean"] is not None and cell.published is not None and not proxy
    return {**stats, "values": [], "seeds": [], "proxy": proxy, "verdict": verdict, "derived": True,
            "delta": stats["mean"] - cell.published if comparable else None, "runs": runs}


LEGACY_DIRTY = "-dirty"


def code_version(result: dict) -> tuple[str, list[str] | None, int | None]:
    """(commit sha, source files changed from it, how many) of a result.

    Results written before source changes were recorded apart say "<sha>-dirty" when any tracked
    file differed, generated reports included: for those the changes are unknown (None), and a
    plain sha from then means nothing differed.
    """
    commit = str(result.get("git_commit") or "unknown")
    if "source_changes" in result:
        changes = result["source_changes"]
        return commit, changes, result.get("source_changes_total", None if changes is None else len(changes))
    if commit.endswith(LEGACY_DIRTY):
        return commit[:-len(LEGACY_DIRTY)], None, None
    return commit, (None if commit == "unknown" else []), (None if commit == "unknown" else 0)


def _provenance(result: dict, value: float, store: Store) -> dict:
    hw = result.get("hardware") or {}
    device = ", ".join(hw.get("gpus") or []) or hw.get("cpu") or "unknown hardware"
    commit, changes, total = code_version(result)
    return {
        "seed": result.get("seed"), "value": value, "cell_id": result["cell_id"],
        "run_dir": str(store.run_dir(result["cell_id"])), "git_commit": commit,
        "source_changes": changes, "source_changes_total": total,
        "hardware": f"{device} @ {hw.get('host', '?')}", "preset": result.get("preset"),
        "steps": result.get("steps"), "wall_time_s": result.get("wall_time_s"), "finished_at": result.get("finished_at"),
    }


def _headline_verdict(entry: dict, presets: dict) -> str:
    """One verdict per cell: a comparable (non-proxy) run decides; else proxy / transcription / not run."""
    runs = entry["runs"]
    static = next((r["verdict"] for r in runs.values() if r["verdict"] == V.NOT_IN_SUITE
                   or r["verdict"].startswith(V.NOT_REPRODUCIBLE)), None)
    if static:
        return static
    comparable = [r for p, r in runs.items() if not presets[p]["proxy"] and r["n"]]
    if comparable:
        return comparable[0]["verdict"]
    if any(r["n"] for p, r in runs.items() if presets[p]["proxy"]):
        return V.PROXY_ONLY
    return V.NOT_TRANSCRIBED if entry["published"] is None else V.NOT_RUN


def _trends(table, entries: dict, grids: dict, paper_preset: str) -> list[dict]:
    spec = table.spec
    rows, cols = [r.id for r in spec.rows], [c.id for c in spec.columns]
    published_grid = {k: e["published"] for k, e in entries.items() if e["published"] is not None}
    buildable = {k for k, e in entries.items() if e["model"] is not None and not e["skip"]}
    trends = []
    for claim in spec.trend:
        on_paper = V.trend_verdict(claim, published_grid, rows, cols, spec.metric.better)
        trends.append({
            "claim": claim.claim, "kind": claim.kind,
            "published": {k: on_paper[k] for k in ("status", "checked", "failures")},
            "by_preset": {p: {k: v for k, v in V.trend_verdict(claim, grids.get(p, {}), rows, cols, spec.metric.better,
                                                               buildable).items() if k in ("status", "checked", "failures")}
                          for p in dict.fromkeys([paper_preset, *grids])},
        })
    return trends
