"""Thread sizing: from the CPUs a process may use and the load of other work, recorded per result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from repro.train import threads as T
from tests.conftest import REPO, run_cli


@pytest.mark.parametrize("text,cpus", [("max 100000", None), ("150000 100000", 1.5), ("50000 100000", 0.5),
                                       ("200000 100000\n", 2.0)])
def test_cgroup_v2_quota(tmp_path, text, cpus):
    (tmp_path / "cpu.max").write_text(text)
    assert T.cgroup_cpu_limit(tmp_path) == cpus


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert T.cgroup_cpu_limit(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert T.cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize("cpus,load,processes,threads", [
    (8, 0.0, 1, 8), (8, 6.2, 1, 2), (8, 30.0, 1, 1), (8, 0.3, 2, 4), (8, 4.0, 2, 2), (2, 3.5, 1, 1), (1, 0.0, 4, 1),
])
def test_threads_are_the_free_share_of_the_usable_cpus(monkeypatch, cpus, load, processes, threads):
    for name in ("OMP_NUM_THREADS", T.CHOSEN_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(T, "usable_cpus", lambda: (cpus, "affinity"))
    got, why = T.choose_threads(None, processes, load=load)
    assert got == threads and f"{cpus} CPUs" in why
    assert T.choose_threads(3, processes, load=load) == (3, "--threads")


def test_a_launcher_setting_omp_num_threads_is_obeyed(monkeypatch):
    monkeypatch.delenv(T.CHOSEN_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert T.choose_threads(None, 1, load=0.0) == (1, "OMP_NUM_THREADS")


def test_a_run_confined_to_one_cpu_uses_one_thread_and_records_it(tmp_path):
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", T.CHOSEN_ENV, T.CHOSEN_REASON_ENV, T.BUSY_ENV)}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "repro", "run", "papers/shufflenet/table2",
                          "--preset", "test", "--only", "0.25x|g=8", "--set", "train.max_steps=2", "--store", str(store),
                          "--no-report", "--no-progress"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert result["threads"] == 1 and result["threads_reason"].startswith("affinity: 1 CPUs")
    assert result["hardware"]["cpu_threads"] == 1


def test_threads_flag_overrides(tmp_path):
    store = tmp_path / "store"
    out = run_cli("run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=4", "--set",
                  "train.max_steps=2", "--store", str(store), "--no-report", "--no-progress", "--threads", "3",
                  env={"OMP_NUM_THREADS": None})
    assert out.returncode == 0, out.stderr
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert (result["threads"], result["threads_reason"], result["hardware"]["cpu_threads"]) == (3, "--threads", 3)


def test_busy_cpus_sees_a_process_spinning_on_a_cpu():
    spinner = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert T.busy_cpus({0}, window_s=1.0) > 0.7
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("busy,policy", [(0.1, None), (0.9, "PASSIVE"), (3.0, "PASSIVE")])
def test_idle_threads_sleep_only_when_other_work_is_there(monkeypatch, busy, policy):
    for name in (T.WAIT_POLICY_ENV, T.BUSY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(T, "usable_cpus", lambda: (2, "affinity"))
    monkeypatch.setattr(T, "busy_cpus", lambda: busy)
    T.measure_before_torch()
    assert os.environ.get(T.WAIT_POLICY_ENV) == policy and float(os.environ[T.BUSY_ENV]) == busy


def test_the_first_cell_decides_for_the_whole_process(monkeypatch):
    """Later cells must not read the machine this process itself keeps busy."""
    for name in ("OMP_NUM_THREADS", T.CHOSEN_ENV, T.CHOSEN_REASON_ENV, T.BUSY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(T, "usable_cpus", lambda: (2, "affinity"))
    monkeypatch.setattr(T, "busy_cpus", lambda: 0.0)
    first = T.configure_threads()
    monkeypatch.setattr(T, "busy_cpus", lambda: 1.9)  # our own first cell's load
    assert T.configure_threads() == first and first["threads"] == 2
    assert os.environ[T.CHOSEN_ENV] == "2"
