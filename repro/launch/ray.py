"""`repro run <table> --launcher ray`: every cell a Ray task; blocks until all finish, with progress.

With `--ray-address` the cells go to that cluster (e.g. one started by slurm/ray-cluster.sbatch);
without it a private local cluster is started for this command: its temp dir sits under the store
(not the machine-wide /tmp/ray), no dashboard, and Ray's token auth is off (RAY_AUTH_MODE=disabled),
which a stray ~/.ray/auth_token would otherwise switch on. Each task rebuilds its cell from the table
reference and the cell id (models are imported by name in the worker) and runs `run_cell`, which
writes result.json into the shared store; the report reads the store as usual.

A task takes one device: `--gpus 1` asks Ray for a GPU per task. Multi-device (DDP) runs belong to
`--launcher slurm` or a plain `repro run` on the node: Lightning's DDP launcher re-executes the
command line, which inside a Ray worker is Ray's, not ours.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from repro.errors import CellBusy, ConfigError, RunFailed
from repro.launch import Plan
from repro.store import Store

# Environment a worker needs to behave like the driver (they may run on other machines).
FORWARDED_ENV = ("REPRO_WANDB", "REPRO_DATA_ROOT", "REPRO_PAPERS", "WANDB_MODE", "WANDB_PROJECT", "WANDB_SILENT",
                 "RAY_AUTH_MODE", "OMP_WAIT_POLICY")
UNIX_SOCKET_MAX = 100  # Ray puts sockets under its temp dir; AF_UNIX paths must stay under 108 bytes


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Knock on the head's GCS port first: ray.init retries an absent cluster for minutes."""
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT of a Ray head, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                          "start one with `ray start --head` or omit --ray-address for a local one") from None


def start_ray(address: str | None, num_cpus: int | None, store: Store):
    """Connect to `address`, or start a private local cluster; returns the ray module."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if ray.is_initialized():
        return ray
    if address:
        check_reachable(address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return ray
    temp_dir = store.root / ".ray"
    if len(str(temp_dir)) + 60 > UNIX_SOCKET_MAX:  # deep store path: a short private dir instead
        temp_dir = Path(tempfile.mkdtemp(prefix="repro-ray-"))
    temp_dir.mkdir(parents=True, exist_ok=True)
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), _temp_dir=str(temp_dir),
             include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
    return ray


def run_cell_task(table_ref: str, preset: str, seeds: int, overrides: dict, cell_id: str, store_root: str,
                  data_root: str | None, wandb_mode: str | None, accelerator: str) -> dict:
    """Body of a Ray task: one cell, found again by id (the worker imports the paper's models by name)."""
    from repro.spec.cells import find_cell
    from repro.train.run import RunOptions, run_cell

    table, cell = find_cell(table_ref, preset, seeds, overrides, cell_id)
    opts = RunOptions(store=Store(store_root), data_root=data_root, wandb_mode=wandb_mode, accelerator=accelerator)
    try:
        return run_cell(table, cell, opts)["metrics"]
    except CellBusy as exc:  # another live process trains it; the driver reports it as skipped
        return {"skipped": str(exc)}


def launch_ray(args, table, todo: Plan, store: Store) -> int:
    from tqdm.auto import tqdm

    from repro.cli import overrides_of

    if (args.gpus or 1) > 1 or (args.cpus or 1) > 1 or args.nodes > 1:
        raise ConfigError("--launcher ray runs each cell on one device; for DDP use --launcher slurm "
                          "(or `repro run ... --gpus N` on one node)")
    if not todo.todo:
        print(f"{table.id}: nothing to run ({todo.summary()})")
        return 0
    ray = start_ray(args.ray_address, None, store)
    task = ray.remote(run_cell_task).options(num_cpus=1, num_gpus=1 if args.gpus else 0, max_retries=0)
    overrides = overrides_of(args)[0]
    pending = {}
    for cell in todo.todo:
        ref = task.remote(args.table, args.preset, args.seeds, overrides, cell.id, str(store.root), args.data_root,
                          args.wandb, "gpu" if args.gpus else "cpu")
        store.set_state(cell.id, "submitted", job_id=ref.hex()[:16], launcher="ray")
        pending[ref] = cell
    failures = []
    bar = tqdm(total=len(pending), desc=f"{table.id} (ray)", unit="cell", file=sys.stderr, disable=args.no_progress,
               dynamic_ncols=True)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            outcome = "done"
            try:
                if "skipped" in (ray.get(ready[0]) or {}):
                    outcome = "skipped: in flight elsewhere"
            except Exception as exc:  # RayTaskError wraps the worker's exception; its last line is the message
                lines = [line for line in str(exc).splitlines() if line.strip()]
                failures.append(f"{cell.row} | {cell.column}: {lines[-1] if lines else type(exc).__name__}")
                outcome = "failed"
                known = store.state(cell.id)
                if known is None or known.status != "failed":  # e.g. the worker died before run_cell could say
                    store.set_state(cell.id, "failed", message=failures[-1])
            bar.update(1)
            bar.set_postfix_str(f"{cell.row} | {cell.column} {outcome}")
    finally:
        bar.close()
        ray.shutdown()  # stops the private local cluster; only disconnects from a --ray-address one
        for cell in pending.values():  # interrupted: cells no task will run must not look in flight
            state = store.state(cell.id)
            if state is not None and state.status == "submitted":
                store.set_state(cell.id, "pending", job_id=None, launcher=None)
    for line in failures:
        print(f"repro: failed: {line}", file=sys.stderr)
    if failures:
        raise RunFailed(f"{len(failures)} of {len(todo.todo)} cells failed on Ray (see above); re-run to retry them")
    return 0
