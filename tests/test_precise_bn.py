"""PreciseBN: BatchNorm statistics recomputed from training batches before each evaluation."""

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import TensorDataset

from repro.train.callbacks import PreciseBN


class _Data(pl.LightningDataModule):
    def __init__(self, images):
        super().__init__()
        self.train_set = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
        self.val_set = self.train_set
        self.batch_size = 16

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.batch_size)


class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        # torch momentum 0.01 is EfficientNet's TF decay 0.99: the running stats move slowly.
        self.model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4, momentum=0.01))
        self.model[0].weight.data = torch.eye(4, 3)[:, :, None, None]
        self.seen_training = None

    def validation_step(self, batch, batch_idx):
        self.seen_training = self.model.training
        return None


def _validate(callbacks, images):
    module = _Module()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=callbacks)
    trainer.validate(module, datamodule=_Data(images), verbose=False)
    return module


def test_statistics_are_those_of_the_training_batches():
    g = torch.Generator().manual_seed(0)
    images = 3.0 + 2.0 * torch.randn(64, 3, 2, 2, generator=g)  # channel means ~3, variance ~4
    stale = _validate([], images).model[1]
    assert torch.allclose(stale.running_mean, torch.zeros(4))  # never updated: the stale case
    bn = _validate([PreciseBN(num_batches=4)], images).model[1]
    # 4 batches of 16 = the whole set once: the mean is exact, the variance the per-batch average.
    expected_mean = images.mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean[:3], expected_mean, atol=1e-5)
    assert bn.running_mean[3] == 0  # the fourth channel sees zeros
    assert torch.allclose(bn.running_var[:3], images.var(dim=(0, 2, 3)), rtol=0.15)
    assert bn.momentum == 0.01  # update_bn restores the momentum it replaced


def test_evaluates_in_eval_mode_and_leaves_the_rng_alone():
    images = torch.randn(32, 3, 2, 2)
    torch.manual_seed(123)
    _validate([], images)
    expected = torch.rand(3)
    torch.manual_seed(123)
    module = _validate([PreciseBN(num_batches=2)], images)
    assert module.seen_training is False
    # Its shuffled batches came from their own generator: the global stream is where it would be.
    assert torch.equal(torch.rand(3), expected)
