"""Schemas of the three kinds of paper data: published tables, presets, table specs.

Unknown keys are errors (a typo must not silently change a run), and every published value is a
number or null.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- published.yaml
Number = Union[StrictInt, StrictFloat]


class PublishedColumn(Strict):
    label: str
    unit: str = ""


class PublishedRow(Strict):
    label: str
    values: dict[str, Optional[Number]]


class PublishedNote(Strict):
    note: str
    row: Optional[str] = None
    column: Optional[str] = None


class PublishedTable(Strict):
    caption: str
    source: str
    read_from: Optional[str] = None
    columns: dict[str, PublishedColumn]
    rows: dict[str, PublishedRow]
    notes: list[PublishedNote] = []

    @model_validator(mode="after")
    def _values_in_declared_columns(self):
        for row_id, row in self.rows.items():
            unknown = set(row.values) - set(self.columns)
            if unknown:
                raise ValueError(f"row {row_id!r} has values for undeclared columns {sorted(unknown)}")
        return self


class PublishedPaper(Strict):
    paper: str
    arxiv: str
    version: Optional[str] = None  # None: no text version of the tables exists
    venue: str = ""
    tables: dict[str, PublishedTable]


# ---------------------------------------------------------------- presets.yaml
class TrainRecipe(Strict):
    batch_size: int = Field(gt=0)
    max_steps: Optional[int] = Field(default=None, gt=0)
    max_epochs: Optional[int] = Field(default=None, gt=0)
    optimizer: Literal["sgd", "adamw", "rmsprop"] = "sgd"
    lr: float = Field(gt=0)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["linear", "cosine", "step", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    warmup_epochs: int = Field(default=0, ge=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    eval_every_steps: Optional[int] = Field(default=None, gt=0)
    checkpoint_every_steps: Optional[int] = Field(default=None, gt=0)
    num_workers: int = Field(default=0, ge=0)
    # Augmentations the paper names; recorded with the recipe, applied by the data pipeline.
    augment: dict[str, Any] = {}
    extra: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_length(self):
        if (self.max_steps is None) == (self.max_epochs is None):
            raise ValueError("set exactly one of max_steps / max_epochs")
        return self


class DataConfig(Strict):
    model_config = ConfigDict(extra="allow", frozen=True)  # loaders take their own keys
    name: str
    image_size: int = Field(gt=0)
    num_classes: int = Field(default=1000, gt=1)


class Preset(Strict):
    data: DataConfig
    train: TrainRecipe
    proxy: bool = False
    description: str = ""
    sources: dict[str, str] = {}
    notes: list[str] = []
    # A row with its own `input_size` (EfficientNet-B3 at 300 px, a resolution-scaled baseline at
    # 448) trains at data.image_size scaled by input_size / the table's complexity.input_size, so
    # resolution stays a variable of the table. False trains every row at data.image_size.
    scale_resolution_with_rows: bool = True


# ---------------------------------------------------------------- <table>.yaml
class Axis(Strict):
    id: str
    label: Optional[str] = None
    model: Optional[str] = "__inherit__"
    args: dict[str, Any] = {}
    skip: Optional[str] = None
    input_size: Optional[int] = None
    # A column the paper derives from two others, [a, b] = "a minus b" per row (ShuffleNet's
    # Table 3 delta). Nothing is trained for it: the report subtracts the two cells' means.
    difference_of: Optional[tuple[str, str]] = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, v):
        return str(v)


class CellOverride(Strict):
    row: str
    column: str
    model: Optional[str] = "__inherit__"
    args: dict[str, Any] = {}
    skip: Optional[str] = None
    init_from: Optional[str] = None


class Metric(Strict):
    name: str
    unit: str = "%"
    better: Literal["lower", "higher"]


class ComplexityRef(Strict):
    column: Optional[str] = None
    input_size: int = 224
    params_column: Optional[str] = None
    unit: Literal["MFLOPs", "GFLOPs"] = "MFLOPs"


class TrendClaim(Strict):
    claim: str
    kind: Literal["column_better", "best_column", "row_order"]
    better: Optional[str] = None
    worse: Optional[str] = None
    column: Optional[str] = None
    rows: list[str] = []


class TableSpec(Strict):
    table: str
    title: str
    metric: Metric
    # What a cell trains: an image classifier (repro.train.module) or a detector scored with COCO AP
    # (repro.train.detection; its model is `fasterrcnn`/`maskrcnn` over a paper's BACKBONES).
    task: Literal["classification", "detection"] = "classification"
    tolerance: float = Field(default=1.0, ge=0)
    model: Optional[str] = None
    args: dict[str, Any] = {}
    complexity: Optional[ComplexityRef] = None
    presets: dict[str, str] = {}
    rows: list[Axis]
    columns: list[Axis]
    cells: list[CellOverride] = []
    trend: list[TrendClaim] = []
    notes: list[str] = []

    @model_validator(mode="after")
    def _unique_and_known(self):
        for axis in ("rows", "columns"):
            ids = [a.id for a in getattr(self, axis)]
            dupes = {i for i in ids if ids.count(i) > 1}
            if dupes:
                raise ValueError(f"duplicate {axis[:-1]} ids {sorted(dupes)}")
        row_ids, col_ids = {r.id for r in self.rows}, {c.id for c in self.columns}
        if any(r.difference_of for r in self.rows):
            raise ValueError("difference_of is for columns only")
        derived = {c.id for c in self.columns if c.difference_of}
        for c in self.columns:
            for source in c.difference_of or ():
                if source not in col_ids or source in derived:
                    raise ValueError(f"column {c.id!r}: difference_of names {source!r}, which is not a trained column")
        seen = set()
        for c in self.cells:
            if c.row not in row_ids or c.column not in col_ids:
                raise ValueError(f"cell override ({c.row!r}, {c.column!r}) names no row/column of this table")
            if (c.row, c.column) in seen:
                raise ValueError(f"duplicate cell override ({c.row!r}, {c.column!r})")
            seen.add((c.row, c.column))
        return self
