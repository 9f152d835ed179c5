"""The results store: one folder per run, keyed by cell id, safe for many writers.

    <root>/<cell_id>/config.json      resolved config (written before training)
    <root>/<cell_id>/state.json       pending | submitted | running | failed (+ job id, step, message)
    <root>/<cell_id>/claims/<n>.json  who trains the cell now (repro/store/claim.py)
    <root>/<cell_id>/checkpoints/     last.ckpt, replaced atomically
    <root>/<cell_id>/result.json      written once, atomically, only when the run completes

There is no shared index file: every writer touches only its own run's folder, and every file is
written to a temporary name in the same folder and renamed into place, so a reader (or a node on
a shared filesystem) sees either the old file or the new one, never half of one. "Done" means
result.json exists and is a valid result; one that exists but cannot be read or is not a result is
an error that says so, never "not done" (that would retrain a finished cell).

Files get the mode the umask gives (0644 under the usual 022), as `open` would, so teammates on a
shared cluster filesystem can read what this user's runs wrote.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from repro.errors import RunFailed, StoreError
from repro.store.claim import CellClaims, process_start_time

DEFAULT_ROOT_ENV = "REPRO_STORE"


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which
    would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; the file should read as if opened normally
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path):
    """The parsed file, None if it does not exist. Files are replaced atomically, so one that exists
    but cannot be read or parsed is a real problem (permissions, corruption): StoreError says which."""
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):  # the latter: a store path that is a file has no runs
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise StoreError(f"cannot read {path} ({reason}); check its permissions") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); move it aside to redo this run") from None


def check_result(path: Path, raw) -> dict:
    """A result as written by a finished run, or StoreError naming what is wrong with it."""
    problem = None
    if not isinstance(raw, dict):
        problem = f"a {type(raw).__name__}, not a result record"
    elif raw.get("cell_id") != path.parent.name:
        problem = f"its cell_id {raw.get('cell_id')!r} is not its folder's {path.parent.name!r}"
    elif not isinstance(raw.get("metrics"), dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw["metrics"].values()):
        problem = "'metrics' is not a mapping of names to numbers"
    elif raw.get("steps") is not None and (not isinstance(raw["steps"], int) or isinstance(raw["steps"], bool)
                                           or raw["steps"] < 0):
        problem = "'steps' is not a non-negative integer"  # absent only in a result collected from W&B
    if problem:
        raise StoreError(f"{path} is not a valid result: {problem}; move it aside to redo this run")
    return raw


STATUSES = ("pending", "submitted", "running", "failed", "cancelled", "done")


@dataclass
class RunState:
    status: str  # one of STATUSES
    job_id: str | None = None
    launcher: str | None = None
    step: int | None = None
    total_steps: int | None = None
    message: str = ""
    host: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    updated: float = 0.0

    @classmethod
    def parse(cls, raw) -> "RunState | None":
        """state.json is a progress note, not a record: one of an unexpected shape is ignored (the next
        writer replaces it) rather than trusted or fatal."""
        if not isinstance(raw, dict) or raw.get("status") not in STATUSES:
            return None
        kinds = {"job_id": str, "launcher": str, "step": int, "total_steps": int, "message": str, "host": str, "pid": int,
                 "pid_start": int, "updated": (int, float)}
        fields = {k: raw[k] for k, kind in kinds.items()
                  if isinstance(raw.get(k), kind) and not isinstance(raw.get(k), bool)}
        return cls(raw["status"], **fields)


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
        path = self.root / cell_id
        # A cell folder that is a link would send this run's writes (and a teammate's reads) out of
        # the store, wherever the link points.
        if path.is_symlink():
            raise StoreError(f"{path} is a symbolic link; a cell folder must be a real folder inside the store")
        return path

    def claims(self, cell_id: str) -> CellClaims:
        return CellClaims(self.run_dir(cell_id), atomic_write_json)

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.run_dir(cell_id) / "checkpoints" / "last.ckpt"

    # ---- results
    def result(self, cell_id: str) -> dict | None:
        path = self.run_dir(cell_id) / "result.json"
        raw = read_json(path)
        return None if raw is None else check_result(path, raw)

    def is_done(self, cell_id: str) -> bool:
        return self.result(cell_id) is not None

    def write_result(self, cell_id: str, result: dict) -> bool:
        """Write result.json once. Returns False (and writes nothing) if it already exists."""
        path = self.run_dir(cell_id) / "result.json"
        if self.result(cell_id) is not None:
            return False
        atomic_write_json(path, result)
        self.set_state(cell_id, "done", step=result.get("steps"))
        # A finished run resumes from nothing; last.ckpt stays as the weights other cells start from.
        (self.run_dir(cell_id) / "checkpoints" / "prev.ckpt").unlink(missing_ok=True)
        return True

    def results(self) -> list[dict]:
        """Every valid result. One that cannot be read is skipped with a warning naming it, so one bad
        file in a shared store does not hide everyone else's results from a report."""
        if not self.root.exists():
            return []
        found = []
        for d in sorted(self.root.iterdir()):
            if d.is_symlink() or not d.is_dir():
                continue
            try:
                r = self.result(d.name)
            except StoreError as exc:
                print(f"repro: warning: skipped {exc}", file=sys.stderr)
                continue
            if r is not None:
                found.append(r)
        return found

    def clean_temporaries(self, cell_id: str) -> int:
        """Remove temporary files a killed writer left in this run's folder; returns how many."""
        run = self.run_dir(cell_id)
        stale = [*run.glob(".*.tmp"), *run.glob("checkpoints/.*.tmp"), *run.glob("claims/.*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    # ---- config and state
    def write_config(self, cell_id: str, config: dict) -> None:
        path = self.run_dir(cell_id) / "config.json"
        if _read_or_none(path) != json.loads(json.dumps(config, default=str)):
            atomic_write_json(path, config)

    def config(self, cell_id: str) -> dict | None:
        return read_json(self.run_dir(cell_id) / "config.json")

    def state(self, cell_id: str) -> RunState | None:
        if self.is_done(cell_id):
            return RunState("done")
        # A progress note we cannot read counts as none.
        return RunState.parse(_read_or_none(self.run_dir(cell_id) / "state.json"))

    def set_state(self, cell_id: str, status: str, **fields) -> RunState:
        old = RunState.parse(_read_or_none(self.run_dir(cell_id) / "state.json"))
        keep = {k: getattr(old, k) for k in ("job_id", "launcher") if old is not None and getattr(old, k) is not None}
        state = RunState(status=status, **{**keep, **fields}, host=socket.gethostname(), pid=os.getpid(),
                         pid_start=process_start_time(os.getpid()), updated=time.time())
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
        """Another live process trains this cell (it holds the claim), or a launcher queued it."""
        if self.claims(cell_id).holder() is not None:
            return True
        state = self.state(cell_id)
        if state is None or state.status != "submitted":
            return False
        if state.launcher == "slurm":
            return True  # queued in SLURM; `reclaim_dead_jobs` asks SLURM about jobs that died
        # Queued by a Ray driver: in flight while that driver lives.
        if state.host == socket.gethostname() and state.pid_start is not None:
            return process_start_time(state.pid) == state.pid_start and state.pid != os.getpid()
        return time.time() - state.updated < stale_after_s


def _read_or_none(path: Path):
    try:
        return read_json(path)
    except StoreError:
        return None
