"""The shared classification LightningModule: the step and the loss; optimizer, schedule, Mixup
and EMA come from the recipe through timm (repro.train.recipe).

Paper folders reuse it with their recipe (presets.yaml); a paper whose recipe needs another step
subclasses it in `papers/<paper>/module.py` and exports `LIGHTNING_MODULE`.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from repro.errors import RunFailed
from repro.train.recipe import build_ema, build_mixup, build_optimizer, build_scheduler


class NonFiniteLoss(RunFailed):
    pass


class ClassificationModule(pl.LightningModule):
    """`recipe` is the cell's TrainRecipe; `updates_per_epoch` turns its epoch fields into updates."""

    def __init__(self, model: nn.Module, recipe, total_steps: int, updates_per_epoch: int = 1):
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.total_steps = total_steps
        self.updates_per_epoch = max(1, updates_per_epoch)
        self.mixup = build_mixup(recipe, self._num_classes())
        self.model_ema = build_ema(model, recipe)
        self._val = None

    def _num_classes(self) -> int:
        head = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        return head[-1].out_features if head else 0

    def forward(self, x):
        return self.model(x)

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluated: the EMA's where the recipe keeps one (timm's --model-ema)."""
        return self.model_ema.module if self.model_ema is not None else self.model

    channels_last = False  # the fast path (repro.train.run.use_fast_path) sets it with the model's format

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.channels_last:
            images, labels = batch
            batch = (images.contiguous(memory_format=torch.channels_last), labels)
        return batch

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if self.mixup is not None:
            images, soft_targets = self.mixup(images, labels)
            loss = torch.sum(-soft_targets * F.log_softmax(self(images), dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(self(images), labels, label_smoothing=self.recipe.smoothing)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss became {loss.item()} at step {self.global_step}; lower the learning rate "
                "or check the data (the run is marked failed and wrote no result)"
            )
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.model_ema is not None:
            self.model_ema.update(self.model, step=self.global_step)

    # Accuracy from summed counts, gathered over ranks, so every rank reports the same number.
    def on_validation_epoch_start(self):
        self._val = torch.zeros(4, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.eval_model(images)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        self._val += torch.stack([
            (top5[:, 0] == labels).sum().double(),
            (top5 == labels[:, None]).any(dim=1).sum().double(),
            F.cross_entropy(logits.double(), labels, reduction="sum"),
            torch.tensor(labels.numel(), dtype=torch.float64, device=labels.device),
        ])

    def on_validation_epoch_end(self):
        totals = self.all_gather(self._val)
        if totals.dim() == 2:
            totals = totals.sum(0)
        correct1, correct5, loss_sum, n = totals.tolist()
        n = max(n, 1)
        self.log_dict({
            "val/top1_err": 100.0 * (1 - correct1 / n),
            "val/top1_acc": 100.0 * correct1 / n,
            "val/top5_err": 100.0 * (1 - correct5 / n),
            "val/loss": loss_sum / n,
            "val/samples": float(n),
        }, sync_dist=False, rank_zero_only=False)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.recipe)
        schedule = build_scheduler(optimizer, self.recipe, self.updates_per_epoch, self.total_steps)
        if schedule.scheduler is None:
            return optimizer
        self._schedule_on_updates = schedule.on_updates
        interval = "step" if schedule.on_updates else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule.scheduler, "interval": interval}}

    def lr_scheduler_step(self, scheduler, metric):
        # timm's schedulers step as in its train.py: after each update with the updates done, or at
        # the end of an epoch with the next epoch's number.
        if self._schedule_on_updates:
            scheduler.step_update(num_updates=self.global_step)
        else:
            scheduler.step(epoch=self.current_epoch + 1)
