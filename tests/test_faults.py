"""Faults done for real: kill -9 at every stage of a run, NaN loss, a full disk, W&B unreachable, secrets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from repro.errors import RunFailed
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

TABLE = "papers/shufflenet/table2"
CELLS = ["--only", "0.25x|g=8", "--only", "0.25x|g=4"]
SHORT = ["--set", "train.max_steps=12", "--set", "train.checkpoint_every_steps=2"]


def start(args: list[str], tmpdir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=REPO, env={**os.environ, "TMPDIR": str(tmpdir)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the whole process group; False if it had already finished."""
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def checkpoint_step(store: Path) -> int:
    """The newest step any cell has a checkpoint for (files are replaced atomically: never half read)."""
    steps = [0]
    # prev.ckpt is the resume point when a kill fell between its rename and last.ckpt's.
    for ckpt in [*store.glob("*/checkpoints/last.ckpt"), *store.glob("*/checkpoints/prev.ckpt")]:
        try:
            steps.append(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])
        except (FileNotFoundError, RuntimeError):
            pass  # replaced between the glob and the load
    return max(steps)


def wait_for(event, proc: subprocess.Popen, timeout_s: float = 300) -> bool:
    """Poll until `event()` holds while `proc` still runs; False if it finished first. Kills happen on
    what the run has done, not on a timer, so a slow or loaded machine only makes the test slower."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if event():
            return True
        time.sleep(0.02)
    return False


def assert_store_consistent(store: Path, expected_cells: int):
    results = list(store.glob("*/result.json"))
    assert len(results) == expected_cells, "one result per cell, none lost, none doubled"
    for path in results:
        r = json.loads(path.read_text())  # parses: never half-written
        assert r["cell_id"] == path.parent.name and r["steps"] == 12
    for ckpt in store.glob("*/checkpoints/last.ckpt"):
        assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] > 0
    assert not list(store.glob("*/.*.tmp")) and not list(store.glob("*/checkpoints/.*.tmp"))


def test_kill_driver_at_every_stage_then_complete(tmp_path):
    """12 kills at the stages a run goes through (planned, claimed, each checkpoint, the first result
    written), then one uninterrupted run completes the table. Nothing is staged outside the store."""
    store, tmpdir = tmp_path / "store", tmp_path / "tmpdir"
    tmpdir.mkdir()
    args = ["run", "papers/shufflenet/table2", "--preset", "test", *CELLS, *SHORT, "--store", str(store),
            "--no-report", "--no-progress"]
    results = lambda: len(list(store.glob("*/result.json")))  # noqa: E731
    stages = [
        lambda: store.exists(),
        lambda: any(store.glob("*/claims/*.json")),
        lambda: checkpoint_step(store) >= 2,
        lambda: checkpoint_step(store) >= 6,
        lambda: checkpoint_step(store) >= 10,
        lambda: results() >= 1,
    ]
    rng, kills, attempts = random.Random(20261124), 0, 0
    while kills < 12 and attempts < 40:
        attempts += 1
        done_before = results()
        # The stage after what this store already holds, so every kill lands mid-work.
        stage = stages[kills % len(stages)] if done_before == 0 else stages[-1]
        proc = start(args, tmpdir)
        if wait_for(lambda: stage() and (done_before == 0 or results() > done_before), proc):
            time.sleep(rng.uniform(0.0, 0.3))
        kills += kill(proc)
        if results() == 2:  # finished before we got our kills in: start over on a fresh store
            store = tmp_path / f"store{attempts}"
            args[args.index("--store") + 1] = str(store)
    assert kills >= 12
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    assert_store_consistent(store, 2)
    assert [p for p in tmpdir.rglob("*") if p.is_file()] == [], "a save staged files outside the cell folder"


def test_kill_training_at_checkpoint_boundaries_then_resume(tmp_path):
    """8 kills, each right after a new checkpoint lands mid-training; resumes never redo finished steps."""
    store, tmpdir = tmp_path / "store", tmp_path / "tmpdir"
    tmpdir.mkdir()
    args = ["run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=8",
            # Steps to spare: on a loaded machine a run gets further between a checkpoint landing and
            # the kill, and 8 kills must land before it finishes.
            "--set", "train.max_steps=160", "--set", "train.checkpoint_every_steps=2", "--store", str(store),
            "--no-report", "--no-progress"]
    rng, kills, last_step, attempts = random.Random(7), 0, 0, 0
    while kills < 8 and attempts < 30 and not list(store.glob("*/result.json")):
        attempts += 1
        proc = start(args, tmpdir)
        if wait_for(lambda: checkpoint_step(store) > last_step, proc):
            time.sleep(rng.uniform(0.0, 0.4))
            if kill(proc):
                kills += 1
                resumed = checkpoint_step(store)
                assert resumed >= last_step, "a checkpoint never goes backwards"
                last_step = resumed
        kill(proc)
    assert kills >= 8
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    result = json.loads(next(store.glob("*/result.json")).read_text())
    assert result["steps"] == 160 and result["resumed_from_step"] >= last_step


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_from_it(tmp_path):
    """What `scancel`, a cluster's preemption or `kill` sends: the step finishes, a checkpoint lands,
    the cell goes back to pending (not failed), exit 143; the same command then finishes the cell."""
    store = tmp_path / "store"
    args = ["run", TABLE, "--preset", "test", "--only", "0.25x|g=3", "--set", "train.max_steps=400",
            "--set", "train.checkpoint_every_steps=100000", "--store", str(store), "--wandb", "off", "--no-report",
            "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = list(store.glob("*/state.json"))
        if states and (json.loads(states[0].read_text()).get("step") or 0) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143 and "checkpoint saved" in err and err.count("\n") == 1, err
    (state,) = [json.loads(p.read_text()) for p in store.glob("*/state.json")]
    assert state["status"] == "pending"
    (ckpt,) = store.glob("*/checkpoints/last.ckpt")
    saved_at = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    assert 1 <= saved_at < 400 and not list(store.glob("*/result.json"))
    done = run_cli(*args, timeout=600)
    assert done.returncode == 0, done.stderr
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert result["resumed_from_step"] == saved_at and result["steps"] == 400


def test_nan_loss_fails_the_cell_without_a_result(tmp_path):
    store = tmp_path / "store"
    out = run_cli("run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=8", "--set", "train.lr=1e12",
                  "--store", str(store), "--no-report", "--no-progress")
    assert out.returncode == 1
    assert "loss became nan" in out.stderr and "Traceback" not in out.stderr
    (run,) = [p for p in store.iterdir() if p.is_dir()]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "failed" and "nan" in state["message"]
    assert not (run / "result.json").exists()
    status = run_cli("status", "papers/shufflenet/table2", "--preset", "test", "--set", "train.lr=1e12", "--store", str(store))
    assert "failed" in status.stdout


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path):
    """A real full filesystem (a 24 MiB tmpfs), filled up after the first checkpoint."""
    import pytorch_lightning as pl

    from repro.spec import expand_cells, load_table
    from repro.store import Store
    from repro.train.run import RunOptions, run_cell

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "24m"):
        if os.environ.get("CI"):
            pytest.fail("could not mount a tmpfs (needs root)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        class FillDiskAfterFirstCheckpoint(pl.Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step == 3:  # the step-2 checkpoint is on disk
                    with open(disk / "filler", "wb") as f:
                        try:
                            while True:
                                f.write(b"\0" * (1 << 20))
                        except OSError:
                            pass

        table = load_table("papers/shufflenet/table2")
        cell = next(c for c in expand_cells(table, "test", overrides={"train.max_steps": 8}) if c.row == "0.25x" and c.column == "g=8")
        store = Store(disk / "store")
        with pytest.raises(RunFailed, match="could not write checkpoint.*previous checkpoint is intact"):
            run_cell(table, cell, RunOptions(store=store, extra_callbacks=[FillDiskAfterFirstCheckpoint()]))
        ckpt = store.checkpoint_path(cell.id)
        assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 2
        # On a full disk even the "failed" state may not be writable; what matters is no result.
        assert store.state(cell.id).status in ("failed", "running") and store.result(cell.id) is None
        assert not list(ckpt.parent.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("wandb_mode", [None, "bogus"], ids=["unreachable", "misconfigured"])
def test_wandb_unreachable_training_goes_on(tmp_path, wandb_mode):
    """W&B 'online' against a closed local port (or a bogus WANDB_MODE): the run still lands in the
    store, and the user is told how to sync later."""
    store = tmp_path / "store"
    env = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40, "WANDB_MODE": wandb_mode,
           "REPRO_WANDB": "online", "REPRO_WANDB_INIT_TIMEOUT": "5"}
    start_time = time.time()
    out = run_cli("run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=8", "--store", str(store),
                  "--no-report", "--no-progress", env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(list(store.glob("*/result.json"))) == 1
    assert "sync" in out.stderr
    assert time.time() - start_time < 90, "no 100 s hang"


def test_no_secret_reaches_any_file(tmp_path):
    secret = "sk-test-" + "7" * 32
    store, report = tmp_path / "store", tmp_path / "REPORT.md"
    env = {"WANDB_API_KEY": secret, "REPRO_WANDB": "offline", "MY_SERVICE_TOKEN": secret}
    out = run_cli("run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=8", "--store", str(store),
                  "--report", str(report), "--no-progress", env=env)
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout + out.stderr
    leaked = [p for p in [*store.rglob("*"), report, tmp_path / "report.json"]
              if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
