"""`repro run <table> --launcher slurm`: one SLURM job per cell (one job array per call), via submitit.

The command returns as soon as `sbatch` has accepted the array and prints the job ids; each job
runs `repro.train.run.run_cell` for one cell, in the project's Python (`sys.executable`), with the
submitting shell's environment (sbatch's default `--export=ALL`: SLURM_CONF, REPRO_WANDB,
REPRO_DATA_ROOT, WANDB_* reach the job). A cell is submitted only when it is neither done nor in
flight; a cell whose recorded job SLURM no longer runs (cancelled, failed, forgotten) is submitted
again.

Who owns the signals (exactly one owner per signal):
- submitit owns preemption and time limits: jobs get `--signal=USR2@120` and `--requeue`; on USR2
  submitit calls `CellJob.checkpoint`, which resubmits the same cell, and requeues the job.
  Lightning's own SLURM auto-requeue (SIGUSR1) is switched off: the Trainer gets
  `SLURMEnvironment(auto_requeue=False)`.
- SIGTERM (what `scontrol requeue`, `scancel` and preemption send KillWait seconds before SIGKILL)
  belongs to `run_cell`: it saves a checkpoint after the current step and stops without a result.
Either way the restarted job finds the same run folder (the cell id), resumes from
`checkpoints/last.ckpt` with the same W&B id, and writes result.json once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from submitit.helpers import Checkpointable

from repro.errors import CellBusy, ConfigError
from repro.launch import Plan
from repro.spec.cells import Cell
from repro.store import Store

# SLURM job states, grouped by what they mean for a cell.
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED",
          "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT"}
RUNNING = {"RUNNING", "COMPLETING"}
CANCELLED = {"CANCELLED"}
FAILED = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


class CellJob(Checkpointable):
    """What a SLURM job runs: one cell, found again by id in its table (models imported by name)."""

    def __init__(self, table_ref: str, preset: str, seeds: int, overrides: dict, cell_id: str, store_root: str,
                 data_root: str | None, wandb_mode: str | None, accelerator: str, devices: int, num_nodes: int):
        self.table_ref, self.preset, self.seeds, self.overrides = table_ref, preset, seeds, overrides
        self.cell_id, self.store_root, self.data_root, self.wandb_mode = cell_id, store_root, data_root, wandb_mode
        self.accelerator, self.devices, self.num_nodes = accelerator, devices, num_nodes

    def __call__(self) -> dict:
        from pytorch_lightning.plugins.environments import SLURMEnvironment

        from repro.spec.cells import find_cell
        from repro.train.run import RunOptions, run_cell

        table, cell = find_cell(self.table_ref, self.preset, self.seeds, self.overrides, self.cell_id)
        opts = RunOptions(store=Store(self.store_root), data_root=self.data_root, wandb_mode=self.wandb_mode,
                          accelerator=self.accelerator, devices=self.devices, num_nodes=self.num_nodes,
                          plugins=[SLURMEnvironment(auto_requeue=False)])  # submitit owns requeue (USR2)
        try:
            return run_cell(table, cell, opts)["metrics"]
        except CellBusy as exc:  # another live process trains it: this job has nothing to do
            print(f"repro: {exc}", flush=True)
            return {}

    # Checkpointable.checkpoint (resubmit self unchanged) is all preemption needs: the state to
    # resume from is the run folder's last.ckpt, not anything held in this object.


def slurm_minutes(text: str) -> int:
    """SLURM's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ConfigError(f"--time {text!r}: expected a SLURM time such as 90, 4:00:00 or 1-00:00:00")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    return max(1, -(-seconds // 60))


def query_jobs(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM's state of each job ("" when SLURM has forgotten it); None when no SLURM answers."""
    if not job_ids:
        return {}
    conf = os.environ.get("SLURM_CONF")
    if shutil.which("squeue") is None or (conf and not Path(conf).is_file()):
        return None  # (with a missing SLURM_CONF, squeue would retry for a minute before failing)
    states: dict[str, str] = {}
    try:
        proc = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T"],
                              capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            states[job] = state
    elif "invalid job id" not in proc.stderr.lower():
        return None  # no controller reachable (no SLURM_CONF, daemon down)
    for job in job_ids:  # one unknown id fails the whole squeue call; finished jobs may linger in scontrol
        if job not in states:
            states[job] = _scontrol_state(job)
    return states


def _scontrol_state(job_id: str) -> str:
    try:
        proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=15,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"\bJobState=(\S+)", proc.stdout) if proc.returncode == 0 else None
    return m.group(1) if m else ""


def reclaim_dead_jobs(todo: Plan, store: Store) -> list[Cell]:
    """Cells marked submitted/running by a SLURM job that SLURM no longer runs: they need a new job."""
    owned = {c.id: store.state(c.id) for c in todo.in_flight}
    owned = {cid: s for cid, s in owned.items() if s and s.launcher == "slurm" and s.job_id}
    states = query_jobs(sorted({s.job_id for s in owned.values()}))
    if not states:
        return []
    dead = [c for c in todo.in_flight if c.id in owned and states.get(owned[c.id].job_id, "") not in QUEUED | RUNNING]
    for cell in dead:
        todo.in_flight.remove(cell)
        todo.todo.append(cell)
    return dead


def make_executor(args, store: Store, cpus_per_task: int):
    import submitit

    executor = submitit.SlurmExecutor(folder=store.root / ".slurm" / "%j", python=sys.executable)
    params = {"job_name": "repro", "time": slurm_minutes(args.time), "nodes": args.nodes,
              "ntasks_per_node": args.gpus or args.cpus or 1, "cpus_per_task": cpus_per_task,
              "signal_delay_s": 120, "additional_parameters": {"requeue": True}}
    if args.partition:
        params["partition"] = args.partition
    if args.account:
        params["account"] = args.account
    if args.gpus:  # never ask for GPUs otherwise: clusters without GRES refuse the job
        params["gpus_per_node"] = args.gpus
    executor.update_parameters(**params)
    return executor


def check_controller_reachable(timeout_s: float = 10.0) -> None:
    """Ask slurmctld before touching the store, so an unreachable cluster is one clear line."""
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():  # scontrol would retry for a minute before saying so
        raise ConfigError(f"--launcher slurm: no SLURM controller reachable (SLURM_CONF={conf} does not exist)")
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise ConfigError("--launcher slurm: `scontrol` is not on PATH; run on a SLURM login node") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"--launcher slurm: the SLURM controller did not answer `scontrol ping` within {timeout_s:.0f} s") from None
    if out.returncode != 0 or "UP" not in out.stdout:
        detail = [line for line in (out.stderr or out.stdout).splitlines() if line.strip()]
        raise ConfigError("--launcher slurm: no SLURM controller reachable "
                          f"({detail[-1].strip() if detail else 'scontrol ping failed'}); check SLURM_CONF or run on a login node")


def launch_slurm(args, table, todo: Plan, store: Store) -> int:
    from repro.cli import overrides_of

    for cell in reclaim_dead_jobs(todo, store):
        print(f"  {cell.id} {cell.row} | {cell.column}: its job is gone from the queue; submitting again")
    if not todo.todo:
        print(f"{table.id}: nothing to submit ({todo.summary()})")
        return 0
    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm: `sbatch` is not on PATH; run on a SLURM login node")
    check_controller_reachable()
    workers = max(1, todo.todo[0].preset.train.model_dump().get("num_workers") or 1)
    executor = make_executor(args, store, cpus_per_task=workers)
    jobs_for = [CellJob(table_ref=args.table, preset=args.preset, seeds=args.seeds, overrides=overrides_of(args)[0],
                        cell_id=cell.id, store_root=str(store.root), data_root=args.data_root, wandb_mode=args.wandb,
                        accelerator="gpu" if args.gpus else "cpu", devices=args.gpus or args.cpus or 1,
                        num_nodes=args.nodes) for cell in todo.todo]
    for cell in todo.todo:  # claim the cells before sbatch, so a concurrent `repro run` skips them
        store.set_state(cell.id, "submitted", job_id=None, launcher="slurm", step=None)
    try:
        with executor.batch():
            jobs = [executor.submit(job) for job in jobs_for]
    except Exception as exc:  # sbatch refused: give the cells back
        for cell in todo.todo:
            store.set_state(cell.id, "pending", job_id=None, launcher=None)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(f"sbatch refused the jobs: {lines[-1] if lines else type(exc).__name__}") from None
    for cell, job in zip(todo.todo, jobs):
        state = store.state(cell.id)
        if state is not None and state.status == "submitted":  # the job may already be running
            store.set_state(cell.id, "submitted", job_id=job.job_id, launcher="slurm")
        print(f"  {cell.id}  {cell.row:>12} | {cell.column:<12} seed {cell.seed}  -> job {job.job_id}")
    print(f"submitted {len(jobs)} job(s) (array {jobs[0].job_id.split('_')[0]}); logs in {Path(store.root) / '.slurm'}; "
          f"follow with: repro status {args.table} --preset {args.preset} --store {store.root}")
    return 0
