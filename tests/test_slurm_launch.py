"""`--launcher slurm` and `repro status` against a real single-node SLURM cluster (tests/slurm_cluster.py).

Everything goes through the CLI as a user types it; the jobs are real sbatch jobs running run_cell.
CPU only: the local cluster refuses --gres, and these runs never ask for GPUs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TABLE = "papers/shufflenet/table2"


def submit(cli, cluster, store: Path, *extra: str):
    out = cli("run", TABLE, "--preset", "test", "--launcher", "slurm", "--time", "10", "--store", str(store), *extra,
              env=cluster.env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out, re.findall(r"-> job (\S+)", out.stdout)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def wait_results(cluster, store: Path, cells_jobs: dict[str, str], timeout: float = 240) -> None:
    """Until every cell has its result; fail at once (with the job log) when a job ends without one."""
    def landed():
        for cell, job in cells_jobs.items():
            if not (store / cell / "result.json").exists() and cluster.squeue_state(job) in cluster.FINISHED - {"COMPLETED"}:
                pytest.fail(f"job {job} ended {cluster.squeue_state(job)} without a result:\n{job_log(store)}")
        return all((store / c / "result.json").exists() for c in cells_jobs)

    wait_for(landed, timeout, f"results; job logs:\n{job_log(store)}")


def state(store: Path, cell_id: str) -> dict:
    try:
        return json.loads((store / cell_id / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def job_log(store: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in store.glob(".slurm/**/*.err"))


def test_submit_returns_at_once_results_land_and_rerun_submits_nothing(slurm_cluster, cli, tmp_path):
    store = tmp_path / "store"
    # --cpus 2: each job is 2 srun tasks, a 2-process gloo DDP run ranked by SLURM (SLURMEnvironment).
    only = ["--only", "0.25x|g=3", "--only", "0.25x|g=8", "--cpus", "2"]
    started = time.monotonic()
    out, jobs = submit(cli, slurm_cluster, store, *only)
    assert len(jobs) == 2, out.stdout
    assert time.monotonic() - started < 30  # it submits and returns; it does not wait for training
    cells = re.findall(r"^\s+([0-9a-f]{16}) ", out.stdout, flags=re.MULTILINE)
    assert {state(store, c)["launcher"] for c in cells} == {"slurm"}
    assert {state(store, c)["job_id"] for c in cells} <= set(jobs) | {None}  # a started job may write first

    again, more = submit(cli, slurm_cluster, store, *only)  # both cells are in flight now
    assert more == [] and "nothing to submit" in again.stdout, again.stdout

    wait_results(slurm_cluster, store, dict(zip(cells, jobs)))
    for c in cells:
        result = json.loads((store / c / "result.json").read_text())
        assert result["steps"] == 6 and result["world_size"] == 2 and result["resumed_from_step"] == 0
        assert result["rank_metrics"][0] == result["rank_metrics"][1]
    status = cli("status", TABLE, "--preset", "test", "--store", str(store), *only[:4], env=slurm_cluster.env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count(" done ") == 2 and "2 done" in status.stdout, status.stdout


def test_requeued_job_resumes_from_its_checkpoint_and_finishes_once(slurm_cluster, cli, tmp_path):
    store = tmp_path / "store"
    out, jobs = submit(cli, slurm_cluster, store, "--only", "0.25x|g=4", "--set", "train.max_steps=30",
                       "--set", "train.checkpoint_every_steps=5")
    (job,) = jobs
    cell = re.findall(r"^\s+([0-9a-f]{16}) ", out.stdout, flags=re.MULTILINE)[0]
    # Requeue once the first periodic checkpoint (step 5) has landed: then the resume is certain
    # even on a loaded machine, where the checkpoint SIGTERM asks for may not beat KillWait's SIGKILL.
    ckpt = store / cell / "checkpoints" / "last.ckpt"
    wait_for(ckpt.exists, 180, f"the first checkpoint; logs:\n{job_log(store)}")
    slurm_cluster.run("scontrol", "requeue", job)
    slurm_cluster.wait_state(job, "PENDING", timeout=60)
    time.sleep(2.5)  # released too early, SLURM re-applies its 2-minute requeue hold
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")

    wait_results(slurm_cluster, store, {cell: job})
    result = json.loads((store / cell / "result.json").read_text())
    assert result["steps"] == 30
    assert 0 < result["resumed_from_step"] < 30, result["resumed_from_step"]
    assert slurm_cluster.scontrol_show(job)["Restarts"] == "1"
    assert len(list(store.glob("*/result.json"))) == 1
    # (A resumed_from_step that is not a multiple of 5 is the checkpoint SIGTERM made run_cell save.)


def test_cancelled_job_shows_cancelled_and_is_submitted_again(slurm_cluster, cli, tmp_path):
    store = tmp_path / "store"
    args = ["--only", "0.25x|g=1", "--set", "train.max_steps=100000"]
    _, (job,) = submit(cli, slurm_cluster, store, *args)
    slurm_cluster.wait_state(job, "RUNNING", timeout=60)
    slurm_cluster.run("scancel", job)
    slurm_cluster.wait_state(job, "CANCELLED", timeout=60)

    status = cli("status", TABLE, "--preset", "test", "--store", str(store), *args, env=slurm_cluster.env)
    assert status.returncode == 0, status.stderr
    line = next(l for l in status.stdout.splitlines() if "0.25x | g=1" in l)
    assert " cancelled " in line and job in line, status.stdout
    # Without SLURM the store's last state (now written back as cancelled) is still shown.
    offline = cli("status", TABLE, "--preset", "test", "--store", str(store), *args, env={"SLURM_CONF": "/nonexistent"})
    assert "cancelled" in offline.stdout, offline.stdout + offline.stderr
    plan = cli("run", TABLE, "--preset", "test", "--store", str(store), *args, "--dry-run")
    assert "-> run" in plan.stdout, plan.stdout
