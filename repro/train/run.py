"""Run one cell end to end: model + data from the cell, Trainer, checkpoints, result.json.

Re-running a finished cell does nothing; re-running a killed one resumes from its last
checkpoint; only global rank 0 writes the result, once.

SIGTERM (what `scancel` and `scontrol requeue` send first, KillWait seconds before SIGKILL) makes a
single-process run save a checkpoint at the end of the current step and stop without a result, so
the requeued job loses no steps. Multi-process (DDP) runs rely on the periodic checkpoints: a save
is collective and ranks would not see the signal at the same step.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

from repro.complexity import cell_complexity
from repro.errors import ConfigError, RunFailed
from repro.spec.cells import Cell, build_model
from repro.spec.load import Table
from repro.store import Store
from repro.store.claim import slurm_job_id


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
    strategy: str | None = None  # Lightning's default ("ddp" when devices * nodes > 1) when None
    plugins: list = field(default_factory=list)  # e.g. SLURMEnvironment(auto_requeue=False) under submitit
    # The fast training path (`repro run --fast`): channels_last model and batches; on a GPU also
    # bf16 autocast (unless a precision is given) and torch.compile. fp32 on CPU stays faithful up to
    # float rounding; the result records what ran (`train_path`).
    fast: bool = False
    # A cell another live process is training: skip it (False) or wait for it to finish or die (True).
    wait: bool = False
    # Ignore the cell's checkpoints and train from step 0.
    restart: bool = False
    # Intra-op CPU threads per process; None sizes them from the CPUs this process may use (repro/train/threads.py).
    threads: int | None = None


class Stopped(Exception):
    """SIGTERM arrived; a checkpoint was saved and the run stopped without a result."""


def launched_as_rank_zero() -> bool:
    """Before the Trainer exists: is this process global rank 0 of a multi-process run?

    Lightning's script launcher gives children LOCAL_RANK/NODE_RANK; srun gives SLURM_PROCID.
    """
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")
    # Lightning notices `srun` on PATH and suggests it; runs here are started by our launchers.
    warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")
    # Resuming mid-epoch is how every resume here works (max_steps runs), and validation metrics are
    # gathered over ranks by the module itself, so Lightning's advice on both is noise.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
    warnings.filterwarnings("ignore", message=".*torch.distributed.nn.functional.all_gather is deprecated.*")
    # The module's on_after_batch_transfer (the fast path's channels_last batches) is meant to win.
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer` in `LightningModule`.*")


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


def updates_per_epoch(train_len: int, world_batch: int) -> int:
    return max(1, train_len // world_batch)  # the train loader drops its last partial batch


def total_steps(recipe, train_len: int, world_batch: int) -> int:
    if recipe.max_steps:
        return recipe.max_steps
    return recipe.epochs * updates_per_epoch(train_len, world_batch)


def classification_parts(table: Table, cell: Cell, opts: RunOptions, per_device_batch: int, world: int):
    """(datamodule, LightningModule, total steps, extra result fields) of a classification cell."""
    from repro.train.data import ClassificationData
    from repro.train.recipe import apply_batchnorm

    recipe = cell.preset.train
    if (recipe.mixup or recipe.cutmix) and recipe.mixup_mode == "batch" and per_device_batch % 2:
        raise ConfigError(f"{cell.id}: batch-mode mixup/cutmix needs an even batch per process, got {per_device_batch}")
    data = ClassificationData(cell.preset.data.model_dump(), per_device_batch, recipe, opts.data_root).prepare()
    steps = total_steps(recipe, len(data.train_set), per_device_batch * world)
    model = build_model(table, cell)
    apply_batchnorm(model, recipe)
    module = module_class(table)(model, recipe, steps, updates_per_epoch(len(data.train_set), per_device_batch * world))
    return data, module, steps, {}


def use_fast_path(module, table: Table, opts: RunOptions) -> dict:
    """Switch a classification module to the fast path in place; return what it changed."""
    import torch

    if table.spec.task != "classification":
        raise ConfigError(f"--fast: {table.id} is a {table.spec.task} table; the fast path covers classification only")
    module.model.to(memory_format=torch.channels_last)
    module.channels_last = True
    # Compiling a training step costs 30-100 s on a small CPU, more than a proxy cell's training,
    # so only GPUs compile. nn.Module.compile keeps the state_dict keys (checkpoints stay loadable).
    compiled = opts.accelerator == "gpu"
    if compiled:
        module.model.compile()
    precision = opts.precision or ("bf16-mixed" if opts.accelerator == "gpu" else "32-true")
    return {"fast": True, "memory_format": "channels_last", "compile": compiled, "precision": precision}


def task_parts(table: Table, cell: Cell, opts: RunOptions, per_device_batch: int, world: int):
    if table.spec.task == "detection":
        from repro.train.detection import detection_parts

        return detection_parts(table, cell, opts, per_device_batch, world)
    return classification_parts(table, cell, opts, per_device_batch, world)


def run_cell(table: Table, cell: Cell, opts: RunOptions) -> dict:
    store = opts.store
    done = store.result(cell.id)
    if done is not None:
        return done
    if not launched_as_rank_zero():  # DDP ranks > 0 train under rank 0's claim and touch no files
        return _train_cell(table, cell, opts, keeper=None)
    claim = _claim_cell(store, cell, opts.wait)
    done = store.result(cell.id)  # the process we waited for, or one that just finished, may have done it
    if claim is None or done is not None:
        if claim is not None:
            store.claims(cell.id).release(claim)
        return done
    from repro.store.claim import LeaseKeeper

    with LeaseKeeper(store.claims(cell.id), claim) as keeper:
        return _train_cell(table, cell, opts, keeper)


def _claim_cell(store: Store, cell: Cell, wait: bool, poll_s: float = 2.0):
    """Our claim on the cell; with `wait`, once its holder has let go; None if a result appeared meanwhile."""
    from repro.errors import CellBusy

    claims = store.claims(cell.id)
    while True:
        claim = claims.acquire()
        if claim is not None:
            return claim
        if not wait:
            holder = claims.holder()
            raise CellBusy(f"{cell.id} is being trained by {holder.owner() if holder else 'another process'}; "
                           "skipped (pass --wait to wait for it)")
        time.sleep(poll_s)
        if store.result(cell.id) is not None:
            return None


def _train_cell(table: Table, cell: Cell, opts: RunOptions, keeper) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from repro.track.wandb_mirror import make_logger
    from repro.train.callbacks import AtomicCheckpoint, HoldClaim, PreciseBN, RecordStep, StepReporter, resume_point
    from repro.train.provenance import git_commit, hardware, source_changes

    quiet_lightning()
    store = opts.store
    run_dir = store.run_dir(cell.id)
    rank_zero = keeper is not None
    # Everything a cell needs that can be checked without training is checked before the cell is
    # marked running: a spec error found after training would leave it to be retrained on every rerun.
    complexity = cell_complexity(table, cell)
    if rank_zero:
        store.clean_temporaries(cell.id)  # we hold the claim: leftovers are from a killed writer
        store.write_config(cell.id, cell.resolved_config())
        if opts.restart:
            for old in ("last.ckpt", "prev.ckpt"):
                (run_dir / "checkpoints" / old).unlink(missing_ok=True)
        store.set_state(cell.id, "running", step=0, **_job_fields(store.state(cell.id)))
    owns_state = lambda: rank_zero and not keeper.lost  # noqa: E731  (a taken-over run leaves the state to its new owner)
    started = time.time()
    stop_request = _SigtermFlag()
    try:
        from repro.train.threads import configure_threads

        task_fields = configure_threads(opts.threads, processes=opts.devices)
        recipe = cell.preset.train
        world = opts.devices * opts.num_nodes
        per_device_batch = max(1, recipe.batch_size // world)
        if per_device_batch * world != recipe.batch_size and rank_zero:
            print(f"repro: warning: {cell.id}: global batch {per_device_batch * world} ({per_device_batch} x {world} processes) "
                  f"differs from the recipe's {recipe.batch_size}, which the world size does not divide", file=sys.stderr)
        pl.seed_everything(cell.seed, workers=True, verbose=False)
        data, module, steps, more_fields = task_parts(table, cell, opts, per_device_batch, world)
        task_fields.update(more_fields)
        if opts.fast:
            task_fields["train_path"] = use_fast_path(module, table, opts)
        ckpt = store.checkpoint_path(cell.id)
        every = recipe.checkpoint_every_steps or max(1, steps // 10)
        saver = AtomicCheckpoint(ckpt, every)
        callbacks = [saver, RecordStep(store, cell.id), *opts.extra_callbacks]
        if keeper is not None:
            callbacks.append(HoldClaim(keeper))
        if world == 1 and stop_request.install():
            callbacks.append(SaveAndStopOnSigterm(saver, stop_request))
        if opts.progress:
            callbacks.append(StepReporter(opts.progress))
        if recipe.precise_bn_batches:
            callbacks.append(PreciseBN(recipe.precise_bn_batches, seed=cell.seed))
        eval_every = recipe.eval_every_steps
        trainer = pl.Trainer(
            max_steps=steps, max_epochs=-1,
            accelerator=opts.accelerator, devices=opts.devices, num_nodes=opts.num_nodes,
            precision=opts.precision or ("bf16-mixed" if opts.fast and opts.accelerator == "gpu" else None), **({"strategy": opts.strategy} if opts.strategy else {}),
            plugins=opts.plugins or None,
            logger=make_logger(cell, run_dir, opts.wandb_mode) or False,
            callbacks=callbacks,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, check_val_every_n_epoch=None,
            gradient_clip_val=recipe.clip_grad, gradient_clip_algorithm=recipe.clip_mode if recipe.clip_grad else None,
            # A progressive-resolution recipe rebuilds its train loader at each epoch's size.
            reload_dataloaders_every_n_epochs=1 if recipe.image_size_schedule else 0,
            val_check_interval=eval_every if eval_every and eval_every < steps else 10**12,
            log_every_n_steps=max(1, min(50, steps // 10)),
            default_root_dir=str(run_dir),
        )
        resume, resumed_from = resume_point(ckpt.parent, cell.id, warn=lambda line: print(line, file=sys.stderr))
        try:
            trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True)
        except SIGTERMException:
            # Lightning raises this after the step's callbacks, i.e. after SaveAndStopOnSigterm
            # saved the checkpoint: a stop we asked for, not a failure.
            if not stop_request.seen:
                raise
        if stop_request.seen:
            raise Stopped(f"SIGTERM at step {trainer.global_step}: checkpoint saved, no result written")
        metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
        _summarize_wandb(metrics, int(trainer.global_step))
        rank_metrics = _gather_from_ranks(trainer, metrics)
    except Stopped as exc:
        if owns_state():  # a requeued job still owns the cell; `repro status` tells a cancelled one
            store.set_state(cell.id, "submitted" if slurm_job_id() else "pending", message=str(exc))
        raise
    except RunFailed as exc:
        if owns_state():
            store.try_set_state(cell.id, "failed", message=str(exc))
        raise
    except BaseException as exc:
        if owns_state() and not isinstance(exc, KeyboardInterrupt):
            store.try_set_state(cell.id, "failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        stop_request.uninstall()
        _finish_wandb()

    result = {
        "cell_id": cell.id, "group_key": cell.group_key, "table": cell.table_id, "row": cell.row, "column": cell.column,
        "paper": cell.paper, "model": cell.model, "args": cell.args, "seed": cell.seed,
        "preset": cell.preset_name, "proxy": cell.preset.proxy,
        "data": cell.preset.data.model_dump(),
        "metrics": {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("val/")},
        "complexity": complexity,
        "steps": int(trainer.global_step), "resumed_from_step": resumed_from,
        "world_size": trainer.world_size, "global_batch": per_device_batch * trainer.world_size,
        "paper_batch": recipe.batch_size,
        **({"rank_metrics": rank_metrics} if trainer.world_size > 1 else {}),
        "wall_time_s": round(time.time() - started, 2),
        "git_commit": git_commit(), **source_changes(), "hardware": hardware(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **task_fields,
    }
    if trainer.is_global_zero:
        if keeper is not None and keeper.lost:
            raise RunFailed(f"{cell.id}: another process took over this cell while it trained; no result written")
        if not store.write_result(cell.id, result):  # the claim makes this unreachable; say so if it ever is not
            print(f"repro: warning: {cell.id} was finished by another process meanwhile; this run's result discarded",
                  file=sys.stderr)
    return result


def _job_fields(previous) -> dict:
    """Which job runs the cell, for `repro status`: the SLURM job we are in; else keep the id another
    launcher recorded (a Ray task's), but drop a SLURM job's id when a run outside SLURM took over."""
    job = slurm_job_id()
    if job:
        return {"job_id": job, "launcher": "slurm"}
    if previous is not None and previous.launcher == "slurm":
        return {"job_id": None, "launcher": None}
    return {}


def _gather_from_ranks(trainer, metrics: dict) -> list[dict]:
    """Every rank's validation metrics, so a result records that the ranks agreed."""
    import torch.distributed as dist

    if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [metrics]
    gathered = [None] * trainer.world_size
    dist.all_gather_object(gathered, {k: float(v) for k, v in metrics.items()})
    return gathered


class _SigtermFlag:
    """Turns SIGTERM into a flag the training loop checks (a handler must not save mid-step)."""

    def __init__(self):
        self.seen = False
        self._previous = None

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # e.g. a Ray Tune trial thread: signals are the actor's business there
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def _on_sigterm(self, signum, frame):
        self.seen = True

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def SaveAndStopOnSigterm(saver, flag: _SigtermFlag):
    """A callback: after the step during which SIGTERM arrived, save a checkpoint and stop."""
    import pytorch_lightning as pl

    class _SaveAndStop(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if flag.seen and not trainer.should_stop:
                saver.save(trainer)
                trainer.should_stop = True

    return _SaveAndStop()


def _summarize_wandb(metrics: dict, steps: int) -> None:
    """Final metrics and provenance into the W&B run summary: `repro collect` builds the store
    result of a run logged from another machine from them (repro/track/collect.py)."""
    import sys

    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        from repro.train.provenance import git_commit, hardware, source_changes

        final = {f"final/{k.split('/', 1)[1]}": float(v) for k, v in metrics.items() if k.startswith("val/")}
        wandb.run.summary.update({**final, "final_steps": steps, "final_git_commit": git_commit(),
                                  "final_source_changes": source_changes(), "final_hardware": hardware()})


def _finish_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
