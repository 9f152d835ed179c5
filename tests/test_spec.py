"""Specs, published records and cell identity, across every paper folder."""

from __future__ import annotations

import json

import pytest

from repro.errors import ConfigError, SpecError
from repro.spec import expand_cells, list_papers, load_table
from repro.spec.recipes import apply_overrides
from repro.spec.published import published_records

ALL_TABLES = [f"papers/{p.name}/{t}" for p in list_papers() for t in p.table_names()]


def test_every_paper_is_discovered():
    assert {p.name for p in list_papers()} == {"shufflenet", "effnet", "fasternet", "efficientnet", "ghostnet"}


@pytest.mark.parametrize("ref", ALL_TABLES)
def test_every_spec_loads_and_its_cells_point_at_published_entries(ref):
    table = load_table(ref)
    published = table.paper.published.tables[table.spec.table]
    for preset in table.paper.presets:
        resolved = table.spec.presets.get(preset, preset)
        detection_data = table.paper.presets[resolved].data.name in ("coco", "synthetic_coco")
        if detection_data != (table.spec.task == "detection"):
            with pytest.raises(SpecError, match="does not suit a"):
                expand_cells(table, preset)
            continue
        try:
            cells = expand_cells(table, preset)
        except SpecError as exc:  # a detection preset whose init_from source table lacks its kind
            assert "does not suit a" in str(exc) and preset not in table.spec.presets.values()
            continue
        assert len(cells) == len(table.spec.rows) * len(table.spec.columns)
        for cell in cells:
            assert cell.column in published.rows[cell.row].values, f"{ref}: ({cell.row}, {cell.column}) has no published entry"
            assert cell.published == published.rows[cell.row].values[cell.column]


def test_shufflenet_published_records_match_the_table2_spec(cli):
    out = cli("published", "papers/shufflenet/table2", "--json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["table"] for r in records} == {"table2"}
    by_cell = {(r["row"], r["column"]): r for r in records}
    for cell in expand_cells(load_table("papers/shufflenet/table2"), "paper"):
        rec = by_cell[(cell.row, cell.column)]
        assert rec["value"] == cell.published and rec["source"] == "arXiv 1707.01083v2, Table 2"
    assert by_cell[("1x", "g=3")]["value"] == 32.6 and by_cell[("0.25x", "g=8")]["value"] == 52.7
    assert set(records[0]) >= {"paper", "table", "row", "column", "value", "unit", "source"}


def test_published_for_a_whole_paper_covers_tables_1_to_7():
    paper = next(p for p in list_papers() if p.name == "shufflenet")
    tables = {r["table"] for r in published_records(paper)}
    assert tables == {f"table{i}" for i in range(1, 8)}


def test_a_run_shared_by_two_tables_has_one_id():
    t2 = {(c.row, c.column): c.id for c in expand_cells(load_table("papers/shufflenet/table2"), "proxy")}
    t3 = {(c.row, c.column): c.id for c in expand_cells(load_table("papers/shufflenet/table3"), "proxy")}
    assert t2[("1x", "g=3")] == t3[("1x (g=3)", "shuffle")]
    assert t2[("0.25x", "g=8")] == t3[("0.25x (g=8)", "shuffle")]
    assert t3[("1x (g=3)", "no shuffle")] not in t2.values()


def test_cell_identity_depends_on_seed_preset_and_overrides():
    table = load_table("papers/shufflenet/table2")
    one = expand_cells(table, "proxy", seeds=2)
    assert len({c.id for c in one}) == 30 and len({c.group_key for c in one}) == 15
    assert expand_cells(table, "proxy")[0].id == one[0].id  # stable across calls
    assert expand_cells(table, "test")[0].id != one[0].id
    assert expand_cells(table, "proxy", overrides={"train.lr": 0.123})[0].id != one[0].id


@pytest.mark.parametrize("ref,message", [
    ("papers/nopaper/table2", "unknown paper 'nopaper'"),
    ("papers/shufflenet/table9", "unknown table 'table9'"),
    ("shufflenet", "is not a table path"),
])
def test_unknown_table_paths(ref, message):
    with pytest.raises(SpecError, match=message):
        load_table(ref)


def test_unknown_preset_names_the_choices():
    with pytest.raises(SpecError, match="unknown preset 'fast'.*paper, proxy, test"):
        expand_cells(load_table("papers/shufflenet/table2"), "fast")


@pytest.mark.parametrize("overrides,message", [
    ({"train.batch_size": 0}, "greater than 0"),
    ({"train.lrr": 0.1}, "no field 'lrr'"),
    ({"lr": 0.1}, "expected train.<field>"),
])
def test_bad_overrides(overrides, message):
    preset = load_table("papers/shufflenet/table2").paper.presets["proxy"]
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset, overrides)


@pytest.mark.parametrize("columns, message", [
    ([{"id": "a"}, {"id": "d", "difference_of": ["a", "zz"]}], "difference_of names 'zz'"),
    ([{"id": "a"}, {"id": "b", "difference_of": ["a", "a"]}, {"id": "d", "difference_of": ["a", "b"]}],
     "difference_of names 'b', which is not a trained column"),
])
def test_difference_of_must_name_trained_columns(columns, message):
    from pydantic import ValidationError

    from repro.spec.schema import TableSpec

    with pytest.raises(ValidationError, match=message):
        TableSpec.model_validate({"table": "t", "title": "t", "metric": {"name": "m", "better": "lower"}, "rows": [{"id": "r"}],
                                  "columns": columns})


def test_status_and_dry_run_need_no_torch_once_the_signatures_are_cached(tmp_path):
    """Cell ids need the builders' defaults; cached per paper source, they spare status and dry runs
    the torch import (seconds), and give the same ids as the builders themselves."""
    import subprocess
    import sys

    from tests.conftest import REPO

    probe = ("import sys, json; from repro.cli import main; "
             "main(['run', 'papers/shufflenet/table2', '--preset', 'proxy', '--dry-run', '--json', '--store', sys.argv[1]]); "
             "print(json.dumps({'torch': 'torch' in sys.modules}))")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", probe, str(tmp_path / "s")], capture_output=True, text=True, cwd=REPO,
                           env=env, timeout=300) for _ in range(2)]
    cold, warm = ([json.loads(line) for line in r.stdout.splitlines()] for r in runs)
    assert cold[-1] == {"torch": True} and warm[-1] == {"torch": False}, runs[1].stderr
    assert [c.get("cell_id") for c in cold[:-1]] == [c.get("cell_id") for c in warm[:-1]]
    assert any(c.get("cell_id") for c in warm)
