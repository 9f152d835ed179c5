"""The detection task: a cell of a `task: detection` table, trained and evaluated with COCO AP.

`run_cell` calls `detection_parts` for such tables; everything detection-specific lives here:
  * DetectionData: the registry's COCO-format datasets, batched as lists (images differ in size);
  * DetectionModule: wraps a torchvision detector (repro.nn.detection); its loss is the sum of the
    detector's losses; validation runs COCOeval and logs box_ap / mask_ap (AP@[.5:.95] x 100,
    the "mmAP" the papers print) plus AP50/AP75;
  * init_from: loads the backbone weights of a finished classification run.
The optimizer, schedule (mmdet's 1x is `sched: multistep`, `decay_milestones: [8, 11]`) and
gradient clipping are the classification module's, from the recipe through timm and Lightning.
"""

from __future__ import annotations

import math

import torch

from repro.data.coco import detection_collate
from repro.data.coco_eval import evaluate_coco, to_coco_results
from repro.errors import ConfigError, RunFailed
from repro.nn.detection import RUNTIME_KNOBS, load_classification_weights
from repro.data import build_dataset
from repro.train.data import ClassificationData
from repro.train.module import ClassificationModule, NonFiniteLoss

class DetectionData(ClassificationData):
    """Same datasets and loaders as classification, with the list-of-targets collate; the
    detection datasets apply their own (box-aware) transforms."""

    def prepare(self):
        self.train_set = build_dataset(self.data_cfg, "train", self.data_root)
        self.val_set = build_dataset(self.data_cfg, "val", self.data_root)
        return self

    def _loader(self, dataset, shuffle: bool, drop_last: bool):
        return torch.utils.data.DataLoader(
            dataset, batch_size=min(self.batch_size, len(dataset)), shuffle=shuffle, drop_last=drop_last,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0, collate_fn=detection_collate,
        )


class DetectionModule(ClassificationModule):
    def __init__(self, model, recipe, total_steps: int, updates_per_epoch: int = 1, masks: bool = False):
        super().__init__(model, recipe, total_steps, updates_per_epoch)
        self.masks = masks
        self._detections: list[dict] = []

    def forward(self, images, targets=None):
        return self.model(images, targets)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        keep = ("boxes", "labels", "masks") if self.masks else ("boxes", "labels")
        targets = [{k: t[k] for k in keep} for t in targets]
        losses = self(list(images), targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss became {loss.item()} at step {self.global_step} "
                f"({', '.join(f'{k}={v.item():.3g}' for k, v in losses.items())}); lower the learning rate "
                "or add warm-up (the run is marked failed and wrote no result)"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=len(images))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(images))
        return loss

    def on_validation_epoch_start(self):
        self._detections = []

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        outputs = self(list(images))
        dataset = self.trainer.datamodule.val_set
        self._detections += to_coco_results(outputs, [t["image_id"] for t in targets], dataset.label_to_cat_id)

    def on_validation_epoch_end(self):
        detections = self._detections
        if self.trainer.world_size > 1:  # every rank scores the whole val set, so all log the same AP
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, detections)
            detections = [d for part in gathered for d in part]
        dataset = self.trainer.datamodule.val_set
        iou_types = ("bbox", "segm") if self.masks else ("bbox",)
        metrics = evaluate_coco(dataset.coco, detections, iou_types)
        wanted = [f"{p}_{k}" for p in (("box", "mask") if self.masks else ("box",)) for k in ("ap", "ap50", "ap75")]
        logged = {f"val/{k}": metrics[k] for k in wanted if not math.isnan(metrics[k])}
        logged["val/detections"] = float(len(detections))
        logged["val/samples"] = float(len(dataset))
        self.log_dict(logged, sync_dist=False, rank_zero_only=False)



# ------------------------------------------------------------------ building the parts of a run
def build_detector(table, cell):
    """The cell's detector at the preset's scale, with the preset's runtime knobs."""
    from repro.spec.cells import builder_for

    data = cell.preset.data.model_dump()
    knobs = dict(cell.preset.train.detector)
    unknown = set(knobs) - set(RUNTIME_KNOBS)
    if unknown:
        raise ConfigError(f"preset {cell.preset_name}: train.detector has unknown key(s) {sorted(unknown)}; "
                          f"allowed: {', '.join(RUNTIME_KNOBS)}")
    try:
        return builder_for(table, cell.model)(
            **{**cell.args, **knobs}, num_classes=data["num_classes"], size_scale=float(data.get("size_scale", 1.0)))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{table.id} cell ({cell.row}, {cell.column}): cannot build {cell.model}: {exc}") from None


def init_backbone(model, table, cell, store) -> dict:
    """Load the backbone weights of the finished run `cell.init_from_cell` into `model.backbone.body`.

    The backbone's parameter names are the classification model's (see repro.nn.detection), so
    the checkpoint's `model.*` tensors load by name; the classifier has no counterpart and is left
    out, and detection-only parts (e.g. FasterNet's output norms) keep their initialisation.
    """
    source = cell.init_from_cell
    if not store.is_done(source):
        family = {v: k for k, v in table.spec.presets.items()}.get(cell.preset_name, cell.preset_name)
        where, _, which = cell.init_from.partition(":")
        raise RunFailed(
            f"init_from {cell.init_from}: that run (cell {source}) is not done in {store.root}; run it first: "
            f"repro run papers/{where} --preset {family} --only '{which}' --store {store.root}"
        )
    ckpt = store.checkpoint_path(source)
    if not ckpt.exists():
        raise RunFailed(f"init_from {cell.init_from}: run {source} is done but its checkpoint {ckpt} is missing")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    try:
        loaded = load_classification_weights(model.backbone.body, state)
    except ValueError as exc:
        raise RunFailed(f"init_from {cell.init_from}: the checkpoint of run {source} does not fit this backbone ({exc}); "
                        "does the source row build the same network as backbone_args?") from None
    return {"init_from": cell.init_from, "init_from_cell": source, "init_loaded_tensors": loaded["loaded"],
            "init_untouched_tensors": loaded["untouched"]}


def detection_parts(table, cell, opts, per_device_batch: int, world: int):
    """(datamodule, LightningModule, total steps, extra result fields) of a detection cell."""
    from repro.train.run import total_steps, updates_per_epoch

    recipe = cell.preset.train
    data = DetectionData(cell.preset.data.model_dump(), per_device_batch, recipe, opts.data_root).prepare()
    if data.train_set.num_classes != cell.preset.data.num_classes:
        raise ConfigError(
            f"preset {cell.preset_name}: data.num_classes is {cell.preset.data.num_classes} but "
            f"{cell.preset.data.name} has {data.train_set.num_classes} categories"
        )
    steps = total_steps(recipe, len(data.train_set), per_device_batch * world)
    model = build_detector(table, cell)
    extra = {"detector": {"min_size": list(model.transform.min_size), "max_size": model.transform.max_size}}
    if cell.init_from_cell:
        extra.update(init_backbone(model, table, cell, opts.store))
    module = DetectionModule(model, recipe, steps, updates_per_epoch(len(data.train_set), per_device_batch * world),
                             masks=model.roi_heads.has_mask())
    return data, module, steps, extra
