"""Session fixture ``slurm_cluster``: a real single-node SLURM cluster on this machine.

Load it from conftest.py with ``pytest_plugins = ["tests.slurm_cluster"]``.  The fixture runs
``bash slurm/local-cluster.sh up DIR`` (installs the Debian packages when missing, starts
munged/slurmctld/slurmd) and ``down DIR`` at the end of the session.

When the machine cannot host the cluster (script exit code 77: not root, no apt-get, the install
failed) the tests using the fixture are skipped -- unless ``CI`` is set, where they fail instead, so
CI can never silently skip the real engine.  Any other startup error always fails.

Accounting is off (``sacct`` fails; ``sacct -c`` reads the jobcomp file).  submitit still gets
results, but its ``job.state`` stays UNKNOWN and a job that dies without writing its result
(scancel, SIGKILL) makes ``job.result()`` wait forever: use timeouts, or run the session with
``SLURM_LOCAL_ACCOUNTING=dbd`` for a real ``sacct``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "slurm" / "local-cluster.sh"
UNAVAILABLE = 77  # local-cluster.sh: this machine cannot host the cluster
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                      "BOOT_FAIL", "DEADLINE", "PREEMPTED"})


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class SlurmCluster:
    FINISHED = FINISHED  # terminal job states, for wait_state

    def __init__(self, root: Path, env: dict[str, str], up_seconds: float) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = env
        self.up_seconds = up_seconds

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, scontrol, ...) against this cluster."""
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def sbatch(self, args: list[str]) -> str:
        """Submit; return the job id (for an array, the array's job id)."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return out.split(";")[0]

    def squeue_state(self, job_id: str) -> str:
        """JobState (PENDING, RUNNING, COMPLETED, CANCELLED, ...) or "" if SLURM forgot the job.

        Finished jobs stay visible for MinJobAge (300 s).  For an array pass ``ID_TASK``; the bare
        array id returns the states of all its tasks joined by commas.
        """
        out = self.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T", check=False).stdout
        return ",".join(out.split())

    def scontrol_show(self, job_id: str) -> dict[str, str]:
        """``scontrol -o show job`` as a dict (first record for an array id)."""
        line = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout.splitlines()[0]
        info: dict[str, str] = {}
        key = None
        for tok in line.split(" "):
            k, eq, v = tok.partition("=")
            if eq and k[:1].isupper():  # keys are CamelCase
                key, info[k] = k, v
            elif key is not None:  # a value containing spaces
                info[key] += " " + tok
        return info

    def wait_state(self, job_id: str, states: str | Iterable[str], timeout: float = 30) -> str:
        """Poll until the job is in one of ``states``; return it.  TimeoutError otherwise."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.squeue_state(job_id)
            if state in wanted:
                return state
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id}: still {state or 'unknown'} after {timeout}s, wanted {wanted}")

    @contextlib.contextmanager
    def environ(self) -> Iterator[None]:
        """Point os.environ at this cluster, for libraries that shell out themselves (submitit)."""
        saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
        os.environ.update(SLURM_CONF=self.env["SLURM_CONF"], PATH=self.env["PATH"])
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"SLURM cluster unavailable in CI (CI is set, so no skip): {reason}", pytrace=False)
    pytest.skip(f"no local SLURM cluster: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if shutil.which("bash") is None or not Path("/proc").is_dir():
        _unavailable("needs Linux with bash")
    # Not tmp_path_factory: /tmp/pytest-of-root is 0700 and munged runs as the munge user.
    root = Path(tempfile.mkdtemp(prefix="repro-slurm-"))
    env = dict(os.environ)
    env.pop("SLURM_JOB_ID", None)  # tests may themselves run inside a SLURM job
    env["PATH"] = env.get("PATH", "") + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), "up", str(root)], env=env, capture_output=True, text=True)
    up_seconds = time.monotonic() - t0
    if proc.returncode != 0:
        errors = [l for l in proc.stderr.splitlines() if "ERROR" in l]
        reason = errors[-1] if errors else proc.stderr.strip()[-2000:]
        down = subprocess.run(["bash", str(SCRIPT), "down", str(root)], env=env, capture_output=True)
        if down.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)
        if proc.returncode == UNAVAILABLE:
            _unavailable(reason)
        pytest.fail(f"local-cluster.sh up failed ({proc.returncode}), logs in {root}/log:\n"
                    f"{proc.stderr[-3000:]}", pytrace=False)
    env["SLURM_CONF"] = str(root / "slurm.conf")
    cluster = SlurmCluster(root, env, up_seconds)
    try:
        yield cluster
    finally:
        down = subprocess.run(["bash", str(SCRIPT), "down", str(root)], env=env, capture_output=True, text=True)
        if down.returncode != 0:
            print(f"local-cluster.sh down failed: {down.stderr}")
        elif not os.environ.get("REPRO_KEEP_SLURM_DIR"):
            shutil.rmtree(root, ignore_errors=True)
