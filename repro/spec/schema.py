"""Schemas of the three kinds of paper data: published tables, presets, table specs.

Unknown keys are errors (a typo must not silently change a run), and every published value is a
number or null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

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
PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class TrainRecipe(Strict):
    """A training recipe in timm train.py's vocabulary, so an official timm-style config pastes in.

    Built into timm's optimizers, schedulers, Mixup/CutMix, transforms and EMA by
    repro.train.recipe; Lightning runs the loop. Defaults switch a component off (no smoothing,
    mixup, augmentation policy or EMA) rather than copying timm's command-line defaults, so a
    preset states every technique it uses. A field a run would not read is an error
    (repro.train.recipe.unread_fields), never silently ignored.
    """

    batch_size: int = Field(gt=0)  # global batch, split over the world size
    # Length: `epochs` (timm) or `max_steps` (optimizer updates, for short proxies). Exactly one.
    epochs: Optional[int] = Field(default=None, gt=0)
    max_steps: Optional[int] = Field(default=None, gt=0)

    # Optimizer (timm.optim.create_optimizer_v2). timm's `sgd` is Nesterov SGD; `momentum` is plain.
    opt: str = "momentum"
    opt_eps: Optional[PositiveFloat] = None
    opt_betas: Optional[tuple[float, float]] = None
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    filter_bias_and_bn: bool = True  # timm's param groups: no weight decay on biases and norm layers
    lr: PositiveFloat

    # Schedule (timm.scheduler.create_scheduler_v2). Epoch fields count epochs; `sched_on_updates`
    # multiplies them by updates per epoch, as timm does. A `max_steps` run has no epochs: its
    # schedule fields (warmup, decay, milestones, cooldown) count updates.
    sched: Literal["cosine", "step", "multistep", "poly", "constant", "none"] = "cosine"
    sched_on_updates: bool = False
    warmup_epochs: float = Field(default=0, ge=0)
    warmup_steps: int = Field(default=0, ge=0)  # mmdet-style warm-up in updates (e.g. 500 iterations)
    warmup_lr: float = Field(default=0.0, ge=0)
    min_lr: float = Field(default=0.0, ge=0)
    decay_epochs: Optional[PositiveFloat] = None  # sched `step`: decay interval (EfficientNet: 2.4)
    decay_milestones: Optional[list[PositiveFloat]] = None  # sched `multistep`
    decay_rate: float = Field(default=0.1, gt=0)  # step/multistep factor; the power of `poly`
    cooldown_epochs: float = Field(default=0, ge=0)

    # Loss and batch mixing (timm.data.Mixup; soft targets when mixup or cutmix is on).
    smoothing: float = Field(default=0.0, ge=0, lt=1)
    mixup: float = Field(default=0.0, ge=0)
    cutmix: float = Field(default=0.0, ge=0)
    cutmix_minmax: Optional[tuple[float, float]] = None
    mixup_prob: Probability = 1.0
    mixup_switch_prob: Probability = 0.5
    mixup_mode: Literal["batch", "pair", "elem"] = "batch"

    # Training augmentation (timm.data.create_transform; data.augment picks the geometry style).
    aa: Optional[str] = None  # 'rand-m9-mstd0.5', 'v0', 'original', ...
    color_jitter: Optional[Union[PositiveFloat, tuple[float, float, float], tuple[float, float, float, float]]] = None
    scale: Optional[tuple[float, float]] = None  # RandomResizedCrop area range; None: timm's (0.08, 1)
    ratio: Optional[tuple[float, float]] = None
    hflip: Optional[Probability] = None  # None: 0.5, or 0 for datasets a mirror changes (svhn, gtsrb)
    reprob: Probability = 0.0
    train_interpolation: Literal["bilinear", "bicubic", "random", "nearest"] = "bilinear"
    # Progressive resolution: {first epoch: train image size}, e.g. FasterNet's {0: 192, 280: 224}.
    image_size_schedule: Optional[dict[int, int]] = None

    # Model regularisation (builder arguments) and normalisation.
    drop_rate: Optional[Probability] = None
    drop_path_rate: Optional[Probability] = None
    bn_momentum: Optional[Probability] = None  # torch convention: TF's decay 0.99 is 0.01
    bn_eps: Optional[PositiveFloat] = None
    model_ema: bool = False  # keep an EMA of the weights (timm ModelEmaV3) and evaluate it
    model_ema_decay: float = Field(default=0.9998, gt=0, lt=1)
    clip_grad: Optional[PositiveFloat] = None
    clip_mode: Literal["norm", "value"] = "norm"

    # repro's own bookkeeping and proxy aids.
    precise_bn_batches: Optional[int] = Field(default=None, gt=0)  # recompute BN stats before eval
    detector: dict[str, Union[StrictInt, StrictFloat]] = {}  # detection runtime knobs (repro.nn.detection)
    eval_every_steps: Optional[int] = Field(default=None, gt=0)
    checkpoint_every_steps: Optional[int] = Field(default=None, gt=0)
    workers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of epochs / max_steps")
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError("set at most one of warmup_epochs / warmup_steps")
        if self.warmup_steps and self.epochs and not self.sched_on_updates:
            raise ValueError("warmup_steps counts updates: set sched_on_updates: true, or use warmup_epochs")
        if self.sched == "step" and self.decay_epochs is None:
            raise ValueError("sched 'step' needs decay_epochs (the decay interval)")
        if self.sched == "multistep" and not self.decay_milestones:
            raise ValueError("sched 'multistep' needs decay_milestones")
        if self.image_size_schedule is not None and 0 not in self.image_size_schedule:
            raise ValueError("image_size_schedule must give the size from epoch 0")
        return self


class DataConfig(Strict):
    # Loaders take their own keys (cifar's `path`, synthetic's `noise`, ...); each loader lists the
    # keys it reads (KEYS in its module) and any other key is refused before a run starts.
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    image_size: int = Field(gt=0)
    num_classes: int = Field(default=1000, gt=1)


class RowRecipe(Strict):
    """Recipe fields one table row sets under one preset (FasterNet's per-variant regularisation,
    EfficientNet's per-model dropout and resolution), with their sources."""

    train: dict[str, Any] = {}
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}


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
    input_size: Optional[int] = Field(default=None, gt=0, le=4096)
    # Recipe fields this row sets, per preset name (`paper`, `official`, ...), or the name of an
    # entry of the paper's row_recipes.yaml (per-variant recipes shared by several tables).
    recipe: Union[str, dict[str, RowRecipe]] = {}
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
