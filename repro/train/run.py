"""Run one cell end to end: model + data from the cell, Trainer, checkpoints, result.json.

Re-running a finished cell does nothing; re-running a killed one resumes from its last
checkpoint; only global rank 0 writes the result, once.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

from repro.complexity import cell_complexity
from repro.errors import RunFailed
from repro.spec.cells import Cell, build_model
from repro.spec.load import Table
from repro.store import Store


@dataclass
class RunOptions:
    store: Store
    data_root: str | None = None
    wandb_mode: str | None = None
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    precision: str | None = None
    progress: Callable[[int, int, float | None], None] | None = None
    extra_callbacks: list = field(default_factory=list)


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")
    # Lightning notices `srun` on PATH and suggests it; runs here are started by our launchers.
    warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")


def module_class(table: Table):
    name = f"{table.paper.package}.module"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        from repro.train.module import ClassificationModule

        return ClassificationModule
    return getattr(mod, "LIGHTNING_MODULE")


def total_steps(recipe: dict, train_len: int, world_batch: int) -> int:
    if recipe.get("max_steps"):
        return recipe["max_steps"]
    return recipe["max_epochs"] * max(1, train_len // world_batch)


def run_cell(table: Table, cell: Cell, opts: RunOptions) -> dict:
    import pytorch_lightning as pl
    import torch

    from repro.track.wandb_mirror import make_logger
    from repro.train.callbacks import AtomicCheckpoint, StepReporter
    from repro.train.data import ClassificationData
    from repro.train.provenance import git_commit, hardware

    quiet_lightning()
    store = opts.store
    done = store.result(cell.id)
    if done is not None:
        return done
    run_dir = store.run_dir(cell.id)
    store.write_config(cell.id, cell.resolved_config())
    store.set_state(cell.id, "running", step=0, job_id=os.environ.get("SLURM_JOB_ID"))
    started = time.time()
    try:
        recipe = cell.preset.train.model_dump()
        world = opts.devices * opts.num_nodes
        per_device_batch = max(1, recipe["batch_size"] // world)
        pl.seed_everything(cell.seed, workers=True, verbose=False)
        data = ClassificationData(cell.preset.data.model_dump(), per_device_batch, recipe.get("num_workers", 0), opts.data_root).prepare()
        steps = total_steps(recipe, len(data.train_set), per_device_batch * world)
        model = build_model(table, cell)
        module = module_class(table)(model, recipe, steps)
        ckpt = store.checkpoint_path(cell.id)
        every = recipe.get("checkpoint_every_steps") or max(1, steps // 10)
        callbacks = [AtomicCheckpoint(ckpt, every), *opts.extra_callbacks]
        if opts.progress:
            callbacks.append(StepReporter(opts.progress))
        eval_every = recipe.get("eval_every_steps")
        trainer = pl.Trainer(
            max_steps=steps, max_epochs=-1,
            accelerator=opts.accelerator, devices=opts.devices, num_nodes=opts.num_nodes,
            precision=opts.precision,
            logger=make_logger(cell, run_dir, opts.wandb_mode) or False,
            callbacks=callbacks,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, check_val_every_n_epoch=None,
            val_check_interval=eval_every if eval_every and eval_every < steps else 10**12,
            log_every_n_steps=max(1, min(50, steps // 10)),
            default_root_dir=str(run_dir),
        )
        resume = ckpt if ckpt.exists() else None
        resumed_from = 0
        if resume is not None:
            resumed_from = int(torch.load(resume, map_location="cpu", weights_only=True).get("global_step", 0))
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True)
        metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    except RunFailed as exc:
        store.set_state(cell.id, "failed", message=str(exc))
        raise
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            store.set_state(cell.id, "failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _finish_wandb()

    result = {
        "cell_id": cell.id, "group_key": cell.group_key, "table": cell.table_id, "row": cell.row, "column": cell.column,
        "paper": cell.paper, "model": cell.model, "args": cell.args, "seed": cell.seed,
        "preset": cell.preset_name, "proxy": cell.preset.proxy,
        "data": cell.preset.data.model_dump(),
        "metrics": {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("val/")},
        "complexity": cell_complexity(table, cell),
        "steps": int(trainer.global_step), "resumed_from_step": resumed_from,
        "world_size": trainer.world_size, "global_batch": per_device_batch * trainer.world_size,
        "paper_batch": recipe["batch_size"],
        "wall_time_s": round(time.time() - started, 2),
        "git_commit": git_commit(), "hardware": hardware(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if trainer.is_global_zero:
        store.write_result(cell.id, result)
    return result


def _finish_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(quiet=True)
