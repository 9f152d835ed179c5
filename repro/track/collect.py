"""`repro collect` and `repro sync`: bring runs logged elsewhere into the results store.

collect: runs logged from machines without a shared filesystem exist only in W&B. Each finished
W&B run carries the cell's resolved config (incl. cell_id) as its config and the final metrics in
its summary (`final/<metric>`, written by repro.train.run). `collect_runs` maps those runs to
store results: one per cell id, never over a result already in the store.

sync: offline runs (`<store>/<cell>/wandb/offline-run-*`) are uploaded with `wandb sync`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from repro.spec.cells import canonical_json
from repro.store import Store

IDENTITY_KEYS = ("paper", "model", "args", "data", "train", "seed", "init_from")
FINAL_PREFIX, VAL_PREFIX = "final/", "val/"


@dataclass
class Collected:
    written: list[str] = field(default_factory=list)       # cell ids now in the store
    already_done: list[str] = field(default_factory=list)  # cells the store already had
    duplicates: list[str] = field(default_factory=list)    # W&B run ids dropped for another run of the same cell
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (W&B run id, why)


def _plain(value):
    """W&B config values sometimes come wrapped as {"value": v, "desc": ...}."""
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
        return value["value"]
    return value


def _hash(obj: dict) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def _source_changes(logged) -> dict:
    """The source-change fields a run logged (only those keys: the summary is not trusted to name
    others); none for a run logged before they were recorded."""
    if not hasattr(logged, "get"):
        return {}
    return {k: logged.get(k) for k in ("source_changes", "source_changes_total") if logged.get(k) is not None}


def result_from_run(run) -> tuple[dict | None, str]:
    """(result.json for the store, "") or (None, why the run cannot be used)."""
    if getattr(run, "state", None) != "finished":
        return None, f"state {getattr(run, 'state', None)!r}, not finished"
    config = {k: _plain(v) for k, v in dict(run.config or {}).items()}
    if not config.get("cell_id") or any(k not in config for k in IDENTITY_KEYS):
        return None, "config is not a repro cell config (no cell_id or identity fields)"
    identity = {k: config[k] for k in IDENTITY_KEYS}
    # The id is recomputed, not trusted: a config edited in the W&B UI must not land in a cell.
    if _hash(identity) != config["cell_id"]:
        return None, "config does not hash to its cell_id (edited, or logged by another code version)"
    summary = dict(run.summary or {})
    metrics = {k[len(FINAL_PREFIX):]: float(v) for k, v in summary.items()
               if k.startswith(FINAL_PREFIX) and isinstance(v, (int, float))}
    if not metrics:  # runs logged before final metrics went to the summary: the last val/ logs
        metrics = {k[len(VAL_PREFIX):]: float(v) for k, v in summary.items()
                   if k.startswith(VAL_PREFIX) and isinstance(v, (int, float))}
    if not metrics:
        return None, "summary has no final/ or val/ metrics"
    # group_key is recomputed too: the W&B mirror scrubs config keys containing "key".
    group_key = _hash({k: v for k, v in identity.items() if k != "seed"})
    return {
        "cell_id": config["cell_id"], "group_key": group_key, "table": config.get("table"),
        "row": config.get("row"), "column": config.get("column"), "paper": config["paper"],
        "model": config["model"], "args": config["args"], "seed": config["seed"],
        "preset": config.get("preset"), "proxy": bool(config.get("proxy", False)), "data": config["data"],
        "metrics": metrics, "complexity": None,
        "steps": summary.get("final_steps", summary.get("trainer/global_step")),
        "git_commit": summary.get("final_git_commit", "unknown"),
        **_source_changes(summary.get("final_source_changes")),
        "hardware": summary.get("final_hardware") or {"host": "unknown (collected from W&B)"},
        "collected_from": {"wandb_run": getattr(run, "path", None) or run.id, "group": getattr(run, "group", None)},
    }, ""


def collect_runs(runs, store: Store) -> Collected:
    """Write one result per cell id that the store does not have yet. Of several finished W&B runs
    of one cell (e.g. logged twice), the one with the most steps wins; ties go to the lowest run id,
    so collecting twice gives the same store."""
    out = Collected()
    best: dict[str, tuple[dict, object]] = {}
    for run in runs:
        result, why = result_from_run(run)
        if result is None:
            out.skipped.append((run.id, why))
            continue
        cell_id = result["cell_id"]
        rank = (-(result["steps"] or 0), str(run.id))
        if cell_id in best:
            other_rank = (-(best[cell_id][0]["steps"] or 0), str(best[cell_id][1].id))
            loser = run if rank > other_rank else best[cell_id][1]
            out.duplicates.append(str(loser.id))
            if rank > other_rank:
                continue
        best[cell_id] = (result, run)
    for cell_id, (result, _) in sorted(best.items()):
        if store.is_done(cell_id):
            out.already_done.append(cell_id)
            continue
        store.write_config(cell_id, {k: result[k] for k in ("cell_id", "table", "row", "column", "preset", "paper",
                                                          "model", "args", "seed", "data")})
        if store.write_result(cell_id, result):
            out.written.append(cell_id)
        else:
            out.already_done.append(cell_id)
    return out


def collect(args) -> int:
    """`repro collect --entity E --project P [--group G]`."""
    import wandb

    from repro.errors import ConfigError

    path = f"{args.entity}/{args.project}" if args.entity else args.project
    filters = {"state": "finished"}
    if args.group:
        filters["group"] = args.group
    try:
        runs = list(wandb.Api().runs(path, filters=filters))
    except Exception as exc:  # no login, no network, unknown project: one line, not a traceback
        raise ConfigError(f"cannot list W&B runs of {path}: {exc}") from None
    store = Store(args.store)
    store.check_writable()
    done = collect_runs(runs, store)
    print(f"collected {len(done.written)} new results into {store.root}; {len(done.already_done)} already there; "
          f"{len(done.duplicates)} duplicate W&B runs dropped; {len(done.skipped)} skipped")
    for run_id, why in done.skipped:
        print(f"  skipped {run_id}: {why}")
    return 0


def offline_runs(store: Store) -> list[Path]:
    """Offline W&B run folders of the store that `wandb sync` has not uploaded yet."""
    if not store.root.exists():
        return []
    found = sorted(store.root.glob("*/wandb/offline-run-*"))
    return [p for p in found if p.is_dir() and not any(p.glob("*.wandb.synced"))]


def sync(args) -> int:
    """`repro sync [--dry-run]`: upload the store's offline runs."""
    store = Store(args.store)
    pending = offline_runs(store)
    if not pending:
        print(f"no offline W&B runs to sync under {store.root}")
        return 0
    for p in pending:
        print(p)
    if args.dry_run:
        print(f"{len(pending)} offline runs would be synced (dry run)")
        return 0
    # The wandb next to this interpreter, so the venv's version is the one that uploads.
    exe = Path(sys.executable).with_name("wandb")
    cmd = [str(exe) if exe.exists() else (shutil.which("wandb") or "wandb"), "sync", *map(str, pending)]
    return subprocess.run(cmd, check=False).returncode
