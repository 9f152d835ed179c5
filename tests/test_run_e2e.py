"""The spine end to end through the CLI: run a table, re-run it, kill a run and resume it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def results(store):
    return {p.parent.name: json.loads(p.read_text()) for p in store.glob("*/result.json")}


def test_table2_test_preset_end_to_end_then_rerun_trains_nothing(cli, tmp_path):
    store, report = tmp_path / "store", tmp_path / "out" / "REPORT.md"
    out = cli("run", "papers/shufflenet/table2", "--preset", "test", "--store", str(store), "--report", str(report), "--no-progress")
    assert out.returncode == 0, out.stderr
    found = results(store)
    assert len(found) == 15
    for r in found.values():
        assert r["preset"] == "test" and r["proxy"] is True and r["data"]["name"] == "synthetic"
        assert r["steps"] == 6 and 0.0 <= r["metrics"]["top1_err"] <= 100.0
        assert r["git_commit"] and r["hardware"]["torch"] == torch.__version__
        assert r["complexity"]["input_size"] == 224 and r["complexity"]["mflops"] > 10
    # The printed table puts the paper's numbers beside ours.
    assert "33.6" in out.stdout and "test (proxy: not comparable)" in out.stdout
    text = report.read_text()
    assert "## shufflenet/table2" in text and "Proxy preset `test`" in text
    assert "reproduced" not in text.split("## shufflenet/table2")[1].split("Proxy preset")[0].replace("not reproduced", "")
    assert (report.parent / "report.json").exists()

    mtimes = {p: p.stat().st_mtime_ns for p in store.glob("*/result.json")}
    again = cli("run", "papers/shufflenet/table2", "--preset", "test", "--store", str(store), "--report", str(report), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "0 to run, 15 done" in again.stdout
    assert mtimes == {p: p.stat().st_mtime_ns for p in store.glob("*/result.json")}


def test_killed_run_resumes_from_its_checkpoint(cli, tmp_path):
    store = tmp_path / "store"
    args = ["run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=8", "--set", "train.max_steps=60",
            "--set", "train.checkpoint_every_steps=4", "--store", str(store), "--no-report", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    ckpts = []
    while time.time() < deadline and not ckpts:
        ckpts = list(store.glob("*/checkpoints/last.ckpt"))
        time.sleep(0.2)
    assert ckpts, "no checkpoint appeared"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = ckpts[0].parent.parent
    if (run_dir / "result.json").exists():
        pytest.skip("the run finished before it could be killed")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "running"
    saved = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert saved["global_step"] >= 4

    out = cli(*args)
    assert out.returncode == 0, out.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == 60
    assert result["resumed_from_step"] >= 4 and result["resumed_from_step"] % 4 == 0
    assert not list(run_dir.glob("checkpoints/.*.tmp"))


def test_fast_path_trains_channels_last_and_records_it(tmp_path):
    """`repro run --fast` on CPU: same cell, same data, channels_last model and batches; fp32, so
    the metrics match the default path up to float rounding, and the result says which path ran."""
    from repro.spec.cells import expand_cells
    from repro.spec.load import load_table
    from repro.store import Store
    from repro.train.run import RunOptions, run_cell

    table = load_table("papers/shufflenet/table2")
    (cell,) = [c for c in expand_cells(table, "test") if (c.row, c.column) == ("0.25x", "g=3")]
    results = {}
    for fast in (False, True):
        store = Store(tmp_path / ("fast" if fast else "default"))
        results[fast] = run_cell(table, cell, RunOptions(store=store, wandb_mode="off", fast=fast))
    assert "train_path" not in results[False]
    assert results[True]["train_path"] == {"fast": True, "memory_format": "channels_last", "compile": False,
                                           "precision": "32-true"}
    # Different conv kernels round differently and SGD amplifies it over the steps: close, not equal.
    assert results[True]["metrics"]["loss"] == pytest.approx(results[False]["metrics"]["loss"], rel=2e-2)
    # The faithfulness itself: one forward of the same weights agrees to float rounding.
    import copy

    import torch

    from repro.spec.cells import build_model

    model = build_model(table, cell).eval()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), fast(x.contiguous(memory_format=torch.channels_last)), atol=1e-5, rtol=1e-4)
