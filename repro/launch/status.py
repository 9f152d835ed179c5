"""`repro status <table>`: where each cell stands, from the store and, for SLURM jobs, from SLURM.

The store knows what the runs themselves wrote (running at step N, done, failed). A queued job
writes nothing, and a cancelled or killed one cannot, so for cells handed to SLURM the job's own
state (`squeue`, then `scontrol show job`) decides: queued -> submitted, RUNNING -> running,
CANCELLED -> cancelled, FAILED/TIMEOUT/... -> failed. A cancelled or failed verdict is written back
to the store, so the next `repro run --launcher slurm` submits the cell again. Without a reachable
SLURM the store's last known state is shown, with a note.
"""

from __future__ import annotations

import time
from collections import Counter

from repro.store import Store
from repro.store.store import read_json

ORDER = ("pending", "submitted", "running", "done", "failed", "cancelled")


def cell_statuses(cells, store: Store) -> tuple[dict[str, dict], str]:
    """{cell_id: {status, job_id, step, message}} and a note ("" when SLURM answered or was not needed)."""
    from repro.launch.slurm import CANCELLED, FAILED, QUEUED, RUNNING, query_jobs

    rows, slurm_jobs = {}, {}
    for cell in cells:
        if not cell.runnable or cell.id in rows:
            continue
        state = store.state(cell.id)
        if state is None:
            rows[cell.id] = {"status": "pending", "job_id": None, "step": None, "message": ""}
            continue
        rows[cell.id] = {"status": state.status, "job_id": state.job_id, "step": state.step, "message": state.message,
                         "updated": state.updated, "total": state.total_steps}
        if state.status == "done":  # Store.state() reports just "done"; the job that did it is in state.json
            rows[cell.id]["step"] = rows[cell.id]["total"] = (store.result(cell.id) or {}).get("steps", state.step)
            rows[cell.id]["job_id"] = (read_json(store.run_dir(cell.id) / "state.json") or {}).get("job_id")
        elif state.launcher == "slurm" and state.job_id:
            slurm_jobs[cell.id] = state.job_id
    if not slurm_jobs:
        return rows, ""
    states = query_jobs(sorted(set(slurm_jobs.values())))
    if states is None:
        return rows, "note: SLURM is not reachable (squeue failed); showing the store's last known state"
    for cell_id, job_id in slurm_jobs.items():
        slurm, row = states.get(job_id, ""), rows[cell_id]
        if store.is_done(cell_id):  # finished between the two reads
            row["status"] = "done"
        elif slurm in QUEUED:
            row["status"] = "submitted"
        elif slurm in RUNNING:
            row["status"] = "running"
        elif slurm in CANCELLED | FAILED or (slurm == "COMPLETED" and row["status"] != "done"):
            row["status"] = "cancelled" if slurm in CANCELLED else "failed"
            row["message"] = row["message"] or f"SLURM job {job_id} ended {slurm}"
            if store.state(cell_id).status != row["status"]:
                store.set_state(cell_id, row["status"], message=row["message"], step=row["step"])
        elif not slurm:
            row["message"] = f"SLURM no longer knows job {job_id}; last recorded state shown"
    return rows, ""


def presets_held(table, store: Store, cells_of) -> dict[str, list]:
    """{preset: its cells} for the presets of the table's paper with at least one run folder in the
    store (`cells_of(preset)` expands the table under a preset, with the command's seeds and overrides)."""
    from repro.errors import ReproError

    held = {}
    for preset in table.paper.presets:
        try:
            cells = cells_of(preset)
        except ReproError:  # e.g. a preset this table's task cannot use
            continue
        if any(c.runnable and store.run_dir(c.id).exists() for c in cells):
            held[preset] = cells
    return held


def print_status(table, cells, store: Store, preset: str, note: str = "") -> int:
    rows, slurm_note = cell_statuses(cells, store)
    print(f"{table.id} [preset {preset}]: {len(rows)} runs in {store.root}")
    if note:
        print(f"  ({note})")
    print(f"  {'cell':16}  {'row':>16} | {'column':<12} {'status':<10} {'job':<12} {'step':>11}  note")
    shown = set()
    for cell in cells:
        if not cell.runnable:
            print(f"  {'-':16}  {cell.row:>16} | {cell.column:<12} {cell.skip or 'published only (not built here)'}")
            continue
        if cell.id in shown:
            continue
        shown.add(cell.id)
        r = rows[cell.id]
        step = "" if r["step"] is None else str(r["step"]) + (f"/{r['total']}" if r.get("total") else "")
        age = f"updated {_ago(r['updated'])}" if r.get("updated") and r["status"] == "running" else ""
        print(f"  {cell.id:16}  {cell.row:>16} | {cell.column:<12} {r['status']:<10} {r['job_id'] or '-':<12} {step:>11}  "
              f"{r['message'] or age}".rstrip())
    counts = Counter(r["status"] for r in rows.values())
    print("  " + ", ".join(f"{counts[s]} {s}" for s in ORDER if counts[s]))
    if slurm_note:
        print(slurm_note)
    return 0


def _ago(t: float) -> str:
    s = max(0, int(time.time() - t))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago"
