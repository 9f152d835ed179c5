"""LightningDataModule over any dataset in the registry (repro.data), with the recipe's transforms."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from repro.data import build_dataset
from repro.data.transforms import classification_transforms


class ClassificationData(pl.LightningDataModule):
    """`recipe` (a TrainRecipe) gives the batch's workers, the training augmentation and, with
    `image_size_schedule`, the train resolution per epoch (the Trainer reloads the train loader
    every epoch for such a recipe)."""

    def __init__(self, data_cfg: dict, batch_size: int, recipe, data_root=None):
        super().__init__()
        self.data_cfg = data_cfg
        self.batch_size = batch_size
        self.recipe = recipe
        self.num_workers = recipe.workers
        self.data_root = data_root
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None):
        # Built eagerly by prepare() on the driver so a missing dataset fails before training.
        if self.train_set is None:
            self.prepare()

    def prepare(self):
        self.train_set = build_dataset(self.data_cfg, "train", self.data_root, self._train_transform(epoch=0))
        self.val_set = build_dataset(self.data_cfg, "val", self.data_root,
                                     classification_transforms(self.data_cfg, train=False))
        return self

    def train_image_size(self, epoch: int) -> int:
        schedule = self.recipe.image_size_schedule
        if not schedule:
            return int(self.data_cfg["image_size"])
        return schedule[max(start for start in schedule if start <= epoch)]

    def _train_transform(self, epoch: int):
        return classification_transforms(self.data_cfg, train=True, recipe=self.recipe,
                                         image_size=self.train_image_size(epoch))

    def _loader(self, dataset, shuffle: bool, drop_last: bool):
        return DataLoader(
            dataset, batch_size=min(self.batch_size, len(dataset)), shuffle=shuffle, drop_last=drop_last,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0 and not self.recipe.image_size_schedule,
            pin_memory=False,
        )

    def train_dataloader(self):
        if self.recipe.image_size_schedule and self.trainer is not None:
            self.train_set.transform = self._train_transform(self.trainer.current_epoch)
        return self._loader(self.train_set, shuffle=True, drop_last=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False, drop_last=False)
