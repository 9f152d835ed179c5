"""Expand a table spec into cells, and give each cell a content-addressed identity.

A cell's id hashes what determines its result: the model builder and its fully resolved
arguments (defaults filled in), the preset's data and training recipe, and the seed. So Table 2's
(1x, g=3) and Table 3's (1x (g=3), shuffle) are one run, and a requeued job finds its folder again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from repro.errors import ConfigError, SpecError
from repro.spec.load import Table
from repro.spec.recipes import COMMAND_LINE, apply_overrides, check_recipe, model_overrides, with_row_recipe
from repro.spec.schema import MAX_IMAGE_SIZE, Preset
from repro.spec.signatures import NO_DEFAULT, model_signatures

INHERIT = "__inherit__"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Cell:
    table_id: str
    row: str
    column: str
    label: str
    model: str | None
    args: dict
    preset_name: str
    preset: Preset
    seed: int
    published: float | None
    published_note: str = ""
    published_complexity: float | None = None
    complexity_input_size: int = 224
    skip: str | None = None
    init_from: str | None = None  # "<paper>/<table>:<row>|<column>" as the spec writes it
    init_from_cell: str | None = None  # the id of that cell under the same preset family
    difference_of: tuple[str, str] | None = None  # a derived column: (a, b) = a minus b, by the report
    paper: str = ""
    extra: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)  # recipe field -> where its value comes from

    @property
    def runnable(self) -> bool:
        return self.model is not None and self.skip is None

    def identity(self) -> dict:
        return {
            "paper": self.paper,
            "model": self.model,
            "args": self.args,
            "data": self.preset.data.model_dump(),
            "train": self.preset.train.model_dump(),
            "seed": self.seed,
            # The source run's id, not the spec's reference: it hashes the source's whole config.
            "init_from": self.init_from_cell,
        }

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:16]

    @property
    def group_key(self) -> str:
        """Same as `id` but blind to the seed: the runs that are seeds of one cell share it."""
        ident = {k: v for k, v in self.identity().items() if k != "seed"}
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]

    def resolved_config(self) -> dict:
        """What is written to the run folder and W&B: identity plus where the cell came from."""
        return {
            **self.identity(),
            "cell_id": self.id,
            "group_key": self.group_key,
            "table": self.table_id,
            "row": self.row,
            "column": self.column,
            "preset": self.preset_name,
            "proxy": self.preset.proxy,
        }


def paper_builders(paper) -> dict:
    module = paper.models_module()
    models = dict(getattr(module, "MODELS", {}))
    if getattr(module, "BACKBONES", None):  # a paper with detection backbones gets the detectors
        from repro.nn.detection import DETECTORS, bind_backbones

        models.update({kind: bind_backbones(kind, module.BACKBONES) for kind in DETECTORS if kind not in models})
    return models


def _unknown_model(table: Table, model: str, known) -> SpecError:
    return SpecError(f"{table.path}: unknown model {model!r}; {table.paper.name} defines: {', '.join(sorted(known))}")


def builder_for(table: Table, model: str):
    models = paper_builders(table.paper)
    if model not in models:
        raise _unknown_model(table, model, models)
    return models[model]


# The init_from references being resolved right now, outermost first: resolving one expands its
# source table, whose own init_from may lead back here (a cycle would otherwise recurse until
# Python gives up).
_RESOLVING: list[str] = []


def resolve_init_from(table: Table, ref: str, preset_name: str) -> str:
    """`shufflenet/table2:1x|g=3` -> the id of that cell (seed 0) under the preset `preset_name`
    names there (e.g. `proxy`, through that table's own `presets:` aliases)."""
    from repro.spec.load import load_table

    where, sep, cell_ref = ref.partition(":")
    row, bar, column = cell_ref.partition("|")
    if not (sep and bar and where.count("/") == 1):
        raise SpecError(f"{table.path}: init_from {ref!r}: expected <paper>/<table>:<row>|<column>, e.g. shufflenet/table2:1x|g=3")
    key = f"{where.strip('/')}:{row}|{column}@{preset_name}"
    if key in _RESOLVING:
        chain = " -> ".join(k.rpartition("@")[0] for k in _RESOLVING[_RESOLVING.index(key):] + [key])
        raise SpecError(f"{table.path}: init_from cycle: {chain}; a cell cannot start from itself")
    _RESOLVING.append(key)
    try:
        source = load_table(where)
        for cell in expand_cells(source, preset_name):
            if cell.row == row and cell.column == column:
                if not cell.runnable:
                    raise SpecError(f"{table.path}: init_from {ref!r} names a cell that is not run ({cell.skip or 'model null'})")
                return cell.id
    finally:
        _RESOLVING.pop()
    raise SpecError(f"{table.path}: init_from {ref!r}: {where} has no cell row {row!r}, column {column!r}")


def resolve_args(table: Table, model: str, args: dict) -> dict:
    """Fill the builder's defaults in, so equal configurations hash equally; reject unknown keys."""
    signatures = model_signatures(table.paper, lambda: paper_builders(table.paper))
    if model not in signatures:
        raise _unknown_model(table, model, signatures)
    params = signatures[model]
    unknown = set(args) - set(params)
    if unknown:
        accepted = ", ".join(p for p in params if p != "num_classes")
        raise SpecError(f"{table.path}: model {model!r} has no argument(s) {sorted(unknown)}; accepted: {accepted}")
    resolved = {k: default for k, default in params.items() if default != NO_DEFAULT}
    resolved.update(args)
    resolved.pop("num_classes", None)  # set by the preset's data, hashed through it
    return resolved


def preset_for_row(preset: Preset, table: Table, row) -> Preset:
    """The preset a row trains with: its image size (and eval resize) scaled by the row's input
    size over the table's, when the preset follows row resolutions (Preset.scale_resolution_with_rows)."""
    base = table.spec.complexity.input_size if table.spec.complexity else None
    if not (preset.scale_resolution_with_rows and row.input_size and base) or row.input_size == base:
        return preset
    data = preset.data.model_dump()
    data["image_size"] = round(data["image_size"] * row.input_size / base)  # crop_pct keeps the eval crop's fraction
    if not 8 <= data["image_size"] <= MAX_IMAGE_SIZE:
        raise SpecError(f"{table.path}: row {row.id!r}: input_size {row.input_size} scales this preset's "
                        f"{preset.data.image_size} px to {data['image_size']} px (table input_size {base}); "
                        f"outside 8..{MAX_IMAGE_SIZE}")
    return Preset.model_validate({**preset.model_dump(), "data": data})


def expand_cells(table: Table, preset_name: str = "paper", seeds: int = 1, seed_offset: int = 0,
                 overrides: dict[str, Any] | None = None, override_sources: dict[str, str] | None = None) -> list[Cell]:
    """The table's cells under a preset; `overrides` ({"train.lr": 0.1}) apply last, each sourced
    to `override_sources[key]` or the command line."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    spec = table.spec
    resolved_name, preset = table.paper.preset(preset_name, spec)
    published = table.paper.published.tables[spec.table]
    notes = {(n.row, n.column): n.note for n in published.notes}
    cell_overrides = {(c.row, c.column): c for c in spec.cells}
    cells = []
    for row in spec.rows:
        row_preset, sources = with_row_recipe(preset, resolved_name, row, str(table.path), table.paper.row_recipes)
        row_preset = preset_for_row(row_preset, table, row)
        if overrides:
            row_preset = apply_overrides(row_preset, overrides)
            sources.update({key.partition(".")[2]: (override_sources or {}).get(key, COMMAND_LINE) for key in overrides})
        for col in spec.columns:
            over = cell_overrides.get((row.id, col.id))
            # Args merge table < row < column < cell; a level that names another model starts
            # its args afresh (the table's args belong to the table's model).
            model, args = spec.model, dict(spec.args)
            for level in (row, col, over):
                if level is None:
                    continue
                if level.model != INHERIT:
                    model, args = level.model, {}
                args.update(level.args)
            skip = (over.skip if over else None) or row.skip or col.skip
            if col.difference_of and not skip:
                skip = f"derived: '{col.difference_of[0]}' minus '{col.difference_of[1]}', computed by the report"
            values = published.rows[row.id].values
            complexity = None
            if spec.complexity and spec.complexity.column:
                complexity = values.get(spec.complexity.column)
            resolved = resolve_args(table, model, args) if model else args
            if model and not skip:
                check_recipe(row_preset, spec.task, f"{table.path} [{resolved_name}] row {row.id!r}", sources)
                accepted = set(model_signatures(table.paper, lambda: paper_builders(table.paper))[model])
                try:
                    resolved.update(model_overrides(row_preset.train, accepted))
                except SpecError as exc:
                    raise SpecError(f"{table.path} [{resolved_name}] ({row.id}, {col.id}): {exc}") from None
            init_from = over.init_from if over else None
            # The source runs under the same family: `proxy` here (or its alias target, proxy_coco) is `proxy` there.
            family = {target: name for name, target in spec.presets.items()}.get(preset_name, preset_name)
            init_from_cell = resolve_init_from(table, init_from, family) if init_from else None
            label = f"{published.rows[row.id].label} / {published.columns[col.id].label}"
            for seed in range(seed_offset, seed_offset + seeds):
                cells.append(Cell(
                    table_id=table.id, row=row.id, column=col.id, label=label,
                    model=model, args=resolved, preset_name=resolved_name, preset=row_preset, seed=seed,
                    published=values.get(col.id),
                    published_note=notes.get((row.id, col.id)) or notes.get((row.id, None)) or "",
                    published_complexity=complexity,
                    complexity_input_size=row.input_size or (spec.complexity.input_size if spec.complexity else 224),
                    skip=skip, difference_of=col.difference_of, init_from=init_from, init_from_cell=init_from_cell, paper=table.paper.name,
                    sources=sources,
                ))
    return cells


def find_cell(table_ref: str, preset: str, seeds: int, overrides: dict | None, cell_id: str) -> tuple[Table, Cell]:
    """A cell found again by id on a worker (Ray task, SLURM job): same table, preset, seeds, overrides."""
    from repro.spec.load import load_table

    table = load_table(table_ref)
    for cell in expand_cells(table, preset, seeds=seeds, overrides=overrides):
        if cell.id == cell_id:
            return table, cell
    raise ConfigError(f"cell {cell_id} is not in {table_ref} [{preset}] here: "
                      "the spec changed since submission, or this worker's checkout differs")


def build_model(table: Table, cell: Cell, num_classes: int | None = None, meta: bool = False):
    """The cell's nn.Module; a bad argument value becomes a one-line ConfigError.

    `meta=True` builds it without allocating weights: enough for shapes, params and MACs.
    """
    import contextlib

    import torch

    builder = builder_for(table, cell.model)
    num_classes = num_classes or cell.preset.data.num_classes
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return builder(**cell.args, num_classes=num_classes)
    except (ValueError, AssertionError, TypeError) as exc:
        raise ConfigError(f"{table.id} cell ({cell.row}, {cell.column}): cannot build {cell.model}: {exc}") from None
