"""A recipe (repro.spec.schema.TrainRecipe, timm train.py's vocabulary) built from timm's parts.

timm's optimizers, schedulers, Mixup/CutMix and EMA are used as timm's own train.py uses them, so
a preset copied from an official timm-style config trains the same way; Lightning runs the loop
(repro.train.module). Nothing here reimplements an optimizer or a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from repro.errors import ConfigError

def apply_batchnorm(model: nn.Module, recipe) -> None:
    """bn_momentum / bn_eps on every BatchNorm layer (timm's --bn-momentum / --bn-eps)."""
    if recipe.bn_momentum is None and recipe.bn_eps is None:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if recipe.bn_momentum is not None:
                module.momentum = recipe.bn_momentum
            if recipe.bn_eps is not None:
                module.eps = recipe.bn_eps


def check_optimizer(recipe) -> None:
    from timm.optim import list_optimizers

    if recipe.opt.lower() not in list_optimizers():
        raise ConfigError(f"train.opt {recipe.opt!r} is not a timm optimizer; e.g. sgd (Nesterov), momentum, adamw, rmsproptf")


def build_optimizer(model: nn.Module, recipe):
    from timm.optim import create_optimizer_v2

    check_optimizer(recipe)
    kwargs = {}
    if recipe.opt_eps is not None:
        kwargs["eps"] = recipe.opt_eps
    if recipe.opt_betas is not None:
        kwargs["betas"] = tuple(recipe.opt_betas)
    return create_optimizer_v2(model, opt=recipe.opt, lr=recipe.lr, weight_decay=recipe.weight_decay,
                               momentum=recipe.momentum, filter_bias_and_bn=recipe.filter_bias_and_bn, **kwargs)


@dataclass(frozen=True)
class Schedule:
    """A timm scheduler and how the loop steps it: `on_updates` with the number of updates done,
    else per epoch with the epoch number (timm train.py's two modes)."""

    scheduler: object | None
    on_updates: bool


def build_scheduler(optimizer, recipe, updates_per_epoch: int, total_updates: int) -> Schedule:
    """timm's scheduler for the recipe, in timm train.py's two modes. An epoch run steps per epoch,
    or per update with `sched_on_updates` (its epoch fields times updates per epoch, as timm does).
    A `max_steps` run has no epochs: it steps per update and its schedule fields count updates."""
    from timm.scheduler import create_scheduler_v2

    on_updates = recipe.max_steps is not None or recipe.sched_on_updates
    per = updates_per_epoch if recipe.epochs is not None and recipe.sched_on_updates else 1
    length = total_updates if on_updates else recipe.epochs
    warmup = recipe.warmup_steps if recipe.warmup_steps else recipe.warmup_epochs * per
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=recipe.sched, num_epochs=length,
        decay_epochs=(recipe.decay_epochs or 0) * per or None,
        decay_milestones=[m * per for m in (recipe.decay_milestones or [])],
        cooldown_epochs=recipe.cooldown_epochs * per, decay_rate=recipe.decay_rate, min_lr=recipe.min_lr,
        warmup_lr=recipe.warmup_lr, warmup_epochs=warmup,
        # The values above are already in the scheduler's unit: timm's own conversion multiplies by 1.
        step_on_epochs=not on_updates, updates_per_epoch=1,
    )
    return Schedule(scheduler, on_updates)


def lr_at(recipe, updates_per_epoch: int, total_updates: int, epoch: float) -> float:
    """The lr the recipe's schedule gives at a (fractional) epoch: what the loop would set."""
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    schedule = build_scheduler(opt, recipe, updates_per_epoch, total_updates)
    if schedule.scheduler is None:
        return recipe.lr
    if schedule.on_updates:
        schedule.scheduler.step_update(num_updates=round(epoch * updates_per_epoch))
    else:
        schedule.scheduler.step(epoch=int(epoch))
    return opt.param_groups[0]["lr"]


def build_mixup(recipe, num_classes: int):
    """timm's Mixup/CutMix (label smoothing folded into its soft targets), or None when off."""
    if recipe.mixup == 0 and recipe.cutmix == 0 and recipe.cutmix_minmax is None:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, cutmix_minmax=recipe.cutmix_minmax,
                 prob=recipe.mixup_prob, switch_prob=recipe.mixup_switch_prob, mode=recipe.mixup_mode,
                 label_smoothing=recipe.smoothing, num_classes=num_classes)


def build_ema(model: nn.Module, recipe):
    """timm's ModelEmaV3 of the model, or None. Its weights take no gradient (DDP would otherwise
    wait for them)."""
    if not recipe.model_ema:
        return None
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=recipe.model_ema_decay)
    ema.requires_grad_(False)
    return ema
