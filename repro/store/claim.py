"""Who trains a cell: an exclusive claim with a lease, safe on NFS and Lustre.

A process claims a cell by creating `<cell>/claims/<n>.json` with O_CREAT|O_EXCL, which local
filesystems, NFSv3+ and Lustre make atomic across nodes: of two processes creating one name, exactly
one succeeds. The claim with the highest n is the current one. To take over a dead or released claim
n, a process creates n+1, again exclusively, so two processes that find the same dead owner cannot
both win, and no file is ever deleted or renamed under a reader.

A claim is live while its owner is. On the owner's own host (same hostname and boot) that is known
exactly: the process with that pid *and that start time* exists, so a pid the kernel reused for
another process does not keep a cell in flight. From another host only the lease can tell: the
owner renews it every `lease_s / 4` seconds from a background thread, and a claim not renewed for
`lease_s` seconds is dead. A SLURM job requeued under the same job id takes over its own claim at
once (SLURM killed the previous attempt before starting this one).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LEASE_ENV = "REPRO_CLAIM_LEASE_S"
DEFAULT_LEASE_S = 120.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if no such (live) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] in ("Z", "X"):  # a zombie or dead task has finished its work
        return None
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


@dataclass
class Claim:
    number: int
    host: str
    boot_id: str
    pid: int
    pid_start: int | None
    slurm_job: str | None
    lease_s: float
    renewed: float
    released: bool = False

    def owner(self) -> str:
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job}"

    def is_ours(self) -> bool:
        return (self.host, self.boot_id, self.pid, self.pid_start) == _me()

    def is_live(self, now: float | None = None) -> bool:
        if self.released:
            return False
        if self.host == socket.gethostname() and self.boot_id == _boot_id():
            if self.pid_start is None:  # written where there is no /proc: the pid alone must do
                return _pid_exists(self.pid)
            return process_start_time(self.pid) == self.pid_start
        if self.slurm_job and self.slurm_job == slurm_job_id():
            return False  # our own job, requeued: its previous attempt is gone
        return (now or time.time()) - self.renewed < self.lease_s


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _me() -> tuple:
    return socket.gethostname(), _boot_id(), os.getpid(), process_start_time(os.getpid())


def slurm_job_id() -> str | None:
    """The id `squeue -j` knows this job by: `<array id>_<task>` for an array task."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class CellClaims:
    """The claims folder of one cell."""

    def __init__(self, run_dir: Path, write_json):
        self.folder = Path(run_dir) / "claims"
        self._write_json = write_json  # the store's atomic, umask-respecting writer

    def current(self) -> Claim | None:
        """The newest claim; an unreadable or malformed one counts as dead (its number still counts)."""
        numbers = sorted(self._numbers(), reverse=True)
        if not numbers:
            return None
        n = numbers[0]
        try:
            raw = json.loads((self.folder / f"{n}.json").read_text())
            return Claim(**{k: raw[k] for k in Claim.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return Claim(n, "", "", 0, None, None, 0.0, 0.0, released=True)

    def holder(self) -> Claim | None:
        """The live claim of another process, if any."""
        claim = self.current()
        return claim if claim is not None and claim.is_live() and not claim.is_ours() else None

    def acquire(self, lease_s: float | None = None) -> Claim | None:
        """Claim the cell; None if another live process holds it."""
        lease_s = lease_s or float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            current = self.current()
            if current is not None and current.is_live() and not current.is_ours():
                return None
            host, boot, pid, start = _me()
            claim = Claim((current.number + 1) if current else 0, host, boot, pid, start, slurm_job_id(), lease_s, time.time())
            try:
                fd = os.open(self.folder / f"{claim.number}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                continue  # someone else took this number first: look again
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(asdict(claim)))
                f.flush()
                os.fsync(f.fileno())
            return claim

    def renew(self, claim: Claim) -> bool:
        """Extend the lease; False if another process has taken the cell over."""
        if (self.folder / f"{claim.number + 1}.json").exists():
            return False
        claim.renewed = time.time()
        self._write_json(self.folder / f"{claim.number}.json", asdict(claim))
        return True

    def release(self, claim: Claim) -> None:
        if (self.folder / f"{claim.number + 1}.json").exists():
            return  # no longer ours to release
        claim.released = True
        self._write_json(self.folder / f"{claim.number}.json", asdict(claim))

    def _numbers(self):
        try:
            names = os.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]


class LeaseKeeper:
    """Renews a claim in the background while a cell trains; `lost` turns True if it was taken over."""

    def __init__(self, claims: CellClaims, claim: Claim):
        self.claims, self.claim = claims, claim
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="repro-claim-lease", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.claim.lease_s / 4):
            try:
                if not self.claims.renew(self.claim):
                    self.lost = True
                    return
            except OSError:
                pass  # a transient filesystem error: the next renewal may succeed, the lease covers the gap

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.claims.release(self.claim)
        except OSError:
            pass  # the process is exiting anyway: on this host its pid marks the claim dead
