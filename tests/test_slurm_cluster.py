"""The local SLURM cluster behaves like a real one: batch, arrays, cancel, submitit, requeue."""

from __future__ import annotations

import sys
import time

import pytest

pytest_plugins = ["tests.slurm_cluster"]  # no-op when conftest.py already loads it
pytestmark = pytest.mark.slurm


def test_wrap_job_writes_file(slurm_cluster, tmp_path):
    out = tmp_path / "hello.txt"
    jid = slurm_cluster.sbatch(["-D", str(tmp_path), "-o", "%j.log", "--wrap", f"echo hello $SLURM_JOB_ID > {out}"])
    assert slurm_cluster.wait_state(jid, slurm_cluster.FINISHED) == "COMPLETED"
    assert out.read_text().split() == ["hello", jid]


def test_array_tasks_all_run_two_at_a_time(slurm_cluster, tmp_path):
    script = 'date +%s.%N > t$SLURM_ARRAY_TASK_ID.start; sleep 1; date +%s.%N > t$SLURM_ARRAY_TASK_ID.end'
    jid = slurm_cluster.sbatch(["-D", str(tmp_path), "-o", "%A_%a.log", "--array=0-2", "--wrap", script])
    for i in range(3):
        assert slurm_cluster.wait_state(f"{jid}_{i}", slurm_cluster.FINISHED) == "COMPLETED"
    spans = [tuple(float((tmp_path / f"t{i}.{e}").read_text()) for e in ("start", "end")) for i in range(3)]
    # DefMemPerCPU: a job without --mem must not take the whole node, so two tasks overlap on 2 CPUs
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans for b in spans if a is not b), spans


def test_scancel_shows_cancelled(slurm_cluster, tmp_path):
    jid = slurm_cluster.sbatch(["-D", str(tmp_path), "-o", "%j.log", "--wrap", "sleep 120"])
    slurm_cluster.wait_state(jid, "RUNNING")
    slurm_cluster.run("scancel", jid)
    slurm_cluster.wait_state(jid, slurm_cluster.FINISHED)
    info = slurm_cluster.scontrol_show(jid)
    assert info["JobState"] == "CANCELLED"
    assert info["ExitCode"] == "0:15"


def test_submitit_returns_result(slurm_cluster, tmp_path):
    submitit = pytest.importorskip("submitit")

    def add(a, b):  # nested, so cloudpickle ships it by value (the job cannot import this module)
        import os
        return a + b, os.environ["SLURM_JOB_ID"]

    executor = submitit.SlurmExecutor(folder=tmp_path / "submitit", python=sys.executable)
    executor.update_parameters(partition="debug", time=5, cpus_per_task=1)
    with slurm_cluster.environ():  # submitit shells out to sbatch/sacct with os.environ
        job = executor.submit(add, 2, 3)
        deadline = time.monotonic() + 30
        while not job.done() and time.monotonic() < deadline:  # job.result() has no timeout
            time.sleep(0.5)
        assert job.done(), slurm_cluster.scontrol_show(job.job_id)
        assert job.result() == (5, job.job_id)


def test_scontrol_requeue_restarts_job(slurm_cluster, tmp_path):
    log = tmp_path / "runs.log"
    script = tmp_path / "job.sh"
    script.write_text(f"""#!/bin/bash
echo "start ${{SLURM_RESTART_COUNT:-0}}" >> {log}
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then sleep 120; fi
echo "done ${{SLURM_RESTART_COUNT:-0}}" >> {log}
""")
    jid = slurm_cluster.sbatch(["-D", str(tmp_path), "-o", "%j.log", str(script)])
    slurm_cluster.wait_state(jid, "RUNNING")
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    slurm_cluster.run("scontrol", "requeue", jid)  # SIGTERM to the batch script, then PENDING
    # Requeued jobs wait ~2 min (Reason=BeginTime); StartTime=now only sticks once PENDING, and a
    # relaunch in the same second as the kill fails: "Job credential revoked" -> FAILED.
    slurm_cluster.wait_state(jid, "PENDING")
    time.sleep(2)
    slurm_cluster.run("scontrol", "update", f"JobId={jid}", "StartTime=now")
    assert slurm_cluster.wait_state(jid, slurm_cluster.FINISHED) == "COMPLETED"
    assert log.read_text().splitlines() == ["start 0", "start 1", "done 1"]
    assert slurm_cluster.scontrol_show(jid)["Restarts"] == "1"
