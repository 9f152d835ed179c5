"""Cross-cutting concerns of a run, as Lightning callbacks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl

from repro.errors import RunFailed


class AtomicCheckpoint(pl.Callback):
    """Keep `last.ckpt` and the one before it (`prev.ckpt`), saved every N optimizer steps and at the end.

    A save is staged inside the checkpoints folder, flushed to disk, then renamed into place, so a
    kill at any moment leaves a complete checkpoint to resume from: `last.ckpt`, or `prev.ckpt` if
    the kill fell between the two renames or `last.ckpt` was damaged later (a full disk, a copy cut
    short). A failed write is a clear error and leaves the previous checkpoints in place.
    """

    def __init__(self, path: Path, every_n_steps: int):
        self.path = Path(path)
        self.previous = self.path.with_name("prev.ckpt")
        self.every_n_steps = max(1, every_n_steps)

    def save(self, trainer: pl.Trainer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            if trainer.is_global_zero:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                if self.path.exists():
                    os.replace(self.path, self.previous)
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


def resume_point(folder: Path, cell_id: str, warn: Callable[[str], None]) -> tuple[Path | None, int]:
    """(checkpoint to resume from, its step): `last.ckpt`, else `prev.ckpt`, else a fresh start (None, 0).

    A checkpoint that cannot be loaded (truncated, empty, not a file) is named in a warning and
    skipped, never a traceback that would stop every rerun of the cell.
    """
    import torch

    for path in (folder / "last.ckpt", folder / "prev.ckpt"):
        if not path.exists() and not path.is_symlink():
            continue
        try:
            if not path.is_file():
                raise ValueError("not a regular file")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
                raise ValueError("not a Lightning checkpoint")
            return path, int(ckpt.get("global_step", 0))
        except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on a bad file
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            # Moved aside, not deleted: it is evidence, and in place it would block the next save.
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            try:
                os.replace(path, aside)
            except OSError:
                aside = None
            warn(f"repro: warning: {cell_id}: checkpoint {path} cannot be loaded ({reason})"
                 f"{f'; moved to {aside.name}' if aside else ''}; "
                 f"{'trying prev.ckpt' if path.name == 'last.ckpt' else 'starting from step 0'}")
    return None, 0


class HoldClaim(pl.Callback):
    """Stop a run whose claim on its cell another process took over (it was paused past its lease):
    two trainers must not write one cell's checkpoints."""

    def __init__(self, keeper):
        self.keeper = keeper

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.keeper.lost:
            raise RunFailed(f"another process took over this cell (claim {self.keeper.claim.number + 1}); "
                            "this run stopped without writing to it")


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
            self.store.set_state(self.cell_id, "running", step=step, total_steps=trainer.max_steps)


class StepReporter(pl.Callback):
    """Report (step, total, loss) to the launcher's progress display."""

    def __init__(self, report: Callable[[int, int, float | None], None], every_n_steps: int = 1):
        self.report = report
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.is_global_zero and trainer.global_step % self.every_n_steps == 0:
            loss = outputs["loss"].item() if isinstance(outputs, dict) and "loss" in outputs else None
            self.report(trainer.global_step, trainer.max_steps, loss)


class PreciseBN(pl.Callback):
    """Recompute BatchNorm's running statistics over `num_batches` training batches before every
    evaluation (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, Sec. 3).

    Running averages with a slow momentum (EfficientNet's 0.99 decay is torch momentum 0.01) still
    carry a fifth of their initial values after 150 steps, so a short proxy run evaluates with
    statistics no layer ever produced: measured on EfficientNet-B0, 150 steps of the proxy recipe
    gave 10% top-1 with the running averages and 37% with recomputed ones. Long paper recipes do not
    need it. The batches come from a fixed seed and the global RNG is restored, so evaluation
    neither depends on nor perturbs the training stream.
    """

    def __init__(self, num_batches: int, seed: int = 0):
        self.num_batches = num_batches
        self.seed = seed

    def on_validation_start(self, trainer, pl_module):
        import itertools

        import torch
        from torch.optim.swa_utils import update_bn
        from torch.utils.data import DataLoader

        dataset = trainer.datamodule.train_set
        batch_size = trainer.datamodule.batch_size
        loader = DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(self.seed))
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            # update_bn resets the statistics, averages them over these batches (momentum None) and
            # puts the model back in the mode it found (eval, inside Lightning's evaluation loop).
            update_bn(itertools.islice(loader, self.num_batches), pl_module.model, device=pl_module.device)
