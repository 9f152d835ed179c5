"""LightningDataModule over any dataset in the registry (repro.data)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from repro.data import build_dataset


class ClassificationData(pl.LightningDataModule):
    def __init__(self, data_cfg: dict, batch_size: int, num_workers: int = 0, data_root=None):
        super().__init__()
        self.data_cfg = data_cfg
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.data_root = data_root
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None):
        # Built eagerly by prepare() on the driver so a missing dataset fails before training.
        if self.train_set is None:
            self.prepare()

    def prepare(self):
        self.train_set = build_dataset(self.data_cfg, "train", self.data_root)
        self.val_set = build_dataset(self.data_cfg, "val", self.data_root)
        return self

    def _loader(self, dataset, shuffle: bool, drop_last: bool):
        return DataLoader(
            dataset, batch_size=min(self.batch_size, len(dataset)), shuffle=shuffle, drop_last=drop_last,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=False,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True, drop_last=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False, drop_last=False)
