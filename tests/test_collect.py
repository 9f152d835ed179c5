"""`repro collect` / `repro sync`, tested at the W&B API boundary.

W&B's server cannot run here, so the runs are recorded responses: fake objects shaped like
wandb.apis.public.Run (.id, .config, .summary, .state, .group), with configs made the way run_cell
logs them (the cell's resolved_config, scrubbed by the W&B mirror) and summaries holding the
`final/<metric>` keys run_cell writes. What is tested is our mapping from those runs to the store.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from repro.spec.cells import expand_cells
from repro.spec.load import load_table
from repro.store import Store
from repro.track.collect import collect_runs, offline_runs, result_from_run, sync
from repro.track.wandb_mirror import scrub


def fake_run(cell, run_id=None, state="finished", err=33.0, steps=300, wrap=False):
    config = scrub(cell.resolved_config())  # exactly what the mirror sends (group_key is scrubbed away)
    if wrap:  # some API versions return {"value": ...} per key
        config = {k: {"value": v, "desc": None} for k, v in config.items()}
    summary = {"final/top1_err": err, "final/top1_acc": 100 - err, "val/top1_err": err + 5, "final_steps": steps,
               "final_git_commit": "abc", "final_hardware": {"host": "far-away", "gpus": ["H200"]}}
    return SimpleNamespace(id=run_id or cell.id, config=config, summary=summary, state=state,
                           group=cell.table_id, path=["me", "repro", run_id or cell.id])


def cells():
    return expand_cells(load_table("papers/shufflenet/table2"), "proxy", seeds=2)


def test_runs_map_to_cells_without_duplicates(tmp_path):
    store = Store(tmp_path / "store")
    c = cells()
    runs = [fake_run(c[0]), fake_run(c[1], wrap=True),
            fake_run(c[0], run_id="zzz-second-copy", err=99.0, steps=100),  # same cell logged twice
            fake_run(c[2], state="running"), fake_run(c[3], state="crashed")]
    done = collect_runs(runs, store)
    assert sorted(done.written) == sorted([c[0].id, c[1].id])
    assert done.duplicates == ["zzz-second-copy"] and len(done.skipped) == 2
    r = store.result(c[0].id)
    # the run with more steps wins; group_key recomputed so the report finds the seeds of one cell
    assert r["metrics"]["top1_err"] == 33.0 and r["group_key"] == c[0].group_key and r["seed"] == c[0].seed
    assert r["hardware"]["host"] == "far-away" and r["steps"] == 300
    assert store.result(c[1].id)["group_key"] == c[1].group_key


def test_collect_skips_cells_already_done(tmp_path):
    store = Store(tmp_path / "store")
    c = cells()
    store.write_result(c[0].id, {"cell_id": c[0].id, "metrics": {"top1_err": 1.0}})
    done = collect_runs([fake_run(c[0]), fake_run(c[1])], store)
    assert done.already_done == [c[0].id] and done.written == [c[1].id]
    assert store.result(c[0].id)["metrics"]["top1_err"] == 1.0  # never overwritten
    again = collect_runs([fake_run(c[0]), fake_run(c[1])], store)
    assert again.written == [] and sorted(again.already_done) == sorted([c[0].id, c[1].id])


def test_edited_or_foreign_configs_are_refused():
    c = cells()[0]
    edited = fake_run(c)
    edited.config["args"] = {**edited.config["args"], "groups": 99}
    assert result_from_run(edited)[0] is None and "hash" in result_from_run(edited)[1]
    foreign = SimpleNamespace(id="x", config={"lr": 0.1}, summary={"acc": 1}, state="finished", group=None)
    assert result_from_run(foreign)[0] is None
    no_metrics = fake_run(c)
    no_metrics.summary = {"_runtime": 3}
    assert result_from_run(no_metrics)[0] is None
    old_style = fake_run(c)
    old_style.summary = {"val/top1_err": 40.0}  # runs from before final/ summaries: last logged val
    assert result_from_run(old_style)[0]["metrics"] == {"top1_err": 40.0}


def test_sync_finds_offline_runs_and_calls_wandb_sync(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path / "store")
    pending = store.root / "abc" / "wandb" / "offline-run-20240101_000000-abc"
    synced = store.root / "def" / "wandb" / "offline-run-20240101_000000-def"
    for d in (pending, synced):
        d.mkdir(parents=True)
    (synced / "run-def.wandb.synced").write_text("")
    assert offline_runs(store) == [pending]
    assert sync(SimpleNamespace(store=str(store.root), dry_run=True)) == 0
    assert str(pending) in capsys.readouterr().out
    calls = []
    monkeypatch.setattr("repro.track.collect.subprocess.run",
                        lambda cmd, check: calls.append(cmd) or SimpleNamespace(returncode=0))
    assert sync(SimpleNamespace(store=str(store.root), dry_run=False)) == 0
    (cmd,) = calls
    assert isinstance(cmd, list) and Path(cmd[0]).name == "wandb" and cmd[1:] == ["sync", str(pending)]


def test_collected_results_keep_the_source_changes_a_run_logged():
    c = cells()
    run = fake_run(c[0])
    run.summary["final_source_changes"] = {"source_changes": ["repro/cli.py"], "source_changes_total": 1,
                                           "cell_id": "not-a-field-to-take"}
    result, why = result_from_run(run)
    assert why == "" and result["git_commit"] == "abc" and result["cell_id"] == c[0].id
    assert result["source_changes"] == ["repro/cli.py"] and result["source_changes_total"] == 1
    # a run logged before source changes were recorded: nothing claimed either way
    result, _ = result_from_run(fake_run(c[0]))
    assert "source_changes" not in result and "source_changes_total" not in result
