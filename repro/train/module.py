"""The shared classification LightningModule: the step, the loss and the optimizer of a recipe.

Paper folders reuse it with their recipe (presets.yaml); a paper whose recipe needs another step
subclasses it in `papers/<paper>/module.py` and exports `LIGHTNING_MODULE`.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from repro.errors import RunFailed


class NonFiniteLoss(RunFailed):
    pass


class ClassificationModule(pl.LightningModule):
    # Milestones of the "step" schedule when the recipe gives no train.extra.lr_steps (None: x0.1
    # at 1/3 and 2/3 of training, see lr_lambda).
    default_lr_steps: tuple[float, ...] | None = None

    def __init__(self, model: nn.Module, recipe: dict, total_steps: int):
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.total_steps = total_steps
        self._val = None

    def forward(self, x):
        return self.model(x)

    channels_last = False  # the fast path (repro.train.run.use_fast_path) sets it with the model's format

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.channels_last:
            images, labels = batch
            batch = (images.contiguous(memory_format=torch.channels_last), labels)
        return batch

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self(images), labels, label_smoothing=self.recipe.get("label_smoothing", 0.0))
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss became {loss.item()} at step {self.global_step}; lower the learning rate "
                "or check the data (the run is marked failed and wrote no result)"
            )
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    # Accuracy from summed counts, gathered over ranks, so every rank reports the same number.
    def on_validation_epoch_start(self):
        self._val = torch.zeros(4, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
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
        r = self.recipe
        params = self.parameters()
        if r["optimizer"] == "sgd":
            opt = torch.optim.SGD(params, lr=r["lr"], momentum=r["momentum"], weight_decay=r["weight_decay"], nesterov=False)
        elif r["optimizer"] == "adamw":
            opt = torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"])
        else:  # rmsprop, with EfficientNet's decay/momentum/eps
            opt = torch.optim.RMSprop(params, lr=r["lr"], alpha=0.9, eps=1e-3, momentum=r["momentum"], weight_decay=r["weight_decay"])
        lr_steps = r.get("extra", {}).get("lr_steps", self.default_lr_steps)
        if r["schedule"] == "step" and lr_steps:
            schedule = step_lambda(lr_steps, self.total_steps, r.get("warmup_steps", 0))
        else:
            schedule = lr_lambda(r["schedule"], self.total_steps, r.get("warmup_steps", 0))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def step_lambda(fractions, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up, then x0.1 at each fraction of training (`train.extra.lr_steps`: e.g. 8/12
    and 11/12 for a detection 1x schedule, 1/2 and 3/4 for He et al.'s CIFAR ResNets)."""
    milestones = sorted(round(f * total_steps) for f in fractions)
    warm = lr_lambda("constant", total_steps, warmup_steps)
    return lambda step: warm(step) * 0.1 ** sum(step >= m for m in milestones)


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int = 0):
    """Multiplier of the base lr at a step: linear warm-up, then the recipe's decay to 0."""
    total = max(total_steps, 1)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "step":
            return 0.1 ** int(progress * 3)
        return 1.0

    return factor
