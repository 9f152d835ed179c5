"""Cross-cutting concerns of a run, as Lightning callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl

from repro.errors import RunFailed


class AtomicCheckpoint(pl.Callback):
    """Keep one `last.ckpt`, replaced atomically every N optimizer steps and at the end.

    Written to a temporary name and renamed, so a kill at any moment leaves the previous
    checkpoint intact and loadable; a failed write (full disk, read-only store) is a clear error
    and leaves the previous checkpoint in place.
    """

    def __init__(self, path: Path, every_n_steps: int):
        self.path = Path(path)
        self.every_n_steps = max(1, every_n_steps)

    def save(self, trainer: pl.Trainer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            if trainer.is_global_zero:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
        except OSError as exc:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
            raise RunFailed(
                f"could not write checkpoint {self.path} ({exc.strerror or exc}); "
                "free disk space or pass a writable --store; the previous checkpoint is intact"
            ) from None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module):
        self.save(trainer)


class RecordStep(pl.Callback):
    """Keep `state.json`'s step current, so `repro status` shows progress whatever launched the run.

    Step 1 marks that training (not start-up) has begun; then every N steps, to bound the writes.
    """

    def __init__(self, store, cell_id: str, every_n_steps: int = 10):
        self.store = store
        self.cell_id = cell_id
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if trainer.is_global_zero and (step == 1 or step % self.every_n_steps == 0):
            self.store.set_state(self.cell_id, "running", step=step)


class StepReporter(pl.Callback):
    """Report (step, total, loss) to the launcher's progress display."""

    def __init__(self, report: Callable[[int, int, float | None], None], every_n_steps: int = 1):
        self.report = report
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.is_global_zero and trainer.global_step % self.every_n_steps == 0:
            loss = outputs["loss"].item() if isinstance(outputs, dict) and "loss" in outputs else None
            self.report(trainer.global_step, trainer.max_steps, loss)
