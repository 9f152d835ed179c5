"""Schemas of the three kinds of paper data: published tables, presets, table specs.

Unknown keys are errors (a typo must not silently change a run), and every published value is a
number or null.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    # inf and nan pass `gt=0`-style bounds in odd ways (nan fails every comparison, inf passes
    # `gt=0`) and then break a run or a hash: no field of any file takes them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _refuse(what: str):
    """A validation error whose message is exactly `what` (pydantic would prefix "Value error, ")."""
    return PydanticCustomError("repro", what)


def _ordered_in(name: str, pair, lo: float, hi: float, lo_open: bool = False):
    if pair is None:
        return
    a, b = pair
    if not (lo < a if lo_open else lo <= a) or not a <= b <= hi:
        low = f"{lo} <" if lo_open else f"{lo} <="
        raise _refuse(f"{name} must be (low, high) with {low} low <= high <= {hi}, got {tuple(pair)}")


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
MAX_IMAGE_SIZE = 4096  # pixels a side
Probability = Annotated[float, Field(ge=0, le=1)]


# The runtime knobs `train.detector` may set (repro.nn.detection.RUNTIME_KNOBS, named here so a
# spec is checked without importing torchvision; a test keeps the two equal). Counts, except the
# score threshold.
DETECTOR_KNOBS = (
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image", "box_batch_size_per_image", "box_detections_per_img", "box_score_thresh",
    "fpn_channels", "head_dim",
)


class TrainRecipe(Strict):
    """A training recipe in timm train.py's vocabulary, so an official timm-style config pastes in.

    Built into timm's optimizers, schedulers, Mixup/CutMix, transforms and EMA by
    repro.train.recipe; Lightning runs the loop. Defaults switch a component off (no smoothing,
    mixup, augmentation policy or EMA) rather than copying timm's command-line defaults, so a
    preset states every technique it uses. A field a run would not read is an error
    (repro.train.recipe.unread_fields), never silently ignored.
    """

    # Upper bounds below are far past any real recipe; they turn a typo (an extra 0s) into an
    # error at load time instead of an out-of-memory or an overflow inside torch mid-run.
    batch_size: int = Field(gt=0, le=1_000_000)  # global batch, split over the world size
    # Length: `epochs` (timm) or `max_steps` (optimizer updates, for short proxies). Exactly one.
    epochs: Optional[int] = Field(default=None, gt=0, le=100_000)
    max_steps: Optional[int] = Field(default=None, gt=0, le=10**10)

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
    detector: dict[str, Union[StrictInt, StrictFloat]] = {}  # detection runtime knobs (DETECTOR_KNOBS)
    eval_every_steps: Optional[int] = Field(default=None, gt=0)
    checkpoint_every_steps: Optional[int] = Field(default=None, gt=0)
    workers: int = Field(default=0, ge=0, le=1024)

    @model_validator(mode="after")
    def _consistent(self):
        # Ranges torch and timm enforce only when the run starts (or never, training on nonsense).
        if self.opt_betas is not None and not all(0 <= b < 1 for b in self.opt_betas):
            raise _refuse(f"opt_betas must each be in [0, 1), got {tuple(self.opt_betas)}")
        _ordered_in("scale", self.scale, 0, 1, lo_open=True)
        _ordered_in("ratio", self.ratio, 0, 100, lo_open=True)
        _ordered_in("cutmix_minmax", self.cutmix_minmax, 0, 1, lo_open=True)
        jitter = self.color_jitter if isinstance(self.color_jitter, tuple) else ()
        if any(j < 0 for j in jitter):
            raise _refuse(f"color_jitter values must be >= 0, got {jitter}")
        for knob, value in self.detector.items():
            if knob not in DETECTOR_KNOBS:
                raise _refuse(f"detector.{knob} is not a detector setting; allowed: {', '.join(DETECTOR_KNOBS)}")
            if not (0 <= value <= 1 if knob == "box_score_thresh" else isinstance(value, int) and 0 < value <= 10**6):
                what = "from 0 to 1" if knob == "box_score_thresh" else "a whole number from 1 to 1000000"
                raise _refuse(f"detector.{knob} must be {what}, got {value!r}")
        for epoch, size in (self.image_size_schedule or {}).items():
            if epoch < 0 or not 0 < size <= MAX_IMAGE_SIZE:
                raise _refuse(f"image_size_schedule maps epoch >= 0 to a size in 1..{MAX_IMAGE_SIZE}, got {epoch}: {size}")
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


def _whole(lo: int, hi: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"a whole number from {lo} to {hi}"
        return None if lo <= v <= hi else f"from {lo} to {hi}"
    return check


def _number(lo: float, hi: float, lo_open: bool = False):
    span = f"above {lo} and at most {hi}" if lo_open else f"from {lo} to {hi}"

    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"a number {span}"
        return None if (lo < v if lo_open else lo <= v) and v <= hi else span
    return check


def _one_of(*choices):
    return lambda v: None if v in choices else f"one of {', '.join(map(str, choices))}"


def _flag(v):
    return None if isinstance(v, bool) else "true or false"


def _three(positive: bool):
    def check(v):
        ok = (isinstance(v, (list, tuple)) and len(v) == 3
              and all(not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
                      and (x > 0 if positive else True) for x in v))
        return None if ok else f"a list of 3 {'positive ' if positive else ''}numbers, one per channel"
    return check


def _text(v):
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def _year(v):
    return None if (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.isdigit()) else "a year, e.g. 2017"


# Types and ranges of the dataset-specific data keys (repro.data.KEYS says which dataset reads
# which). Checked, not coerced: a value is hashed into the cell id exactly as written, and the
# loaders hand these to torch unconverted, where a string or a zero fails deep inside a run.
DATA_KEY_CHECKS = {
    "train_size": _whole(1, 10**8), "val_size": _whole(1, 10**8),
    "num_train": _whole(1, 10**8), "num_val": _whole(1, 10**8), "max_objects": _whole(1, 1000),
    "seed": _whole(0, 2**32 - 1),  # torch.Generator seeds; synthetic multiplies it, so no int64 edge
    "noise": _number(0, 100), "crop_pct": _number(0, 1, lo_open=True), "size_scale": _number(0, 10, lo_open=True),
    "interpolation": _one_of("bilinear", "bicubic", "nearest"),
    "mean": _three(positive=False), "std": _three(positive=True),
    "augment": _one_of("imagenet", "cifar", "none"),  # repro.data.AUGMENT_STYLES
    "extra": _flag, "crop_roi": _flag, "hflip": _flag, "year": _year, "path": _text,
}


class DataConfig(Strict):
    # Loaders take their own keys (cifar's `path`, synthetic's `noise`, ...); repro.data.KEYS lists
    # the keys each reads, any other key is refused before a run starts, and DATA_KEY_CHECKS
    # bounds their values here.
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    image_size: int = Field(gt=0, le=MAX_IMAGE_SIZE)
    num_classes: int = Field(default=1000, gt=1, le=1_000_000)

    @model_validator(mode="after")
    def _typed_extras(self):
        for key, value in (self.model_extra or {}).items():
            check = DATA_KEY_CHECKS.get(key)
            problem = check(value) if check else None
            if problem:
                raise _refuse(f"{key} must be {problem}, got {value!r}")
        return self


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
    # Smaller than 16 px leaves nothing for a stride-32 network to see; the scaled training size
    # (Preset.scale_resolution_with_rows) would round to a few pixels.
    input_size: Optional[int] = Field(default=None, ge=16, le=MAX_IMAGE_SIZE)
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
    input_size: int = Field(default=224, ge=16, le=MAX_IMAGE_SIZE)
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
