"""The report a reviewer trusts: verdict rules, trend checks, rendering from hand-made stores, plots.

Stores are written by hand (result.json files for real cell ids from expand_cells), so nothing
trains here and the whole file runs in seconds.
"""

from __future__ import annotations

import json
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
    assert all(r["run_dir"].startswith(str(rendered.store.root)) and r["git_commit"] for r in run["runs"])
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

