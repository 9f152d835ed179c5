"""The report a reviewer trusts: verdict rules, trend checks, rendering from hand-made stores, plots.

Stores are written by hand (result.json files for real cell ids from expand_cells), so nothing
trains here and the whole file runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.report import verdicts as V
from repro.report.render import write_report
from repro.spec.cells import expand_cells
from repro.spec.load import load_table
from repro.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def put(store: Store, cell, value: float, metric: str) -> None:
    store.write_result(cell.id, {
        "cell_id": cell.id, "group_key": cell.group_key, "table": cell.table_id, "row": cell.row,
        "column": cell.column, "paper": cell.paper, "model": cell.model, "args": cell.args, "seed": cell.seed,
        "preset": cell.preset_name, "proxy": cell.preset.proxy, "metrics": {metric: value},
        "steps": 10, "git_commit": "0123456789abcdef", "hardware": {"host": "testhost", "cpu": "Test CPU", "gpus": []},
    })


def cells_by_key(table, preset, seeds=1):
    out = {}
    for c in expand_cells(table, preset, seeds=seeds):
        out.setdefault((c.row, c.column), []).append(c)
    return out


def claim(kind, **kw):
    return SimpleNamespace(claim="c", kind=kind, better=kw.get("better"), worse=kw.get("worse"),
                           column=kw.get("column"), rows=kw.get("rows", []))


# ------------------------------------------------------------------ pure rules
def test_cell_verdict_tolerance_and_direction():
    # lower is better (error): worse by exactly the tolerance still counts, beyond it does not
    assert V.cell_verdict(33.6, 32.6, "lower", 1.0, proxy=False) == V.REPRODUCED
    assert V.cell_verdict(33.7, 32.6, "lower", 1.0, proxy=False) == V.NOT_REPRODUCED
    assert V.cell_verdict(20.0, 32.6, "lower", 1.0, proxy=False) == V.REPRODUCED  # beating the paper
    # higher is better (accuracy): the same gap the other way
    assert V.cell_verdict(93.2, 93.7, "higher", 0.5, proxy=False) == V.REPRODUCED
    assert V.cell_verdict(93.1, 93.7, "higher", 0.5, proxy=False) == V.NOT_REPRODUCED
    assert V.cell_verdict(99.0, 93.7, "higher", 0.5, proxy=False) == V.REPRODUCED
    # proxy is never compared; a missing published number is not a missing result
    assert V.cell_verdict(10.0, 93.7, "higher", 0.5, proxy=True) == V.PROXY_ONLY
    assert V.cell_verdict(None, 93.7, "higher", 0.5, proxy=True) == V.NOT_RUN
    assert V.cell_verdict(None, None, "higher", 0.5, proxy=False) == V.NOT_TRANSCRIBED
    assert V.cell_verdict(90.0, None, "higher", 0.5, proxy=False) == V.NOT_TRANSCRIBED
    assert V.cell_verdict(None, 93.7, "higher", 0.5, proxy=False) == V.NOT_RUN


def test_difference_verdict_is_two_sided():
    assert V.difference_verdict(2.9, 1.9, 1.0, proxy=False) == V.REPRODUCED
    assert V.difference_verdict(0.9, 1.9, 1.0, proxy=False) == V.REPRODUCED
    assert V.difference_verdict(3.0, 1.9, 1.0, proxy=False) == V.NOT_REPRODUCED
    assert V.difference_verdict(0.8, 1.9, 1.0, proxy=False) == V.NOT_REPRODUCED
    assert V.difference_verdict(5.0, 1.9, 1.0, proxy=True) == V.PROXY_ONLY
    assert V.difference_verdict(None, 1.9, 1.0, proxy=False) == V.NOT_RUN


def test_summarize_mean_std_n():
    assert V.summarize([]) == {"n": 0, "mean": None, "std": None}
    assert V.summarize([2.0]) == {"n": 1, "mean": 2.0, "std": 0.0}
    s = V.summarize([1.0, 2.0, 3.0])
    assert (s["n"], s["mean"], s["std"]) == (3, 2.0, 1.0)  # sample std


def test_complexity_verdict_uses_printed_precision():
    assert V.printed_decimals(313) == 0 and V.printed_decimals(15.0) == 1 and V.printed_decimals(0.39) == 2
    assert V.complexity_verdict(313.4, 313) == V.MATCH       # rounds to the printed integer
    assert V.complexity_verdict(313.6, 313) == V.CLOSE       # off by one in the last digit, within 5 %
    assert V.complexity_verdict(143.0, 140) == V.CLOSE
    assert V.complexity_verdict(0.394, 0.39) == V.MATCH
    assert V.complexity_verdict(21.6, 40) == V.MISMATCH
    assert V.complexity_verdict(None, 40) is None and V.complexity_verdict(3.0, None) is None


def test_trend_checks():
    grid = {("a", "shuffle"): 30.0, ("a", "none"): 32.0, ("b", "shuffle"): 35.0, ("b", "none"): 34.0}
    r = V.trend_verdict(claim("column_better", better="shuffle", worse="none"), grid, ["a", "b"], ["none", "shuffle"], "lower")
    assert r["status"] == V.DOES_NOT_HOLD and r["failures"] == ["b"] and r["checked"] == 2
    # the same numbers read as accuracy: the claim holds only in row b
    r = V.trend_verdict(claim("column_better", better="shuffle", worse="none"), grid, ["a", "b"], ["none", "shuffle"], "higher")
    assert r["failures"] == ["a"]
    r = V.trend_verdict(claim("best_column", column="g=8", rows=["x"]), {("x", "g=1"): 57.1, ("x", "g=8"): 52.7},
                        ["x"], ["g=1", "g=8"], "lower")
    assert r["status"] == V.HOLDS
    # row_order: best first, strictly
    rows = {("s=2", "acc"): 93.7, ("s=3", "acc"): 93.4, ("s=4", "acc"): 93.0}
    assert V.trend_verdict(claim("row_order", rows=["s=2", "s=3", "s=4"]), rows, list("xyz"), ["acc"], "higher")["status"] == V.HOLDS
    broken = V.trend_verdict(claim("row_order", rows=["s=4", "s=2"]), rows, list("xyz"), ["acc"], "higher")
    assert broken["status"] == V.DOES_NOT_HOLD and broken["failures"] == ["s=4 vs s=2"]
    # a row we do not build makes the claim not checkable on our numbers, a missing run makes it not run
    only = {("ghost", "acc"): 73.9}
    assert V.trend_verdict(claim("row_order", rows=["ghost", "mnv3"]), only, [], ["acc"], "higher",
                           buildable={("ghost", "acc")})["status"] == V.NOT_CHECKABLE
    assert V.trend_verdict(claim("row_order", rows=["ghost", "ghost2"]), only, [], ["acc"], "higher",
                           buildable={("ghost", "acc"), ("ghost2", "acc")})["status"] == V.NOT_RUN


# ------------------------------------------------------------------ the rendered report
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """shufflenet/table3 with 3-seed, 1-seed and missing cells plus proxy runs; effnet/cifar10
    (published values not transcribed, one proxy run); shufflenet/table5 (not in suite / skipped)."""
    root = tmp_path_factory.mktemp("report")
    store = Store(root / "store")
    t3 = load_table("papers/shufflenet/table3")
    paper = cells_by_key(t3, "paper", seeds=3)
    for cell, v in zip(paper[("1x (g=3)", "shuffle")], (32.0, 33.0, 34.0)):  # mean 33.0 ± 1.0: within 1.0 of 32.6
        put(store, cell, v, "top1_err")
    put(store, paper[("1x (g=3)", "no shuffle")][0], 36.0, "top1_err")       # one seed; shuffle beats it
    put(store, paper[("1x (g=8)", "shuffle")][0], 40.0, "top1_err")          # 7.6 worse than 32.4
    put(store, paper[("1x (g=8)", "no shuffle")][0], 39.0, "top1_err")       # no shuffle wins here
    proxy = cells_by_key(t3, "proxy")
    for (row, col), cells in proxy.items():
        if col != "delta":
            put(store, cells[0], 80.0 if col == "shuffle" else 85.0, "top1_err")
    put(store, cells_by_key(load_table("papers/effnet/cifar10"), "proxy")[("effnet", "acc")][0], 42.0, "top1_acc")
    out = root / "site" / "REPORT.md"
    tables = ["shufflenet/table3", "effnet/cifar10", "shufflenet/table5"]
    report = write_report(store, out, tables=tables)
    return SimpleNamespace(store=store, out=out, report=report, json=json.loads((out.parent / "report.json").read_text()),
                           md=out.read_text(), tables={t["id"]: t for t in report["tables"]})


def _cell(t, row, col):
    return next(c for c in t["cells"] if c["row"] == row and c["column"] == col)


def test_multi_seed_partial_and_missing_cells(rendered):
    t = rendered.tables["shufflenet/table3"]
    c = _cell(t, "1x (g=3)", "shuffle")
    run = c["runs"]["paper"]
    assert (run["n"], run["mean"], run["std"], run["seeds"]) == (3, 33.0, 1.0, [0, 1, 2])
    assert run["delta"] == pytest.approx(0.4) and c["verdict"] == V.REPRODUCED
    # run folders are relative to the report, so neither file names the machine it was built on
    for r in run["runs"]:
        assert r["run_dir"] == f"../store/{r['cell_id']}" and r["git_commit"] == "0123456789abcdef"
        assert (rendered.out.parent / r["run_dir"]).resolve() == rendered.store.root / r["cell_id"]
    assert _cell(t, "1x (g=8)", "shuffle")["verdict"] == V.NOT_REPRODUCED
    # no paper-preset run but a proxy one: the paper preset says not run, the headline proxy only
    assert _cell(t, "0.5x (g=3)", "shuffle")["runs"]["paper"]["verdict"] == V.NOT_RUN
    assert _cell(t, "0.5x (g=3)", "shuffle")["verdict"] == V.PROXY_ONLY
    # the derived delta column: no-shuffle mean minus shuffle mean, per preset, nothing trained for it
    delta = _cell(t, "1x (g=3)", "delta")
    assert delta["runs"]["paper"]["derived"] and delta["runs"]["paper"]["mean"] == pytest.approx(3.0)  # 36 - 33
    assert delta["runs"]["paper"]["n"] == 1 and delta["runs"]["paper"]["std"] == pytest.approx(1.0)
    assert delta["verdict"] == V.NOT_REPRODUCED  # printed 1.9: 1.1 away, tolerance 1.0
    assert _cell(t, "1x (g=8)", "delta")["runs"]["paper"]["mean"] == pytest.approx(-1.0)
    assert _cell(t, "0.5x (g=3)", "delta")["runs"]["proxy"]["mean"] == pytest.approx(5.0)
    assert _cell(t, "0.5x (g=3)", "delta")["verdict"] == V.PROXY_ONLY
    assert _cell(t, "0.25x (g=8)", "delta")["runs"]["paper"]["mean"] is None
    assert "| 0.5x (g=3) | 85.00 (n=1)" in rendered.md and "| 5.00 (n=1), derived |" in rendered.md
    proxy = _cell(t, "0.5x (g=3)", "shuffle")["runs"]["proxy"]
    assert proxy["verdict"] == V.PROXY_ONLY and proxy["delta"] is None  # never compared with the paper


def test_trends_on_ours_and_on_the_paper(rendered):
    (trend,) = rendered.tables["shufflenet/table3"]["trends"]
    assert trend["published"]["status"] == V.HOLDS and trend["published"]["checked"] == 6
    ours = trend["by_preset"]["paper"]
    assert ours["status"] == V.DOES_NOT_HOLD and ours["failures"] == ["1x (g=8)"] and ours["checked"] == 2
    assert trend["by_preset"]["proxy"]["status"] == V.HOLDS
    # MobileNet rows are another paper's: the claims hold in the paper, cannot be checked here
    for tr in rendered.tables["shufflenet/table5"]["trends"]:
        assert tr["published"]["status"] == V.HOLDS and tr["by_preset"]["paper"]["status"] == V.NOT_CHECKABLE


def test_not_transcribed_not_in_suite_not_reproducible(rendered):
    effnet = rendered.tables["effnet/cifar10"]
    assert _cell(effnet, "baseline", "acc")["verdict"] == V.NOT_TRANSCRIBED
    assert _cell(effnet, "effnet", "acc")["verdict"] == V.PROXY_ONLY
    t5 = rendered.tables["shufflenet/table5"]
    assert _cell(t5, "mobilenet_1.0", "err")["verdict"] == V.NOT_IN_SUITE
    assert _cell(t5, "shufflenet_2x_se_g3", "err")["verdict"].startswith(V.NOT_REPRODUCIBLE)
    # the markdown says "not transcribed" in the published column, not a dash that reads as missing
    assert "| baseline | acc | *not transcribed* | not run | — | published value not transcribed |" in rendered.md
    # a quoted row of another paper and a cell the paper does not specify read as what they are
    assert "| mobilenet_1.0 | err | 29.4 | — | — | published only (another paper's model, not built here) |" in rendered.md
    assert "| shufflenet_2x_se_g3 | err | 24.7 | not built | — | not reproducible (the paper does not say" in rendered.md
    assert "not in this suite" not in rendered.md and "other paper |" not in rendered.md and "skipped" not in rendered.md


def test_a_cell_with_only_proxy_runs_never_reads_not_run(rendered):
    md = rendered.md
    assert "| 0.5x (g=3) | shuffle | 43.2 | proxy only (`proxy` below) | — | proxy only |" in md
    assert "| effnet | acc | *not transcribed* | proxy only (`proxy` below) | — | proxy only |" in md
    # derived cells say what they are derived from, whether or not the columns they come from ran
    assert "| 0.5x (g=3) | delta | 2.5 | proxy only (`proxy` below), derived: no shuffle − shuffle | — | proxy only |" in md
    assert "| 1x (g=3) | delta | 1.9 | 3.00 (n=1), derived | 1.10 | **not reproduced** |" in md
    for line in md.splitlines():
        if line.endswith("| proxy only |"):  # the verdict: the ours column must not contradict it
            assert "| not run" not in line, line


def test_first_screen_is_the_verdict_count_then_the_explanation(rendered):
    md = rendered.md
    lines = md.splitlines()
    assert lines[0] == "# REPORT: published numbers beside ours"
    # what the reader can trust, before anything else: the counts over every table in the report
    counts = {}
    for t in rendered.tables.values():
        for c in t["cells"]:
            kind = V.NOT_REPRODUCIBLE if c["verdict"].startswith(V.NOT_REPRODUCIBLE) else c["verdict"]
            counts[kind] = counts.get(kind, 0) + 1
    total = sum(counts.values())
    assert lines[2].startswith(f"Of {total} cells in these tables, **{counts[V.REPRODUCED]} reproduced** and "
                               f"**{counts[V.NOT_REPRODUCED]} not reproduced** on the paper's data and recipe")
    assert f" **Proxy only**: {counts[V.PROXY_ONLY]} (synthetic data: " in lines[2]
    assert f" Not run yet: {counts[V.NOT_RUN]} (built here, no finished run)." in lines[2]
    assert f" Published only: {counts[V.NOT_IN_SUITE]} (other papers' models, quoted for comparison)." in lines[2]
    assert lines[4] == "## Summary"
    assert md.index("## Summary") < md.index("How to read it") < md.index("## shufflenet/table3")
    header = next(line for line in lines if line.startswith("| table | cells |"))
    assert header.startswith("| table | cells | reproduced | not reproduced | proxy only | not run | "
                             "published only (other paper) | not reproducible | not transcribed |")
    row = next(line for line in lines if line.startswith("| [shufflenet/table5]"))
    t5 = [c["verdict"] for c in rendered.tables["shufflenet/table5"]["cells"]]
    assert t5.count(V.NOT_IN_SUITE) == 4 and t5.count(V.PROXY_ONLY) == 0  # the MobileNet rows
    assert row.startswith(f"| [shufflenet/table5](#shufflenettable5) | {len(t5)} | {t5.count(V.REPRODUCED)} | "
                          f"{t5.count(V.NOT_REPRODUCED)} | 0 | {t5.count(V.NOT_RUN)} | 4 | 2 | 0 |")


def test_a_report_with_only_proxy_runs_says_nothing_is_reproduced(tmp_path):
    store = Store(tmp_path / "store")
    put(store, cells_by_key(load_table("papers/effnet/cifar10"), "proxy")[("effnet", "acc")][0], 42.0, "top1_acc")
    write_report(store, tmp_path / "REPORT.md", tables=["effnet/cifar10"], plots=False)
    first = (tmp_path / "REPORT.md").read_text().splitlines()[2]
    assert first.startswith("Of 4 cells in these tables, **none is compared with the paper yet**: no cell has a "
                            "finished run of the paper's data and recipe, so nothing here is a reproduction. "
                            "**Proxy only**: 1 (synthetic data")
    assert "reproduced**" not in first


def test_no_absolute_path_of_the_machine_that_built_it(rendered):
    root = str(rendered.out.parent.parent)  # the pytest folder holding the store and the report
    assert root not in rendered.md and "/tmp/" not in rendered.md
    assert root not in (rendered.out.parent / "report.json").read_text()
    assert rendered.json["store"] == "../store"
    assert "from the results store `../store`" in rendered.md


def test_complexity_beside_published(rendered):
    cx = _cell(rendered.tables["shufflenet/table5"], "shufflenet_1x_g8", "err")["complexity"]
    assert cx["flops"]["published"] == 140 and cx["flops"]["unit"] == "MFLOPs"
    assert cx["flops"]["verdict"] in (V.MATCH, V.CLOSE) and cx["input_size"] == 224
    assert "Complexity (ours counted at the paper's input size" in rendered.md


def test_markdown_links_and_sources(rendered):
    md = rendered.md
    assert "33.00 ± 1.00 (n=3) [s0](../store/" in md  # every seed links to its run folder
    assert "arXiv 1707.01083v2, Table 3" in md and "Read from: GitHub markdown transcription" in md
    assert "**Proxy preset `proxy`**" in md and "not comparable with the paper" in md
    assert "Provenance:" in md and "`0123456789ab`" in md
    # shufflenet/table3: 6 paper runs (3 + 1 + 1 + 1 seeds) and 12 proxy runs; the derived delta cells
    # list their source cells' runs again, which must not count them twice
    assert "Provenance: 18 runs; presets `paper`, `proxy`; git `0123456789ab`; hardware: Test CPU @ testhost. The" in md


def test_report_json_is_complete_and_serializable(rendered):
    j = rendered.json
    assert j["schema_version"] == 1 and set(j["cell_verdicts"]) >= {V.REPRODUCED, V.NOT_TRANSCRIBED}
    for t in j["tables"]:
        for key in ("id", "source", "read_from", "metric", "better", "tolerance", "paper_preset", "cells", "trends", "plot"):
            assert key in t
        for c in t["cells"]:
            assert c["verdict"] and "published_source" in c


def test_plots_are_valid_pngs(rendered):
    base = rendered.out.parent
    plots = [t["plot"] for t in rendered.report["tables"]] + [rendered.report["summary_plot"]]
    assert all(plots)
    for rel in plots:
        data = (base / rel).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert f"]({rel})" in rendered.md


def test_saturated_proxy_is_called_out():
    from repro.report.markdown import _saturated

    def table(means, better="higher", unit="%"):
        return {"unit": unit, "better": better,
                "cells": [{"runs": {"proxy": {"n": 1, "mean": m}}} for m in means]}

    assert _saturated(table([99.8, 100.0, 99.2]), "proxy")
    assert not _saturated(table([99.8, 97.0]), "proxy")          # one cell still has room: rows can differ
    assert _saturated(table([0.2, 0.9], better="lower"), "proxy")  # error metric at the floor
    assert not _saturated(table([99.9, 99.9], unit="AP"), "proxy")  # not a percentage with a ceiling
    assert not _saturated(table([99.9]), "proxy")                  # one cell ranks nothing


def test_proxy_cells_at_chance_are_named():
    from repro.report.markdown import _at_chance

    def table(means, better="higher", metric="top1_acc"):
        return {"unit": "%", "better": better, "metric": metric,
                "cells": [{"row": f"r{i}", "column": metric, "runs": {"proxy": {"n": 1, "mean": m}}}
                          for i, m in enumerate(means)]}

    assert _at_chance(table([10.0, 12.9, 13.1, 80.0]), "proxy", 10) == ["r0", "r1"]
    assert _at_chance(table([90.0, 50.0], better="lower", metric="top1_err"), "proxy", 10) == ["r0"]
    assert _at_chance(table([10.0]), "proxy", None) == []  # class count unknown: no claim


def test_an_aliased_preset_is_reported_once_under_its_own_name(tmp_path):
    """efficientnet/table2 maps `proxy` to `proxy_32px`: its runs are one block, described as proxy_32px."""
    store = Store(tmp_path / "store")
    table = load_table("papers/efficientnet/table2")
    put(store, cells_by_key(table, "proxy")[("b0", "top1")][0], 58.4, "top1_acc")
    report = write_report(store, tmp_path / "site" / "REPORT.md", tables=["efficientnet/table2"])
    (t,) = report["tables"]
    assert set(t["presets"]) == {"paper", "proxy_32px"}
    assert _cell(t, "b0", "top1")["runs"]["proxy_32px"]["mean"] == 58.4
    md = (tmp_path / "site" / "REPORT.md").read_text()
    assert md.count("58.40 (n=1)") == 1 and "Proxy preset `proxy`**" not in md


def test_a_preset_whose_runs_all_show_under_another_is_not_repeated(tmp_path):
    """On efficientnet/table3, `proxy_32px` gives the r=1 rows the same cells as `proxy`."""
    store = Store(tmp_path / "store")
    table = load_table("papers/efficientnet/table3")
    proxy = cells_by_key(table, "proxy")
    put(store, proxy[("mnv1", "top1")][0], 32.2, "top1_acc")
    put(store, proxy[("mnv1_r2", "top1")][0], 73.6, "top1_acc")
    assert cells_by_key(table, "proxy_32px")[("mnv1", "top1")][0].id == proxy[("mnv1", "top1")][0].id
    (t,) = write_report(store, tmp_path / "site" / "REPORT.md", tables=["efficientnet/table3"])["tables"]
    assert set(t["presets"]) == {"paper", "proxy"}
    # A preset with a run of its own still gets its block.
    put(store, cells_by_key(table, "test")[("mnv1", "top1")][0], 12.0, "top1_acc")
    (t,) = write_report(store, tmp_path / "site2" / "REPORT.md", tables=["efficientnet/table3"])["tables"]
    assert set(t["presets"]) == {"paper", "proxy", "test"}


# ------------------------------------------------------------------ provenance: the commit and the source apart
def _git(repo, *args):
    import subprocess

    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)


@pytest.fixture
def tmp_checkout(tmp_path, monkeypatch):
    """A git repository shaped like this one, with provenance looking at it instead of the real tree."""
    from repro.train import provenance

    repo = tmp_path / "clone"
    files = {"repro/cli.py": "x = 1\n", "papers/p/models.py": "m = 1\n", "papers/p/t.yaml": "a: 1\n",
             "pyproject.toml": "[project]\n", "REPORT.md": "old\n", "report.json": "{}\n", "report/t.png": "png",
             "results/runs/abc/result.json": "{}\n", "docs/notes.md": "n\n"}
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    monkeypatch.setattr(provenance, "REPO", repo)
    provenance.git_commit.cache_clear()
    provenance.source_changes.cache_clear()
    yield repo
    provenance.git_commit.cache_clear()
    provenance.source_changes.cache_clear()


def test_generated_outputs_do_not_count_as_source_changes(tmp_checkout):
    from repro.train import provenance

    repo = tmp_checkout
    # what `repro report`, `repro run` and a README edit change: none of it decides a run's number
    (repo / "REPORT.md").write_text("rebuilt\n")
    (repo / "report.json").write_text('{"x": 1}\n')
    (repo / "report" / "t.png").write_text("new png")
    (repo / "results/runs/abc/result.json").write_text('{"y": 2}\n')
    (repo / "results/runs/new").mkdir()
    (repo / "results/runs/new/result.json").write_text("{}\n")
    (repo / "runs").mkdir()
    (repo / "runs/REPORT.md").write_text("user's\n")
    (repo / "docs/notes.md").write_text("edited\n")
    commit = provenance.git_commit()
    assert len(commit) == 40 and all(ch in "0123456789abcdef" for ch in commit)  # a plain sha, no "-dirty"
    assert provenance.source_changes() == {"source_changes": [], "source_changes_total": 0}


def test_source_changes_name_code_specs_and_dependencies(tmp_checkout):
    from repro.train import provenance

    repo = tmp_checkout
    (repo / "repro/cli.py").write_text("x = 2\n")                # edited
    (repo / "papers/p/t.yaml").write_text("a: 2\n")               # a spec
    (repo / "papers/p/new.py").write_text("")                     # new, not yet added: still runs
    (repo / "pyproject.toml").write_text("[project]\nx=1\n")
    _git(repo, "mv", "papers/p/models.py", "papers/p/nets.py")    # a rename names both paths
    (repo / "REPORT.md").write_text("rebuilt\n")                  # and generated output stays out
    assert provenance.source_changes() == {
        "source_changes": ["papers/p/models.py", "papers/p/nets.py", "papers/p/new.py", "papers/p/t.yaml",
                           "pyproject.toml", "repro/cli.py"],
        "source_changes_total": 6}
    assert provenance.git_commit().isalnum()


def test_source_changes_are_bounded(tmp_checkout):
    from repro.train import provenance

    for i in range(25):
        (tmp_checkout / f"repro/m{i:02d}.py").write_text("")
    found = provenance.source_changes()
    assert found["source_changes_total"] == 25
    assert found["source_changes"] == [f"repro/m{i:02d}.py" for i in range(provenance.MAX_LISTED_CHANGES)]


def test_outside_a_checkout_nothing_is_claimed(tmp_path, monkeypatch):
    from repro.train import provenance

    monkeypatch.setattr(provenance, "REPO", tmp_path)  # not a git repository
    provenance.git_commit.cache_clear()
    provenance.source_changes.cache_clear()
    try:
        assert provenance.git_commit() == "unknown"
        assert provenance.source_changes() == {"source_changes": None, "source_changes_total": None}
    finally:
        provenance.git_commit.cache_clear()
        provenance.source_changes.cache_clear()


def test_report_reads_new_and_old_provenance_records():
    from repro.report.build import code_version

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert code_version({"git_commit": sha, "source_changes": ["repro/cli.py"], "source_changes_total": 1}) == \
        (sha, ["repro/cli.py"], 1)
    assert code_version({"git_commit": sha, "source_changes": [], "source_changes_total": 0}) == (sha, [], 0)
    # before source changes were recorded: "-dirty" meant any tracked file (REPORT.md too), so unknown
    assert code_version({"git_commit": sha + "-dirty"}) == (sha, None, None)
    assert code_version({"git_commit": sha}) == (sha, [], 0)
    assert code_version({}) == ("unknown", None, None)


def test_provenance_line_says_which_runs_had_changed_source(tmp_path):
    store = Store(tmp_path / "store")
    table = load_table("papers/effnet/cifar10")
    proxy = cells_by_key(table, "proxy")
    sha = "0123456789abcdef0123456789abcdef01234567"
    base = {"hardware": {"host": "h", "cpu": "C", "gpus": []}, "steps": 1}
    for (row, _), records in zip(sorted(proxy), [
            {"git_commit": sha, "source_changes": ["repro/cli.py"], "source_changes_total": 1},
            {"git_commit": sha + "-dirty"},
            {"git_commit": sha, "source_changes": [], "source_changes_total": 0}]):
        cell = proxy[(row, "acc")][0]
        store.write_result(cell.id, {
            "cell_id": cell.id, "group_key": cell.group_key, "table": cell.table_id, "row": cell.row,
            "column": cell.column, "paper": cell.paper, "model": cell.model, "args": cell.args, "seed": 0,
            "preset": cell.preset_name, "proxy": True, "metrics": {"top1_acc": 50.0}, **base, **records})
    report = write_report(store, tmp_path / "REPORT.md", tables=["effnet/cifar10"], plots=False)
    runs = [r for c in report["tables"][0]["cells"] for run in c["runs"].values() for r in run["runs"]]
    assert {r["git_commit"] for r in runs} == {sha}  # "-dirty" is no part of a commit
    md = (tmp_path / "REPORT.md").read_text()
    assert "Provenance: 3 runs; presets `proxy`; git `0123456789ab`; hardware: C @ h. 1 run ran with source files " \
           "changed from the commit (`repro/cli.py`). 1 run does not say whether its source differed" in md


# ------------------------------------------------------------------ where the report goes
REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["REPORT.md", "report.json", "report"]


def _shipped_state() -> dict:
    """Bytes and mtimes of the shipped report at the repository root, to show nothing touched it."""
    state = {}
    for name in SHIPPED:
        path = REPO_ROOT / name
        for p in ([path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []):
            state[str(p)] = (p.stat().st_mtime_ns, p.read_bytes())
    return state


def test_report_command_writes_beside_the_store_by_default(tmp_path, monkeypatch, capsys):
    from repro.cli import main

    store = Store(tmp_path / "store")
    cell = cells_by_key(load_table("papers/effnet/cifar10"), "proxy")[("effnet", "acc")][0]
    put(store, cell, 42.0, "top1_acc")
    before = _shipped_state()
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--store", "store", "--tables", "effnet/cifar10"]) == 0
    assert capsys.readouterr().out == "report: store/REPORT.md (1 table; report.json and plots beside it)\n"
    md = (tmp_path / "store" / "REPORT.md").read_text()
    assert (tmp_path / "store" / "report.json").is_file()
    assert (tmp_path / "store" / "report" / "effnet__cifar10.png").read_bytes().startswith(PNG_MAGIC)
    # links are relative to the report: the plot beside it, the seed to its run folder in the same store
    assert "](report/effnet__cifar10.png)" in md and f"42.00 (n=1) [s0]({cell.id})" in md
    assert "from the runs in this folder" in md and str(tmp_path) not in md
    assert [r["cell_id"] for r in store.results()] == [cell.id]  # the report's files are not taken for runs
    assert _shipped_state() == before
    # --out still puts it anywhere, with its json and plots beside it
    assert main(["report", "--store", "store", "--tables", "effnet/cifar10", "--out", "site/R.md"]) == 0
    assert capsys.readouterr().out == "report: site/R.md (1 table; report.json and plots beside it)\n"
    assert f"[s0](../store/{cell.id})" in (tmp_path / "site" / "R.md").read_text()
    assert (tmp_path / "site" / "report.json").is_file() and (tmp_path / "site" / "report").is_dir()


def test_run_writes_the_users_report_beside_their_store(tmp_path, monkeypatch, capsys):
    """`repro run` into a store of the user's: the report lands beside it, the shipped REPORT.md is
    untouched, nothing else appears in the working directory, and the run says where it wrote."""
    from repro.cli import main

    before = _shipped_state()
    monkeypatch.chdir(tmp_path)
    # No --set: a changed recipe is a cell of its own, which the report (built from the presets) does not show.
    code = main(["run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=1", "--store", "mystore",
                 "--wandb", "off", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    (result,) = Store(tmp_path / "mystore").results()
    assert result["preset"] == "test" and len(result["git_commit"]) == 40 and "-dirty" not in result["git_commit"]
    assert isinstance(result["source_changes"], list) and result["source_changes_total"] >= len(result["source_changes"])
    n_tables = len(json.loads((tmp_path / "mystore" / "report.json").read_text())["tables"])
    assert out.splitlines()[-1] == f"report: mystore/REPORT.md ({n_tables} tables; report.json and plots beside it)"
    md = (tmp_path / "mystore" / "REPORT.md").read_text()
    assert f"[s0]({result['cell_id']})" in md and str(tmp_path) not in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mystore"]  # a clone's working tree stays clean
    assert _shipped_state() == before


def test_a_users_default_store_and_its_report_are_git_ignored():
    """Quickstart 1 runs with the default store ./runs: what it writes there must not show in git status."""
    import subprocess

    paths = ["runs/REPORT.md", "runs/report.json", "runs/report/shufflenet__table2.png", "runs/0123456789abcdef/result.json"]
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", *paths], capture_output=True, text=True)
    assert out.stdout.split() == paths
