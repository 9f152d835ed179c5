"""Learning-rate schedules: warm-up, cosine, and the step schedule's milestones (default and per recipe)."""

from __future__ import annotations

import pytest
from torch import nn

from repro.train.detection import DetectionModule
from repro.train.module import ClassificationModule, lr_lambda

RECIPE = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, warmup_steps=0)


def _lrs(module_cls, recipe: dict, total: int) -> list[float]:
    module = module_cls(nn.Linear(2, 2), recipe, total)
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_reaches_zero():
    f = lr_lambda("cosine", total_steps=110, warmup_steps=10)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)


def test_step_schedule_default_thirds():
    lrs = _lrs(ClassificationModule, {**RECIPE, "schedule": "step"}, 90)
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01) and lrs[60] == pytest.approx(0.001)


def test_step_schedule_recipe_milestones():
    # He et al.'s CIFAR ResNet recipe: /10 at 32k and 48k of 64k iterations.
    recipe = {**RECIPE, "schedule": "step", "extra": {"lr_steps": [0.5, 0.75]}}
    lrs = _lrs(ClassificationModule, recipe, 64)
    assert lrs[31] == pytest.approx(0.1) and lrs[32] == pytest.approx(0.01)
    assert lrs[47] == pytest.approx(0.01) and lrs[48] == pytest.approx(0.001)


def test_detection_step_defaults_to_1x_milestones():
    lrs = _lrs(DetectionModule, {**RECIPE, "schedule": "step"}, 12)
    assert lrs[7] == pytest.approx(0.1) and lrs[8] == pytest.approx(0.01) and lrs[11] == pytest.approx(0.001)
