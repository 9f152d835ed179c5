"""Recipe canaries: a few optimizer steps of a paper recipe through the real training path.

A proxy that trains proves the pipeline, not the recipe. A canary runs the recipe itself (its
optimizer, schedule from step 0, augmentation, Mixup/CutMix, EMA, loss and model arguments) on
synthetic images at the preset's resolution with a tiny batch. A recipe that diverges in its
first steps (EfficientNet's 0.256 without warm-up under torch's RMSprop went 6.9 -> 1006 in nine
steps) or whose pipeline breaks (a NaN, a transform that cannot take the size) fails here, long
before a cluster would. What it cannot show: that the peak lr suits the real batch. Measured: at
a batch of 2, starting at the peak lr with fresh optimizer state makes sound recipes climb too
(adaptive optimizers take full-size steps before their statistics settle, which warm-up exists to
prevent), so the canary follows the schedule from its start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytorch_lightning as pl
from torch.utils.data import Subset

from repro.errors import ConfigError
from repro.spec.cells import Cell, build_model
from repro.spec.load import Table
from repro.data import DETECTION_DATASETS, augment_style
from repro.spec.schema import Preset

SGD_FAMILY = ("sgd", "momentum", "nesterov", "sgdw", "nesterovw")
# Training-set sizes of the datasets a paper recipe names: the updates per epoch its schedule
# counts with (ImageNet-1k train 1,281,167; CIFAR-10 50,000; SVHN train 73,257; GTSRB 39,209).
# COCO train2017 has 118,287 images (117,266 with annotations, the ones a detector trains on).
TRAIN_IMAGES = {"imagenet": 1_281_167, "cifar10": 50_000, "svhn": 73_257, "gtsrb": 39_209, "coco": 117_266}


@dataclass
class CanaryResult:
    losses: list[float]
    lrs: list[float]
    image_size: int
    batch_size: int
    # The loss scale it is judged against: a classifier's first loss or chance level, ln(classes),
    # whichever is larger (a lucky first batch of 2 must not make normal noise look like a climb).
    reference: float

    @property
    def climbed(self) -> bool:
        """The loss ended well above where it started, or spiked on the way (a diverging recipe
        goes from ~7 to hundreds within a few updates)."""
        return max(self.losses) > 3 * self.reference or sum(self.losses[-2:]) / 2 > 1.5 * self.reference


def canary_preset(preset: Preset, batch_size: int, steps: int) -> Preset:
    """The preset on synthetic images of its size and classes, through its dataset's transforms
    (a detection preset: on synthetic_coco, which the detector resizes to the spec's input size)."""
    data = preset.data.model_dump()
    if data["name"] in DETECTION_DATASETS:
        synthetic = {"name": "synthetic_coco", "image_size": 96, "num_classes": 3,
                     "num_train": batch_size * (steps + 1), "num_val": batch_size,
                     **{k: data[k] for k in ("hflip", "size_scale") if k in data}}
        train = {**preset.train.model_dump(), "batch_size": batch_size, "workers": 0}
        return Preset.model_validate({**preset.model_dump(), "data": synthetic, "train": train})
    kept = {k: data[k] for k in ("crop_pct", "interpolation", "mean", "std") if k in data}
    synthetic = {"name": "synthetic", "image_size": data["image_size"], "num_classes": data["num_classes"],
                 "train_size": batch_size * (steps + 1), "val_size": batch_size,
                 "augment": augment_style(data), **kept}
    train = {**preset.train.model_dump(), "batch_size": batch_size, "workers": 0}
    if preset.train.opt.lower() in SGD_FAMILY:
        # An SGD step grows with the batch's summed gradient: scale lr to the canary's batch (Goyal et
        # al.'s linear rule) so each sample moves the weights as much as in the recipe. Adaptive
        # optimizers normalise the step by the gradient's size and keep the recipe's lr.
        train["lr"] = preset.train.lr * batch_size / preset.train.batch_size
    return Preset.model_validate({**preset.model_dump(), "data": synthetic, "train": train})


def run_canary(table: Table, cell: Cell, steps: int = 4, batch_size: int = 2) -> CanaryResult:
    """`steps` optimizer updates of the cell's recipe; the losses and learning rates seen."""
    from dataclasses import replace

    from repro.train.recipe import apply_batchnorm
    from repro.train.run import module_class, quiet_lightning, total_steps, updates_per_epoch

    real = cell.preset
    if real.data.name not in TRAIN_IMAGES:
        raise ConfigError(f"{cell.preset_name}: no canary for a recipe on {real.data.name!r} (not a paper dataset)")
    recipe = real.train
    per_epoch = updates_per_epoch(TRAIN_IMAGES[real.data.name], recipe.batch_size)
    total = total_steps(recipe, TRAIN_IMAGES[real.data.name], recipe.batch_size)
    preset = canary_preset(real, batch_size, steps)
    quiet_lightning()
    pl.seed_everything(cell.seed, verbose=False)
    if table.spec.task == "detection":
        from repro.train.detection import DetectionData, DetectionModule, build_detector

        # No init_from: the canary tests the detection recipe, not the classification run it starts from.
        model = build_detector(table, replace(cell, preset=preset, init_from_cell=None))
        data = DetectionData(preset.data.model_dump(), batch_size, preset.train).prepare()
        module = DetectionModule(model, preset.train, total, per_epoch, masks=model.roi_heads.has_mask())
        image_size = min(model.transform.min_size)
    else:
        from repro.train.data import ClassificationData

        data = ClassificationData(preset.data.model_dump(), batch_size, preset.train).prepare()
        model = build_model(table, cell)
        apply_batchnorm(model, recipe)
        # The real recipe's schedule, at the real dataset's updates per epoch.
        module = module_class(table)(model, preset.train, total, per_epoch)
        image_size = preset.data.image_size
    # The same `batch_size` images in every update, so a change of loss is the recipe's doing, not
    # the next batch's (a detector's loss moves 4.4 -> 8.9 between single images at lr 3e-7).
    data.train_set = Subset(data.train_set, [i % batch_size for i in range(len(data.train_set))])
    record = _Record()
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                         callbacks=[record], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, gradient_clip_val=recipe.clip_grad,
                         gradient_clip_algorithm=recipe.clip_mode if recipe.clip_grad else None)
    trainer.fit(module, datamodule=data)
    chance = 0.0 if table.spec.task == "detection" else math.log(preset.data.num_classes)
    return CanaryResult(record.losses, record.lrs, image_size, batch_size, max(record.losses[0], chance))


class _Record(pl.Callback):
    def __init__(self):
        self.losses, self.lrs = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
