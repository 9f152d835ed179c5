"""`repro sweep sweeps/<name>.yaml`: a Ray Tune search over the recipe of ONE cell of a table.

Every trial is an ordinary run: the sampled values are `--set`-style overrides of the preset
(`train.lr`, `data.train_size`, ...), so each trial is its own content-addressed cell in the store,
with result.json, checkpoints and W&B run like any other; a trial whose configuration is already
done in the store reports the stored result instead of training again.

ASHA stops bad trials early, so trials report the cell's validation metric at every evaluation
(`train.eval_every_steps`, which the spec sets) through a Lightning callback calling
`ray.tune.report`; `time_attr` is the optimizer step. A trial ASHA stops leaves a checkpoint and no
result (it is not a finished run). `scheduler: {type: fifo}` runs every trial to the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from repro.errors import ConfigError, RunFailed, SpecError


class Distribution(BaseModel):
    """Exactly one of: loguniform [lo, hi], uniform [lo, hi], randint [lo, hi), choice [...], grid [...]."""

    model_config = ConfigDict(extra="forbid")
    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = Field(default=None, min_length=1)
    grid: list[Any] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def exactly_one(self):
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of loguniform, uniform, randint, choice, grid (got {given or 'none'})")
        for kind in ("loguniform", "uniform", "randint"):
            bounds = getattr(self, kind)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{kind} needs [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a positive lower bound")
        return self

    def example(self):
        """One value from the space, to validate the override before anything starts."""
        for kind in ("loguniform", "uniform", "randint", "choice", "grid"):
            value = getattr(self, kind)
            if value is not None:
                return value[0]

    def to_tune(self):
        from ray import tune

        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.randint is not None:
            return tune.randint(*self.randint)
        if self.choice is not None:
            return tune.choice(self.choice)
        return tune.grid_search(self.grid)


class Scheduler(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(default=1, ge=1, description="steps every trial runs before ASHA may stop it")
    reduction_factor: float = Field(default=2.0, gt=1)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    cell: str = Field(description="ROW|COLUMN of the table, e.g. '1x|g=3'")
    preset: str = "proxy"
    seed: int = 0
    metric: str = "top1_err"
    mode: Literal["min", "max"] | None = None  # default: from the table's metric (lower is better -> min)
    num_samples: int = Field(default=8, ge=1)
    cpus_per_trial: float = Field(default=1, gt=0)
    gpus_per_trial: float = Field(default=0, ge=0)
    scheduler: Scheduler = Scheduler()
    set: dict[str, Any] = Field(default_factory=dict, description="fixed overrides for every trial")
    space: dict[str, Distribution] = Field(min_length=1)


def load_sweep(path: Path) -> SweepSpec:
    from repro.spec.load import read_yaml, validate

    return validate(SweepSpec, read_yaml(path), path)


def sweep_cell(spec: SweepSpec, path: Path, overrides: dict):
    """(table, cell) of the sweep with these overrides; one-line errors for a bad cell or field."""
    from repro.spec import expand_cells, load_table

    table = load_table(spec.table)
    row, sep, column = spec.cell.partition("|")
    if not sep:
        raise SpecError(f"{path}: cell: expected ROW|COLUMN, e.g. '1x|g=3', got {spec.cell!r}")
    try:
        expanded = expand_cells(table, spec.preset, seeds=spec.seed + 1, overrides=overrides)
    except ConfigError as exc:  # a bad key of `set:` or `space:`; apply_overrides words it for --set
        raise SpecError(f"{path}: {str(exc).removeprefix('--set ').removeprefix('--set: ')}") from None
    cells = [c for c in expanded if c.row == row.strip() and c.column == column.strip() and c.seed == spec.seed and c.runnable]
    if not cells:
        raise SpecError(f"{path}: cell: {spec.cell!r} is not a runnable cell of {table.id}")
    return table, cells[0]


def tune_reporter(metric: str, cell_id: str):
    """A Lightning callback reporting the validation metric to Tune at evaluations during training.

    Not at the last step: a report at ASHA's max_t ends the trial at once (Tune stops the trial's
    thread inside `tune.report`), before run_cell could write the result. The final metric is
    reported by the trainable once the result is in the store.
    """
    import pytorch_lightning as pl
    from ray import tune

    class TuneReporter(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            value = trainer.callback_metrics.get(f"val/{metric}")
            if (value is None or trainer.sanity_checking or not trainer.is_global_zero
                    or trainer.state.fn != "fit" or trainer.global_step >= trainer.max_steps):
                return
            tune.report({metric: float(value), "step": int(trainer.global_step), "cell_id": cell_id})

    return TuneReporter()


def run_trial(config: dict, spec_path: str, store_root: str, data_root: str | None, wandb_mode: str | None) -> None:
    """Tune's trainable: the sampled overrides make a cell; run it like any other run."""
    from ray import tune

    from repro.store import Store
    from repro.train.run import RunOptions, run_cell

    path = Path(spec_path)
    spec = load_sweep(path)
    table, cell = sweep_cell(spec, path, {**spec.set, **config})
    store = Store(store_root)
    opts = RunOptions(store=store, data_root=data_root, wandb_mode=wandb_mode,
                      extra_callbacks=[tune_reporter(spec.metric, cell.id)])
    try:
        result = run_cell(table, cell, opts)  # an already finished cell returns its stored result
    except SystemExit:  # the scheduler stopped this trial inside tune.report: not a failed run
        store.set_state(cell.id, "pending", message="stopped early by the sweep's scheduler; checkpoint kept")
        raise
    tune.report({spec.metric: result["metrics"][spec.metric], "step": result["steps"], "cell_id": cell.id})


def run_sweep(args) -> int:
    from repro.launch.ray import start_ray
    from repro.store import Store

    path = Path(args.spec).resolve()
    spec = load_sweep(path)
    base_table, base_cell = sweep_cell(spec, path, dict(spec.set))
    for key, dist in spec.space.items():  # a misspelt field fails here, in one line, before Ray starts
        sweep_cell(spec, path, {**spec.set, key: dist.example()})
    if spec.metric not in ("top1_err", "top1_acc", "top5_err", "loss"):
        raise SpecError(f"{path}: metric: {spec.metric!r} is not a validation metric; use top1_err, top1_acc, top5_err or loss")
    mode = spec.mode or ("min" if base_table.spec.metric.better == "lower" or spec.metric.endswith(("_err", "loss")) else "max")
    max_steps = base_cell.preset.train.max_steps
    if spec.scheduler.type == "asha" and not max_steps:
        raise SpecError(f"{path}: scheduler asha needs the recipe to set train.max_steps (ASHA's time axis is the step)")
    num_samples = args.num_samples or spec.num_samples
    store = Store(args.store)
    store.check_writable()
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep our working directory (relative data roots)

    ray = start_ray(args.ray_address, args.cpus, store)
    from ray import tune

    scheduler = None
    if spec.scheduler.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="step", max_t=max_steps, grace_period=min(spec.scheduler.grace_period, max_steps),
                                  reduction_factor=spec.scheduler.reduction_factor)
    data_root = os.path.abspath(args.data_root) if getattr(args, "data_root", None) else os.environ.get("REPRO_DATA_ROOT")
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec_path=str(path), store_root=str(store.root), data_root=data_root,
                             wandb_mode=args.wandb),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    print(f"sweep {path.name}: {base_table.id} cell {spec.cell} [{spec.preset}], {num_samples} trials, "
          f"{spec.scheduler.type} on {spec.metric} ({mode}); runs land in {store.root}", flush=True)
    tuner = tune.Tuner(
        trainable,
        param_space={key: dist.to_tune() for key, dist in spec.space.items()},
        tune_config=tune.TuneConfig(metric=spec.metric, mode=mode, num_samples=num_samples, scheduler=scheduler),
        run_config=tune.RunConfig(name=path.stem, storage_path=str(store.root / ".tune"), verbose=1),
    )
    try:
        grid = tuner.fit()
    finally:
        ray.shutdown()
    return _print_trials(grid, spec, mode)


def _print_trials(grid, spec: SweepSpec, mode: str) -> int:
    rows = []
    for trial in grid:
        m = trial.metrics or {}
        rows.append((m.get(spec.metric), m.get("step"), m.get("cell_id"), trial.config, trial.error))
    print(f"\n{'trial':>5}  {spec.metric:>10}  {'step':>5}  {'cell':16}  config")
    for i, (value, step, cell_id, config, error) in enumerate(rows):
        shown = f"{value:10.3f}" if value is not None else f"{'-':>10}"
        status = f"  error: {str(error).strip().splitlines()[-1]}" if error else ""
        print(f"{i:>5}  {shown}  {step if step is not None else '-':>5}  {cell_id or '-':16}  "
              f"{', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in config.items())}{status}")
    scored = [r for r in rows if r[0] is not None and r[4] is None]
    if not scored:
        raise RunFailed("every trial of the sweep failed (see above)")
    best = (min if mode == "min" else max)(scored, key=lambda r: r[0])
    print(f"best: {spec.metric} {best[0]:.3f} at step {best[1]} -> cell {best[2]} ({best[3]})", file=sys.stdout)
    return 0
