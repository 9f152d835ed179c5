"""REPORT.md from the report data: the same facts as report.json, laid out for a reviewer."""

from __future__ import annotations

import os
from pathlib import Path

from repro.report import verdicts as V

METRIC_NAMES = {"top1_err": "top-1 error", "top5_err": "top-5 error", "top1_acc": "top-1 accuracy",
                "box_ap": "box AP", "mask_ap": "mask AP"}
MARKS = {V.MATCH: "✓", V.CLOSE: "≈", V.MISMATCH: "✗", None: ""}


def _esc(text) -> str:
    """Table cells must not contain a bare pipe or a newline."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(v, digits=1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _num(v) -> str:
    """A published number as printed (the YAML value, no re-rounding)."""
    if v is None:
        return "—"
    return f"{v:.{V.printed_decimals(v)}f}" if isinstance(v, float) else str(v)


def _link(path: str, base: Path) -> str:
    """A run folder as a link from the report: report.json already holds it relative to the report."""
    return (os.path.relpath(path, base) if os.path.isabs(path) else path).replace(os.sep, "/")


def _ours(run: dict | None, base: Path) -> str:
    """mean ± std (n) and a link to every seed's run folder (config.json, result.json)."""
    if not run or not run["n"]:
        return "not run"
    text = f"{run['mean']:.2f}" + (f" ± {run['std']:.2f}" if run["n"] > 1 else "") + f" (n={run['n']})"
    if run.get("derived"):  # its runs are the two source cells', linked from their own columns
        return f"{text}, derived"
    links = " ".join(f"[s{r['seed']}]({_link(r['run_dir'], base)})" for r in run["runs"])
    return f"{text} {links}"


def _derived_from(cell: dict) -> str:
    """'derived: no shuffle − shuffle' from the cell's skip text, which names the two source columns."""
    skip = cell["skip"] or ""
    if skip.startswith("derived: "):
        body = skip[len("derived: "):].split(", computed by", 1)[0]
        return "derived: " + body.replace("' minus '", " − ").strip("'")
    return "derived"


def _is_derived(cell: dict) -> bool:
    return any(run.get("derived") for run in cell["runs"].values()) or (cell["skip"] or "").startswith("derived: ")


def _ours_paper_column(cell: dict, run: dict | None, base: Path, t: dict) -> str:
    """The 'ours' cell of the paper comparison: a number, or what the cell is when there is none,
    so a cell with proxy runs does not read "not run" and a quoted row does not read as missing."""
    if cell["model"] is None:
        return "—"  # another paper's model: the verdict column says so
    derived = _is_derived(cell)
    if cell["skip"] and not derived:
        return "not built"
    if run and run["n"]:
        return _ours(run, base)
    proxies = [p for p, r in cell["runs"].items() if t["presets"][p]["proxy"] and r["n"]]
    text = "proxy only (" + ", ".join(f"`{p}`" for p in proxies) + " below)" if proxies else "not run"
    return f"{text}, {_derived_from(cell)}" if derived else text


def _published(cell: dict) -> str:
    if cell["published"] is not None:
        return _num(cell["published"])
    return "*not transcribed*" if cell["published_note"] else "*not printed*"


def _verdict(text: str) -> str:
    if text.startswith(V.NOT_REPRODUCIBLE):
        return f"{V.NOT_REPRODUCIBLE} ({_esc(text.split(': ', 1)[1])})"
    if text == V.NOT_IN_SUITE:
        return f"{V.NOT_IN_SUITE} (another paper's model, not built here)"
    return {V.REPRODUCED: "**reproduced**", V.NOT_REPRODUCED: "**not reproduced**"}.get(text, text)


def _anchor(table_id: str) -> str:
    return table_id.replace("/", "").lower()


# Summary columns, in reading order: what can be trusted first, then what is missing and why.
SUMMARY_COLUMNS = [
    (V.REPRODUCED, "reproduced"), (V.NOT_REPRODUCED, "not reproduced"), (V.PROXY_ONLY, "proxy only"),
    (V.NOT_RUN, "not run"), (V.NOT_IN_SUITE, "published only (other paper)"),
    (V.NOT_REPRODUCIBLE, "not reproducible"), (V.NOT_TRANSCRIBED, "not transcribed"),
]


def _kind(verdict: str) -> str:
    return V.NOT_REPRODUCIBLE if verdict.startswith(V.NOT_REPRODUCIBLE) else verdict


def verdict_counts(report: dict) -> dict[str, int]:
    """Cells per headline verdict over every table (not reproducible with its reason counted as one kind)."""
    counts = {v: 0 for v, _ in SUMMARY_COLUMNS}
    for t in report["tables"]:
        for c in t["cells"]:
            counts[_kind(c["verdict"])] = counts.get(_kind(c["verdict"]), 0) + 1
    return counts


def _trust_line(report: dict) -> str:
    """One sentence a reader can stop after: how many cells were reproduced on the paper's own setup."""
    n = verdict_counts(report)
    total = sum(n.values())
    compared = n[V.REPRODUCED] + n[V.NOT_REPRODUCED]
    if compared:
        parts = [f"Of {total} cells in these tables, **{n[V.REPRODUCED]} reproduced** and **{n[V.NOT_REPRODUCED]} not "
                 f"reproduced** on the paper's data and recipe ({compared} compared in all)."]
    else:
        parts = [f"Of {total} cells in these tables, **none is compared with the paper yet**: no cell has a finished run "
                 "of the paper's data and recipe, so nothing here is a reproduction."]
    rest = [(V.PROXY_ONLY, "**Proxy only**", "synthetic data: they show that the pipeline trains and how the "
             "variants rank, never that the paper's number holds"),
            (V.NOT_RUN, "Not run yet", "built here, no finished run"),
            (V.NOT_IN_SUITE, "Published only", "other papers' models, quoted for comparison"),
            (V.NOT_REPRODUCIBLE, "Not reproducible", "the paper does not give enough to build them"),
            (V.NOT_TRANSCRIBED, "Not transcribed", "the published number could not be read")]
    parts += [f"{label}: {n[v]} ({why})." for v, label, why in rest if n[v]]
    return " ".join(parts)


def _store_phrase(store: str) -> str:
    return "the runs in this folder" if store in (".", "") else f"the results store `{store}`"


def render_markdown(report: dict, out_dir: Path, summary_plot: str | None = None) -> str:
    lines = [
        "# REPORT: published numbers beside ours",
        "",
        _trust_line(report),
        "",
        "## Summary",
        "",
        "| table | cells | " + " | ".join(label for _, label in SUMMARY_COLUMNS)
        + " | paper's claims holding: in its numbers / ours |",
        "|---|---|" + "---|" * len(SUMMARY_COLUMNS) + "---|",
    ]
    for t in report["tables"]:
        kinds = [_kind(c["verdict"]) for c in t["cells"]]
        trends = t["trends"]
        holds_paper = sum(1 for tr in trends if tr["published"]["status"] == V.HOLDS)
        holds_ours = sum(1 for tr in trends if tr["by_preset"].get(t["paper_preset"], {}).get("status") == V.HOLDS)
        claims = f"{holds_paper} / {holds_ours} of {len(trends)}" if trends else "—"
        lines.append(f"| [{t['id']}](#{_anchor(t['id'])}) | {len(kinds)} | "
                     + " | ".join(str(kinds.count(v)) for v, _ in SUMMARY_COLUMNS) + f" | {claims} |")
    lines += [
        "",
        f"Built by `repro report` on {report['generated_at']} from {_store_phrase(report['store'])}; "
        "rebuilt whenever `repro run` or `repro report` writes it, never edited by hand. "
        "`report.json` holds the same data for scripts.",
        "",
        "How to read it: each table compares the paper's number with the mean ± std (n seeds) of our runs of the "
        "table's **paper** preset (the paper's data and recipe); Δ = ours − published, and each seed links to its run "
        f"folder (`config.json`, `result.json`). Tolerances are stated per table (±{report['default_tolerance']:g} "
        "when a spec states none). Runs of a **proxy** preset (synthetic data) are shown apart, below each table, "
        "and never compared with the paper.",
        "",
        "Verdicts:",
        "",
        *[f"- *{k}*: {v}" for k, v in report["cell_verdicts"].items()],
        "",
        f"Complexity is counted as {report['counting_rule']}; marks: ✓ ours rounds to the printed number, "
        f"≈ within {report['complexity_rel_tol']:.0%} of it, ✗ further off.",
    ]
    if summary_plot:
        lines += ["", "Accuracy against complexity, every paper: published points (hollow) and ours (filled; "
                  "proxy runs on their own panel; x is always the model's MFLOPs at the paper's input size).", "",
                  f"![accuracy vs MFLOPs]({summary_plot})"]
    for t in report["tables"]:
        lines += ["", *_table_markdown(t, out_dir)]
    return "\n".join(lines) + "\n"


def _table_markdown(t: dict, base: Path) -> list[str]:
    better = "lower is better" if t["better"] == "lower" else "higher is better"
    metric = METRIC_NAMES.get(t["metric"], t["metric"])
    paper = t["paper_preset"]
    read_from = f" Read from: {t['read_from']}." if t["read_from"] else " No text source of this table was found."
    lines = [
        f"<a id=\"{_anchor(t['id'])}\"></a>",
        f"## {t['id']}: {t['title']}",
        "",
        f"Published numbers: {t['source']} (arXiv {t['arxiv']}).{read_from}",
        "",
        f"Metric: {metric} ({t['unit']}, {better}); tolerance ±{t['tolerance']:g}. "
        f"Ours: preset `{paper}` ({t['presets'][paper]['data']} data).",
    ]
    if t["plot"]:
        lines += ["", f"![{t['id']}: ours vs published]({t['plot']})"]
    lines += ["", f"| row | column | published | ours (`{paper}` preset) | Δ | verdict |", "|---|---|---|---|---|---|"]
    for c in t["cells"]:
        run = _comparable_run(c, t)
        lines.append(f"| {_esc(c['row'])} | {_esc(c['column'])} | {_published(c)} | {_ours_paper_column(c, run, base, t)} | "
                     f"{_fmt(run and run['delta'], 2)} | {_verdict(c['verdict'])} |")
    lines += _complexity_markdown(t)
    for preset, info in t["presets"].items():
        if info["proxy"]:
            lines += _proxy_grid(t, preset, info, base)
    lines += _trends_markdown(t)
    lines += _provenance_markdown(t)
    notes = [c for c in t["cells"] if c["published_note"]]
    if notes or t["notes"]:
        lines += ["", "Notes:"]
        lines += [f"- {n}" for n in t["notes"]]
        lines += [f"- ({c['row']}, {c['column']}): {c['published_note']}" for c in notes]
    return lines


def _comparable_run(cell: dict, t: dict) -> dict | None:
    """The paper preset's runs, or another non-proxy preset's (e.g. a per-row recipe) if only it ran."""
    runs = cell["runs"]
    for preset, run in runs.items():
        if not t["presets"][preset]["proxy"] and run["n"]:
            return run
    return runs.get(t["paper_preset"]) if cell["model"] and not cell["skip"] else None


def _complexity_markdown(t: dict) -> list[str]:
    cells = [c for c in t["cells"] if c["complexity"] and (c["complexity"]["flops"] or c["complexity"]["params"])]
    if not cells:
        return []
    lines = ["", "Complexity (ours counted at the paper's input size and class count):", "",
             "| row | column | input | FLOPs published | FLOPs ours | | params published (M) | params ours (M) | |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        cx = c["complexity"]
        parts = []
        for kind, digits in (("flops", 3), ("params", 3)):
            e = cx[kind]
            if e is None:
                parts += ["—", "—", ""]
            else:
                unit = "" if kind == "params" else f" {e['unit']}"
                pub = "*not transcribed*" if e["published"] is None else _num(e["published"]) + unit
                parts += [pub, f"{e['ours']:.{digits}g}{unit}", MARKS[e["verdict"]]]
        lines.append(f"| {_esc(c['row'])} | {_esc(c['column'])} | {cx['input_size']} px | " + " | ".join(parts) + " |")
    return lines


def _proxy_grid(t: dict, preset: str, info: dict, base: Path) -> list[str]:
    rows = list(dict.fromkeys(c["row"] for c in t["cells"]))
    cols = list(dict.fromkeys(c["column"] for c in t["cells"]))
    by_key = {(c["row"], c["column"]): c for c in t["cells"]}
    lines = [
        "",
        f"**Proxy preset `{preset}`** ({info['data']} data; not comparable with the paper"
        f"{': ' + info['description'] if info['description'] else ''}). "
        f"Ours, {METRIC_NAMES.get(t['metric'], t['metric'])} ({t['unit']}):",
        "",
        "| | " + " | ".join(_esc(c) for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for r in rows:
        texts = []
        for col in cols:
            cell = by_key.get((r, col))
            if cell is None:
                texts.append("")
            elif cell["model"] is None:
                texts.append("published only")
            elif cell["skip"] and not _is_derived(cell):
                texts.append("not built")
            else:
                texts.append(_ours(cell["runs"].get(preset), base))
        lines.append(f"| {_esc(r)} | " + " | ".join(texts) + " |")
    stuck = _at_chance(t, preset, info.get("num_classes"))
    if stuck:
        lines += ["", f"At chance ({100 / info['num_classes']:.0f}% top-1) after this preset's steps: "
                      f"{', '.join(stuck)}. The proxy recipe did not train these networks, so their numbers say "
                      "nothing about them (fewer classes, lower `data.noise` or more steps would)."]
    if _saturated(t, preset):
        lines += ["", f"Every `{preset}` cell is within {SATURATION_POINTS:g} point of a perfect score, so this proxy "
                      "does not separate the rows: it shows the pipeline trains, not which variant is better. "
                      "A harder proxy: `--set data.noise=1.5` (or more classes, fewer steps)."]
    return lines


SATURATION_POINTS = 1.0
CHANCE_POINTS = 3.0


def _at_chance(t: dict, preset: str, num_classes: int | None) -> list[str]:
    """Rows whose proxy accuracy (or error) is within CHANCE_POINTS of guessing."""
    if t["unit"] != "%" or not num_classes or t["metric"] not in ("top1_acc", "top1_err", "acc", "top1"):
        return []
    chance = 100.0 / num_classes
    out = []
    for c in t["cells"]:
        run = c["runs"].get(preset)
        if not run or not run["n"] or run.get("derived"):
            continue
        acc = run["mean"] if t["better"] == "higher" else 100.0 - run["mean"]
        if acc <= chance + CHANCE_POINTS:
            out.append(c["row"] if c["column"] in (t["metric"], "acc", "top1") else f"{c['row']} / {c['column']}")
    return out


def _saturated(t: dict, preset: str) -> bool:
    """All trained cells of a percentage metric within SATURATION_POINTS of 100% accuracy / 0% error."""
    if t["unit"] != "%":
        return False
    means = [c["runs"][preset]["mean"] for c in t["cells"]
             if preset in c["runs"] and c["runs"][preset]["n"] and not c["runs"][preset].get("derived")]
    if len(means) < 2:
        return False
    return all((100 - m if t["better"] == "higher" else m) <= SATURATION_POINTS for m in means)


def _trend_text(result: dict | None) -> str:
    if not result:
        return "—"
    detail = f" (fails: {', '.join(result['failures'])})" if result["failures"] else ""
    status = f"**{result['status']}**" if result["status"] in (V.HOLDS, V.DOES_NOT_HOLD) else result["status"]
    return _esc(status + detail)


def _trends_markdown(t: dict) -> list[str]:
    if not t["trends"]:
        return []
    presets = list(dict.fromkeys(p for tr in t["trends"] for p in tr["by_preset"]))
    head = [f"ours, `{p}`" + (" (proxy)" if t["presets"].get(p, {}).get("proxy") else "") for p in presets]
    lines = ["", "The paper's claims (ordering of the means; checked on the paper's own numbers as a sanity check):", "",
             "| claim | in the paper's numbers | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(presets)]
    for tr in t["trends"]:
        lines.append(f"| {_esc(tr['claim'])} | {_trend_text(tr['published'])} | "
                     + " | ".join(_trend_text(tr["by_preset"].get(p)) for p in presets) + " |")
    return lines


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def _provenance_markdown(t: dict) -> list[str]:
    runs = [r for c in t["cells"] for run in c["runs"].values() if not run.get("derived") for r in run["runs"]]
    if not runs:
        return []
    commits = sorted({r["git_commit"][:12] for r in runs})
    hardware = sorted({r["hardware"] for r in runs})
    presets = sorted({r["preset"] for r in runs})
    changed = [r for r in runs if r.get("source_changes")]
    unknown = [r for r in runs if r.get("source_changes") is None]
    code = ""
    if changed:
        files = sorted({f for r in changed for f in r["source_changes"]})
        shown = ", ".join(f"`{f}`" for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        code += f" {_runs(len(changed))} ran with source files changed from the commit ({shown})."
    if unknown:
        one = len(unknown) == 1
        code += (f" {_runs(len(unknown))} {'does' if one else 'do'} not say whether {'its' if one else 'their'} "
                 "source differed from the commit (recorded before source changes were told apart from generated "
                 "files, or outside a git checkout).")
    return ["", f"Provenance: {_runs(len(runs))}; presets {', '.join(f'`{p}`' for p in presets)}; "
            f"git {', '.join(f'`{c}`' for c in commits)}; hardware: {'; '.join(hardware)}.{code} "
            "The seed links (s0, s1, ...) open each run's folder."]
