"""The results store: one folder per run, keyed by cell id, safe for many writers.

    <root>/<cell_id>/config.json      resolved config (written before training)
    <root>/<cell_id>/state.json       pending | submitted | running | failed (+ job id, step, message)
    <root>/<cell_id>/checkpoints/     last.ckpt, replaced atomically
    <root>/<cell_id>/result.json      written once, atomically, only when the run completes

There is no shared index file: every writer touches only its own run's folder, and every file is
written to a temporary name in the same folder and renamed into place, so a reader (or a node on
a shared filesystem) sees either the old file or the new one, never half of one. "Done" means
result.json exists and parses.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from repro.errors import RunFailed

DEFAULT_ROOT_ENV = "REPRO_STORE"


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing, unreadable or half-written: not there yet
        return None


@dataclass
class RunState:
    status: str  # pending | submitted | running | failed | done
    job_id: str | None = None
    launcher: str | None = None
    step: int | None = None
    message: str = ""
    host: str | None = None
    pid: int | None = None
    updated: float = 0.0


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get(DEFAULT_ROOT_ENV, "runs")).expanduser().resolve()

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe.", delete=True)
            probe.close()
        except OSError as exc:
            raise RunFailed(f"results store {self.root} is not writable ({exc.strerror}); pass --store DIR") from None

    def run_dir(self, cell_id: str) -> Path:
        return self.root / cell_id

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.run_dir(cell_id) / "checkpoints" / "last.ckpt"

    # ---- results
    def result(self, cell_id: str) -> dict | None:
        return read_json(self.run_dir(cell_id) / "result.json")

    def is_done(self, cell_id: str) -> bool:
        return self.result(cell_id) is not None

    def write_result(self, cell_id: str, result: dict) -> bool:
        """Write result.json once. Returns False (and writes nothing) if it already exists."""
        path = self.run_dir(cell_id) / "result.json"
        if self.result(cell_id) is not None:
            return False
        atomic_write_json(path, result)
        self.set_state(cell_id, "done", step=result.get("steps"))
        return True

    def results(self) -> list[dict]:
        if not self.root.exists():
            return []
        found = []
        for d in sorted(self.root.iterdir()):
            r = read_json(d / "result.json") if d.is_dir() else None
            if r is not None:
                found.append(r)
        return found

    def clean_temporaries(self, cell_id: str) -> int:
        """Remove temporary files a killed writer left in this run's folder; returns how many."""
        run = self.run_dir(cell_id)
        stale = [*run.glob(".*.tmp"), *run.glob("checkpoints/.*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    # ---- config and state
    def write_config(self, cell_id: str, config: dict) -> None:
        path = self.run_dir(cell_id) / "config.json"
        if read_json(path) != json.loads(json.dumps(config, default=str)):
            atomic_write_json(path, config)

    def config(self, cell_id: str) -> dict | None:
        return read_json(self.run_dir(cell_id) / "config.json")

    def state(self, cell_id: str) -> RunState | None:
        if self.is_done(cell_id):
            return RunState("done")
        raw = read_json(self.run_dir(cell_id) / "state.json")
        return RunState(**raw) if raw else None

    def set_state(self, cell_id: str, status: str, **fields) -> RunState:
        old = read_json(self.run_dir(cell_id) / "state.json") or {}
        keep = {k: old.get(k) for k in ("job_id", "launcher") if old.get(k) is not None}
        state = RunState(status=status, **{**keep, **fields}, host=socket.gethostname(), pid=os.getpid(), updated=time.time())
        atomic_write_json(self.run_dir(cell_id) / "state.json", state.__dict__)
        return state

    def try_set_state(self, cell_id: str, status: str, **fields) -> bool:
        """set_state for failure paths: on a full disk the error being raised says more than the state would."""
        try:
            self.set_state(cell_id, status, **fields)
            return True
        except OSError:
            return False

    def in_flight(self, cell_id: str, stale_after_s: float = 600.0) -> bool:
        """A live run or a queued job already owns this cell (so do not start another)."""
        state = self.state(cell_id)
        if state is None or state.status in ("done", "failed", "pending", "cancelled"):
            return False
        if state.status == "submitted":
            return True
        if state.host == socket.gethostname() and state.pid:
            return _pid_alive(state.pid) and state.pid != os.getpid()
        return time.time() - state.updated < stale_after_s


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
