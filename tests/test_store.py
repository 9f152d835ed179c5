"""The store shared by many people and processes: readable by teammates, one trainer per cell, no
cell stuck, records validated like any input, damaged checkpoints survived."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from repro.cli import main
from repro.spec import expand_cells, load_table
from repro.store import Store, atomic_write_json
from repro.store.claim import CellClaims, LeaseKeeper, process_start_time
from tests.conftest import REPO, run_cli

TABLE = "papers/shufflenet/table2"
ONE = ["--only", "0.25x|g=8"]
TWO = ["--only", "0.25x|g=8", "--only", "0.25x|g=4"]
RUN = ["run", TABLE, "--preset", "test", "--no-progress", "--no-report", "--wandb", "off"]
# Root without its capabilities obeys file permissions like any other user.
AS_OTHER_USER = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


def cell_id(only: str = "0.25x|g=8", **overrides) -> str:
    cells = expand_cells(load_table(TABLE), "test", overrides=overrides or None)
    return next(c.id for c in cells if f"{c.row}|{c.column}" == only)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A store (in a folder anyone may enter) holding one finished cell, trained under umask 022."""
    root = Path(tempfile.mkdtemp(prefix="repro-shared-"))
    os.chmod(root, 0o755)
    store = root / "store"
    out = subprocess.run(["bash", "-c", 'umask 022 && exec "$@"', "_", sys.executable, "-m", "repro", *RUN, *ONE,
                          "--store", str(store)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    yield store
    shutil.rmtree(root, ignore_errors=True)


def copy_of(store: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "store"
    shutil.copytree(store, dest, symlinks=True)
    return dest


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_store_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode


def test_another_user_can_read_everything_a_run_wrote(finished):
    files = [p for p in finished.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"result.json", "config.json", "state.json", "last.ckpt", "0.json"} <= names
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        # A real second user: `nobody` reads each file through the folders the run made.
        out = subprocess.run(["runuser", "-u", "nobody", "--", "head", "-c", "1", str(path)], capture_output=True)
        assert out.returncode == 0, (path, out.stderr)


def test_a_result_another_user_cannot_read_is_an_error_not_pending(finished, tmp_path):
    store = copy_of(finished, tmp_path)
    os.chmod(tmp_path, 0o755)
    result = store / cell_id() / "result.json"
    os.chown(result, 65534, 65534)  # nobody's, and private to them
    os.chmod(result, 0o600)
    for command in (["status", TABLE, "--preset", "test", *ONE], [*RUN, *ONE]):
        out = subprocess.run([*AS_OTHER_USER, sys.executable, "-m", "repro", *command, "--store", str(store)],
                             capture_output=True, text=True, cwd=REPO, timeout=300)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1, out.stderr
        assert "cannot read" in lines[0] and "result.json" in lines[0] and "Permission denied" in lines[0]
    assert not (store / cell_id() / "checkpoints" / "prev.ckpt").exists(), "nothing was retrained"


def test_report_skips_an_unreadable_result_with_a_warning(finished, tmp_path, capsys):
    store = copy_of(finished, tmp_path)
    (store / cell_id() / "result.json").write_text("[]")
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "R.md")]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped" in err and "not a valid result" in err
    assert (tmp_path / "R.md").exists()


# ---------------------------------------------------------------- records validated like any input


@pytest.mark.parametrize("text,needle", [
    ("[]", "a list, not a result record"),
    ("{}", "cell_id None"),
    ('{"cell_id": "0000000000000000", "metrics": {}, "steps": 1}', "is not its folder's"),
    ("not json", "is not valid JSON"),
    ("", "is not valid JSON"),
    ('{"cell_id": "%s", "metrics": {"top1": "high"}, "steps": 3}', "'metrics' is not a mapping"),
    ('{"cell_id": "%s", "metrics": {"top1": 1.0}, "steps": -3}', "'steps' is not a non-negative integer"),
    ('{"cell_id": "%s", "metrics": {"top1": 1.0}, "steps": "12"}', "'steps' is not a non-negative integer"),
])
def test_a_malformed_result_is_one_clear_line_for_run_and_status(finished, tmp_path, capsys, text, needle):
    store = copy_of(finished, tmp_path)
    (store / cell_id() / "result.json").write_text(text.replace("%s", cell_id()))
    for argv in (["status", TABLE, "--preset", "test", *ONE], [*RUN, *ONE]):
        assert main([*argv, "--store", str(store)]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "result.json" in err[0], err


@pytest.mark.parametrize("text", ["[]", "{}", '"running"', '{"status": "bogus"}', "{not json",
                                  '{"status": "running", "pid": "12", "surprise": [1]}',
                                  '{"status": "submitted", "launcher": "ray", "pid": 999999999, "pid_start": 1}'])
def test_a_malformed_or_dead_state_neither_crashes_nor_keeps_a_cell_in_flight(tmp_path, capsys, text):
    store = tmp_path / "store"
    (store / cell_id()).mkdir(parents=True)
    (store / cell_id() / "state.json").write_text(text)
    assert main(["status", TABLE, "--preset", "test", *ONE, "--store", str(store)]) == 0
    assert main([*RUN, *ONE, "--store", str(store), "--dry-run", "--json"]) == 0
    plan = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p["status"] for p in plan if p.get("cell_id") == cell_id()] == ["run"]


def test_a_cell_folder_that_is_a_link_is_refused(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    store = tmp_path / "store"
    store.mkdir()
    (store / cell_id()).symlink_to(outside)
    assert main([*RUN, *ONE, "--store", str(store)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a symbolic link" in err[0]
    assert list(outside.iterdir()) == [], "nothing written through the link"


# ---------------------------------------------------------------- claims


def claim_file(folder: Path, n: int, **fields) -> None:
    (folder / "claims").mkdir(parents=True, exist_ok=True)
    base = {"number": n, "host": socket.gethostname(), "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "pid": 0, "pid_start": None, "slurm_job": None, "lease_s": 120.0, "renewed": time.time(), "released": False}
    (folder / "claims" / f"{n}.json").write_text(json.dumps({**base, **fields}))


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_process_on_this_host_holds_its_cell(tmp_path, sleeper):
    claim_file(tmp_path, 0, pid=sleeper.pid, pid_start=process_start_time(sleeper.pid))
    claims = CellClaims(tmp_path, atomic_write_json)
    assert claims.holder().pid == sleeper.pid and claims.acquire() is None


def test_a_reused_pid_does_not_keep_a_cell_in_flight(tmp_path, sleeper):
    """The pid is alive, but it is another process than the one that claimed the cell."""
    claim_file(tmp_path, 0, pid=sleeper.pid, pid_start=process_start_time(sleeper.pid) - 1)
    claims = CellClaims(tmp_path, atomic_write_json)
    assert claims.holder() is None
    taken = claims.acquire()
    assert taken.number == 1 and taken.pid == os.getpid()


def test_a_dead_or_released_claim_is_taken_over(tmp_path, sleeper):
    claim_file(tmp_path, 0, pid=sleeper.pid, pid_start=process_start_time(sleeper.pid), released=True)
    claims = CellClaims(tmp_path, atomic_write_json)
    assert claims.acquire().number == 1
    claim_file(tmp_path, 2, pid=2**22 + 7, pid_start=5)  # no such process
    assert claims.acquire().number == 3


@pytest.mark.parametrize("age_s,live", [(10, True), (119, True), (121, False), (10_000, False)])
def test_a_claim_from_another_host_lives_as_long_as_its_lease(tmp_path, age_s, live):
    claim_file(tmp_path, 0, host="node-elsewhere", boot_id="other", pid=4242, pid_start=9,
               renewed=time.time() - age_s, lease_s=120.0)
    claims = CellClaims(tmp_path, atomic_write_json)
    assert (claims.holder() is not None) is live
    assert (claims.acquire() is None) is live


def test_a_requeued_slurm_job_takes_over_its_own_claim(tmp_path, monkeypatch):
    claim_file(tmp_path, 0, host="node-elsewhere", boot_id="other", pid=4242, pid_start=9, slurm_job="77")
    claims = CellClaims(tmp_path, atomic_write_json)
    assert claims.acquire() is None
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert claims.acquire().number == 1


def _race(folder: str, start: float, out):
    while time.time() < start:
        pass
    claim = CellClaims(Path(folder), atomic_write_json).acquire()
    out.put(None if claim is None else claim.number)
    time.sleep(1.5)  # stay alive (the winner's claim is live while it runs) until all have tried


def test_of_processes_claiming_one_cell_at_once_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), time.time() + 2.0
    procs = [ctx.Process(target=_race, args=(str(tmp_path), start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(got, key=str) == [0, None, None, None, None, None]


def test_the_lease_is_renewed_and_a_takeover_is_noticed(tmp_path):
    claims = CellClaims(tmp_path, atomic_write_json)
    claim = claims.acquire(lease_s=0.2)
    first = claim.renewed
    with LeaseKeeper(claims, claim) as keeper:
        time.sleep(0.3)
        assert json.loads((tmp_path / "claims" / "0.json").read_text())["renewed"] > first
        claim_file(tmp_path, 1, host="node-elsewhere", boot_id="x", pid=1, pid_start=1)
        time.sleep(0.3)
        assert keeper.lost
    assert not json.loads((tmp_path / "claims" / "0.json").read_text())["released"], "not ours to release any more"


def test_a_cell_held_by_a_live_process_is_reported_in_flight_and_skipped(tmp_path, sleeper, capsys):
    store = tmp_path / "store"
    claim_file(store / cell_id(), 0, pid=sleeper.pid, pid_start=process_start_time(sleeper.pid))
    assert main([*RUN, *ONE, "--store", str(store)]) == 0
    assert "0 to run, 0 done, 1 in flight" in capsys.readouterr().out
    assert not (store / cell_id() / "result.json").exists()


def test_two_runs_started_together_train_each_cell_once(tmp_path):
    """The race the planning-time check missed: both processes see both cells to do."""
    store = tmp_path / "store"
    args = [sys.executable, "-m", "repro", *RUN, *TWO, "--set", "train.max_steps=30", "--store", str(store)]
    first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([*args, "--wait"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert not any("discarded" in err for _, err in outs), outs
    results = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert len(results) == 2 and all(r["steps"] == 30 and r["resumed_from_step"] == 0 for r in results)


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def four_step_checkpoint(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("ckpt") / "store"
    assert main([*RUN, *ONE, "--set", "train.max_steps=4", "--store", str(store)]) == 0
    return store / cell_id(**{"train.max_steps": 4}) / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("last,prev,resumed,warnings", [
    ("truncated", "good", 4, ["last.ckpt cannot be loaded", "trying prev.ckpt"]),
    ("empty", None, 0, ["last.ckpt cannot be loaded"]),
    ("folder", "truncated", 0, ["last.ckpt cannot be loaded", "prev.ckpt cannot be loaded", "starting from step 0"]),
    (None, "good", 4, []),
])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_or_a_fresh_start(
        tmp_path, capsys, four_step_checkpoint, last, prev, resumed, warnings):
    store = tmp_path / "store"
    folder = store / cell_id(**{"train.max_steps": 6}) / "checkpoints"
    folder.mkdir(parents=True)
    good = four_step_checkpoint.read_bytes()
    for name, kind in (("last.ckpt", last), ("prev.ckpt", prev)):
        if kind == "good":
            (folder / name).write_bytes(good)
        elif kind == "truncated":
            (folder / name).write_bytes(good[: len(good) // 2])
        elif kind == "empty":
            (folder / name).write_bytes(b"")
        elif kind == "folder":
            (folder / name).mkdir()
    assert main([*RUN, *ONE, "--set", "train.max_steps=6", "--store", str(store)]) == 0
    err = capsys.readouterr().err
    for needle in warnings:
        assert needle in err, err
    assert "Traceback" not in err
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert result["resumed_from_step"] == resumed and result["steps"] == 6


def test_restart_ignores_a_good_checkpoint(tmp_path, four_step_checkpoint):
    store = tmp_path / "store"
    folder = store / cell_id(**{"train.max_steps": 6}) / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(four_step_checkpoint, folder / "last.ckpt")
    assert main([*RUN, *ONE, "--set", "train.max_steps=6", "--store", str(store), "--restart"]) == 0
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert result["resumed_from_step"] == 0
    assert torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 6
    assert not (folder / "prev.ckpt").exists(), "a finished run keeps only the weights other cells start from"


def test_a_cell_that_fails_inside_torch_fails_alone_and_the_table_goes_on(tmp_path, capsys, monkeypatch):
    import repro.train.run as run

    real = run.task_parts

    def breaks_on_g8(table, cell, *args):
        if cell.column == "g=8":
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)\nmore detail")
        return real(table, cell, *args)

    monkeypatch.setattr(run, "task_parts", breaks_on_g8)
    store = tmp_path / "store"
    assert main([*RUN, *TWO, "--set", "train.max_steps=3", "--store", str(store)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("failed: RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"), err
    assert err[-1].startswith("repro: 1 of 2 cells failed") and len(err) == 2
    states = {json.loads(p.read_text())["status"] for p in store.glob("*/state.json")}
    assert states == {"failed", "done"} and len(list(store.glob("*/result.json"))) == 1


def test_a_cell_that_fails_its_checks_is_not_left_running(tmp_path, capsys, monkeypatch):
    """Checks that need no training run before the cell is marked running (and so before any rerun
    would see a half-started cell)."""
    from repro.errors import ConfigError
    import repro.train.run as run

    def broken(table, cell):
        raise ConfigError("input_size out of range")

    monkeypatch.setattr(run, "cell_complexity", broken)
    store = tmp_path / "store"
    assert main([*RUN, *ONE, "--store", str(store)]) != 0
    folder = store / cell_id()
    assert not (folder / "checkpoints").exists() and not (folder / "state.json").exists()
    assert Store(store).in_flight(cell_id()) is False


# ---------------------------------------------------------------- status


def test_status_without_a_preset_shows_the_presets_the_store_holds(capsys):
    assert main(["status", TABLE, "--store", str(REPO / "results" / "runs")]) == 0
    out = capsys.readouterr().out
    assert "shufflenet/table2 [preset proxy]: 15 runs" in out and "15 done" in out
    assert "[preset paper]" not in out and "pending" not in out
    assert "300/300" in out, "a finished cell shows its steps out of its total"


def test_status_of_an_empty_store_names_the_preset_it_shows(tmp_path, capsys):
    assert main(["status", TABLE, "--store", str(tmp_path / "empty")]) == 0
    out = capsys.readouterr().out
    assert "[preset paper]" in out and "holds no runs of this table under any preset; showing preset 'paper'" in out


def test_status_shows_a_running_cell_as_step_of_total(tmp_path, capsys, sleeper):
    store = tmp_path / "store"
    folder = store / cell_id()
    claim_file(folder, 0, pid=sleeper.pid, pid_start=process_start_time(sleeper.pid))
    (folder / "state.json").write_text(json.dumps({"status": "running", "step": 40, "total_steps": 300,
                                                   "updated": time.time()}))
    assert main(["status", TABLE, "--preset", "test", *ONE, "--store", str(store)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if cell_id() in line)
    assert "running" in line and "40/300" in line


def test_a_rerun_with_nothing_to_do_draws_no_progress_bar(finished, tmp_path):
    store = copy_of(finished, tmp_path)
    out = run_cli("run", TABLE, "--preset", "test", *ONE, "--store", str(store), "--no-report", "--wandb", "off")
    assert out.returncode == 0 and "0 to run, 1 done" in out.stdout
    assert "cell/s" not in out.stderr and "0/0" not in out.stderr, out.stderr
