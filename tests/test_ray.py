"""`--launcher ray` and `repro sweep` on a real local Ray cluster (2 CPUs, private temp dir).

Each command starts its own private cluster (`ray.init(address="local", _temp_dir=<store>/.ray)`)
and stops it when done, exactly as a user's `repro run --launcher ray` does without --ray-address.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TABLE = "papers/shufflenet/table2"


@pytest.fixture
def short_store():
    # Ray's unix sockets live under its temp dir (<store>/.ray): keep the path short.
    with tempfile.TemporaryDirectory(prefix="rr-") as d:
        yield Path(d) / "s"


def results(store: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in store.glob("*/result.json")}


def test_ray_launcher_runs_cells_as_tasks_and_the_report_sees_them(cli, short_store, tmp_path):
    report = tmp_path / "REPORT.md"
    out = cli("run", TABLE, "--preset", "test", "--only", "0.25x|g=1", "--only", "0.25x|g=8", "--launcher", "ray",
              "--store", str(short_store), "--report", str(report), "--no-progress", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = results(short_store)
    assert len(found) == 2
    assert {(r["row"], r["column"]) for r in found.values()} == {("0.25x", "g=1"), ("0.25x", "g=8")}
    assert all(r["steps"] == 6 for r in found.values())
    states = [json.loads((short_store / cid / "state.json").read_text()) for cid in found]
    assert all(s["status"] == "done" and s["launcher"] == "ray" for s in states)
    assert "## shufflenet/table2" in report.read_text()
    assert "0.25x |" in out.stdout  # the printed table


def test_sweep_trials_land_in_the_store_as_ordinary_runs(cli, short_store):
    out = cli("sweep", "sweeps/test_tiny.yaml", "--store", str(short_store), "--cpus", "2", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "best: top1_err" in out.stdout
    configs = [json.loads(p.read_text()) for p in short_store.glob("*/config.json")]
    lrs = sorted(c["train"]["lr"] for c in configs)
    assert len(configs) == 3 and len(set(lrs)) == 3, lrs  # one run (cell id) per sampled lr
    assert {(c["row"], c["column"], c["preset"]) for c in configs} == {("0.25x", "g=8", "test")}
    # Trials reported during training (ASHA's input), not only at the end.
    reports = [len(p.read_text().splitlines()) for p in short_store.glob(".tune/test_tiny/*/result.json")]
    assert len(reports) == 3 and max(reports) >= 2, reports
    # ASHA may stop a trial early; every trial that finished has an ordinary result.
    finished = results(short_store)
    assert finished and all(r["steps"] == 6 and r["column"] == "g=8" for r in finished.values())


def test_sweep_spec_errors_are_one_line(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("table: papers/shufflenet/table2\ncell: '0.25x|g=8'\nspace: {train.lr: {loguniform: [1, 0.1]}}\n")
    out = cli("sweep", str(bad), "--store", str(tmp_path / "s"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "space.train.lr" in out.stderr and "low < high" in out.stderr
    bad.write_text("table: papers/shufflenet/table2\ncell: '0.25x|g=8'\nspace: {train.lrr: {choice: [1]}}\n")
    out = cli("sweep", str(bad), "--store", str(tmp_path / "s"))
    assert out.returncode == 2 and "no field 'lrr'" in out.stderr and out.stderr.count("\n") == 1
