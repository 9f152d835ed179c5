"""`repro bench overhead`: what a cell costs besides its optimizer steps.

Runs one real cell (default: ShuffleNet 0.25x g=3 of papers/shufflenet/table2, preset `test`,
train.max_steps=2) through `repro.train.run.run_cell` into a temporary store, with a timer wrapped
around each phase (store writes, data, model build, Trainer construction, fit, validation,
complexity count, provenance) and a Lightning callback that times every training batch
(forward + backward + optimizer step). Overhead = run_cell wall time - the optimizer steps.
Nothing in run_cell is changed; the wrappers are removed afterwards.

Result fields (kind "overhead"): cell, steps, wandb_mode, runs [{wandb_mode, total_s, steps_s,
phases_s, overhead_s, overhead_excl_val_s}], and the first run's figures at top level; import_s
(a fresh interpreter importing the training stack, paid once per launched process, not per cell);
target_s (1.0). `overhead_by_run_s` names each run: W&B off with cold and warm caches, and W&B
auto for the first cell of a process (it starts W&B's service) and for a later one.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TABLE, ROW, COLUMN, PRESET = "papers/shufflenet/table2", "0.25x", "g=3", "test"
TARGET_S = 1.0
CKPT, WANDB_INIT = "checkpoint saves (in fit)", "wandb.init (in logger start)"
NESTED = (CKPT, WANDB_INIT, "fit minus steps", "optimizer steps")  # parts of fit, not added to the total


class _PhaseTimer:
    def __init__(self):
        self.seconds = defaultdict(float)
        self._patches = []

    def wrap(self, owner, attr: str, phase: str) -> None:
        original = getattr(owner, attr)
        seconds = self.seconds

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - start

        self._patches.append((owner, attr, owner.__dict__.get(attr, original) if isinstance(owner, type) else original))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()


def _step_timer(seconds: dict):
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        """Times each training batch: forward + backward + optimizer step (what is not overhead).

        It ends at on_train_batch_end, after the checkpoint callback's own on_train_batch_end, so
        the checkpoint time spent in between (tracked by the phase timer) is subtracted.
        """

        def __init__(self):
            self.times, self._start, self._ckpt = [], None, 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._start, self._ckpt = time.perf_counter(), seconds[CKPT]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self._start is not None:
                self.times.append(time.perf_counter() - self._start - (seconds[CKPT] - self._ckpt))
                self._start = None

    return StepTimer()


def time_cell(steps: int, wandb_mode: str | None) -> dict:
    import pytorch_lightning as pl

    import repro.train.callbacks

    import repro.complexity
    import repro.train.data
    import repro.train.provenance
    import repro.train.run as run
    import repro.track.wandb_mirror
    from repro.spec import expand_cells, load_table
    from repro.store import Store

    table = load_table(TABLE)
    cell = next(c for c in expand_cells(table, PRESET, overrides={"train.max_steps": steps})
                if c.row == ROW and c.column == COLUMN)
    timer = _PhaseTimer()
    steps_cb = _step_timer(timer.seconds)
    with tempfile.TemporaryDirectory(prefix="repro-bench-overhead-") as tmp:
        store = Store(Path(tmp) / "store")
        extra = [(repro.train.callbacks.AtomicCheckpoint, "save", CKPT)]
        if "wandb" in sys.modules or wandb_mode != "off":
            import wandb

            extra.append((wandb, "init", WANDB_INIT))
        for owner, attr, phase in [
            (Store, "write_config", "store writes"), (Store, "set_state", "store writes"),
            (Store, "write_result", "store writes"), (Store, "result", "store lookup"),
            (pl, "seed_everything", "seed"), (repro.train.data.ClassificationData, "prepare", "data setup"),
            (run, "build_model", "model build"), (repro.track.wandb_mirror, "make_logger", "logger (W&B) start"),
            (pl.Trainer, "__init__", "Trainer construction"), (pl.Trainer, "fit", "fit (incl. steps)"),
            (pl.Trainer, "validate", "validation"), (run, "cell_complexity", "complexity count"),
            (repro.train.provenance, "git_commit", "provenance (git, hardware)"),
            (repro.train.provenance, "source_changes", "provenance (git, hardware)"),
            (repro.train.provenance, "hardware", "provenance (git, hardware)"),
            (run, "_finish_wandb", "logger (W&B) finish"), *extra,
        ]:
            timer.wrap(owner, attr, phase)
        opts = run.RunOptions(store=store, wandb_mode=wandb_mode, extra_callbacks=[steps_cb])
        start = time.perf_counter()
        try:
            run.run_cell(table, cell, opts)
        finally:
            total = time.perf_counter() - start
            timer.restore()
    phases = dict(timer.seconds)
    step_s = sum(steps_cb.times)
    phases["fit (incl. steps)"] = phases.get("fit (incl. steps)", 0.0)
    phases["fit minus steps"] = phases["fit (incl. steps)"] - step_s
    phases["optimizer steps"] = step_s
    phases["other (run_cell body)"] = total - sum(v for k, v in phases.items() if k not in NESTED)
    overhead = total - step_s
    return {"wandb_mode": wandb_mode or "auto", "steps": len(steps_cb.times), "total_s": total, "steps_s": step_s,
            "step_times_s": steps_cb.times, "phases_s": phases, "overhead_s": overhead,
            "overhead_excl_val_s": overhead - phases.get("validation", 0.0)}


@contextlib.contextmanager
def _fresh_caches(tmp: str):
    """A cold complexity cache and git lookup, as a newly launched cell process sees them."""
    import os

    import repro.train.provenance as prov

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
    prov.git_commit.cache_clear()
    prov.source_changes.cache_clear()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


def import_seconds() -> float:
    code = ("import time; t = time.perf_counter(); import repro.train.run, repro.train.module, pytorch_lightning; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def run_overhead_bench(args, proto: dict) -> dict:
    from repro.train.run import quiet_lightning

    quiet_lightning()
    steps = getattr(args, "repeats", None) or 2
    runs = []
    # Cold caches first (a new model config in a new process), then warm (the complexity cache on
    # disk holds this config), then the default W&B mode (auto: offline without a login) twice:
    # the first cell of a process starts W&B's service process, every later cell reuses it.
    plan = (("off", "cold caches"), ("off", "warm caches"), (None, "warm caches, first W&B run of the process"),
            (None, "warm caches, W&B service already up"))
    with tempfile.TemporaryDirectory(prefix="repro-bench-cache-") as cache, _fresh_caches(cache):
        for mode, caches in plan:
            print(f"running {TABLE} ({ROW}, {COLUMN}) preset {PRESET}, {steps} steps, W&B {mode or 'auto'}, "
                  f"{caches} ...", file=sys.stderr, flush=True)
            rec = {"caches": caches, **time_cell(steps, mode)}
            runs.append(rec)
            print(f"  total {rec['total_s']:.2f} s, steps {rec['steps_s']:.2f} s, overhead {rec['overhead_s']:.2f} s",
                  file=sys.stderr, flush=True)
            for phase, sec in sorted(rec["phases_s"].items(), key=lambda kv: -kv[1]):
                print(f"    {phase:<28} {sec:7.3f} s", file=sys.stderr)
    imp = import_seconds()
    print(f"  fresh-process import of the training stack: {imp:.2f} s", file=sys.stderr)
    proto.update(steps=steps, preset=PRESET)
    first = runs[0]
    return {"cell": f"{TABLE} ({ROW}, {COLUMN}), preset {PRESET}, train.max_steps={steps}, W&B off, cold caches",
            "steps": steps, "runs": runs, "phases_s": first["phases_s"], "overhead_s": first["overhead_s"],
            "overhead_excl_val_s": first["overhead_excl_val_s"],
            "overhead_by_run_s": {f"W&B {r['wandb_mode']}, {r['caches']}": r["overhead_s"] for r in runs},
            "import_s": imp, "target_s": TARGET_S}
