"""The recipe engine: timm's optimizers and schedules as the papers' official code runs them, no
field left unread, the dry-run contract, and a canary for every paper recipe."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from repro.errors import SpecError
from repro.spec import expand_cells, list_papers, load_table
from repro.spec.recipes import check_recipe
from repro.spec.schema import Preset, TrainRecipe
from repro.train.recipe import build_optimizer, lr_at

IMAGENET_TRAIN = 1_281_167


def _recipe(**fields) -> TrainRecipe:
    return TrainRecipe(**{"batch_size": 8, "max_steps": 10, "lr": 0.1, **fields})


def _paper_recipe(table: str, preset: str, row: str) -> TrainRecipe:
    return next(c for c in expand_cells(load_table(table), preset) if c.row == row).preset.train


# ------------------------------------------------------------------ optimizer and schedule semantics
def test_rmsproptf_update_is_tensorflows_rule():
    """TF's RMSProp: the square average starts at 1 and eps sits inside the square root; torch's
    RMSprop starts at 0 with eps outside, which sent EfficientNet's loss 6.9 -> 1006."""
    p0, g = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.3, -0.2, 0.05])
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(p0[None])
    lr, rho, momentum, eps = 0.256, 0.9, 0.9, 1e-3
    opt = build_optimizer(model, _recipe(opt="rmsproptf", lr=lr, momentum=momentum, opt_eps=eps))
    model.weight.grad = g[None].clone()
    opt.step()
    mean_square = rho * 1.0 + (1 - rho) * g**2
    expected = p0 - lr * g / torch.sqrt(mean_square + eps)  # first step: momentum buffer was 0
    assert torch.allclose(model.weight.detach()[0], expected, atol=1e-7)
    torch_first_step = lr * g.abs() / (torch.sqrt((1 - rho) * g**2) + eps)
    assert (torch_first_step > 5 * (p0 - expected).abs()).all()  # why the TF rule matters


def test_momentum_is_plain_and_sgd_is_nesterov_as_in_timm():
    for name, nesterov in (("momentum", False), ("sgd", True)):
        opt = build_optimizer(nn.Linear(2, 2), _recipe(opt=name))
        assert opt.param_groups[0]["nesterov"] is nesterov


def test_no_weight_decay_on_norm_and_bias_only_when_asked():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    decays = lambda opt: sorted(len(g["params"]) for g in opt.param_groups if g["weight_decay"] > 0)
    assert decays(build_optimizer(model, _recipe(weight_decay=1e-4))) == [1]  # the conv weight alone
    assert decays(build_optimizer(model, _recipe(weight_decay=1e-4, filter_bias_and_bn=False))) == [4]


def test_efficientnet_lr_is_the_official_warmup_then_staircase():
    """tensorflow/tpu efficientnet utils.py: lr * 0.97 ** floor(step / (2.4 epochs)), staircase, with
    a linear warm-up over the first 5 epochs."""
    recipe = _paper_recipe("efficientnet/table2", "official", "b0")
    per_epoch = IMAGENET_TRAIN // recipe.batch_size
    total = recipe.epochs * per_epoch
    peak, warm = recipe.lr, recipe.warmup_epochs
    for epoch in (0.5, 2.5, 5, 7.2, 7.3, 100, 349):
        step = round(epoch * per_epoch)
        expected = peak * 0.97 ** math.floor(step / (2.4 * per_epoch))
        if step < warm * per_epoch:
            expected = recipe.warmup_lr + step * (peak - recipe.warmup_lr) / (warm * per_epoch)
        assert lr_at(recipe, per_epoch, total, epoch) == pytest.approx(expected, rel=1e-6), epoch


def test_fasternet_lr_is_warmup_then_cosine_to_min_lr():
    """JierunChen/FasterNet: 20 warm-up epochs, then cosine (stepped per epoch) to min_lr at 300."""
    recipe = _paper_recipe("fasternet/table3", "official", "t0")
    per_epoch = IMAGENET_TRAIN // recipe.batch_size
    peak, low, warm = recipe.lr, recipe.min_lr, recipe.warmup_epochs
    assert (recipe.epochs, warm, recipe.sched) == (300, 20, "cosine")
    for epoch in (0, 10, 19, 20, 150, 299):
        if epoch < warm:
            expected = recipe.warmup_lr + epoch * (peak - recipe.warmup_lr) / warm
        else:
            expected = low + 0.5 * (peak - low) * (1 + math.cos(math.pi * epoch / recipe.epochs))
        assert lr_at(recipe, per_epoch, recipe.epochs * per_epoch, epoch) == pytest.approx(expected, rel=1e-6)


def test_linear_decay_of_a_step_counted_run():
    """ShuffleNet's 'linear-decay learning rate policy (decreased from 0.5 to 0)' over 3e5 iterations."""
    recipe = _paper_recipe("shufflenet/table2", "paper", "1x")
    total = recipe.max_steps
    for step in (0, 1, total // 2, total - 1):
        assert lr_at(recipe, 1, total, step) == pytest.approx(recipe.lr * (1 - step / total), abs=1e-9)


# ------------------------------------------------------------------ no silent keys
def _preset(train: dict, data: dict | None = None) -> Preset:
    return Preset.model_validate({"data": data or {"name": "synthetic", "image_size": 32, "num_classes": 10},
                                  "train": {"batch_size": 8, "max_steps": 4, "lr": 0.1, **train}})


@pytest.mark.parametrize("train, data, key", [
    ({"aa": "rand-m9-mstd0.5"}, None, "train.aa"),  # synthetic tensors: no transform reads it
    ({"mixup": 0.2}, {"name": "coco", "image_size": 800, "num_classes": 80}, "train.mixup"),
    ({"detector": {"fpn_channels": 64}}, None, "train.detector"),
    ({"decay_epochs": 2.4}, None, "train.decay_epochs"),  # cosine has no decay interval
    ({"model_ema_decay": 0.9999}, None, "train.model_ema_decay"),  # EMA off
    ({}, {"name": "synthetic", "image_size": 32, "num_classes": 10, "resize": 36}, "data.resize"),
    ({}, {"name": "imagenet", "image_size": 224, "num_classes": 1000, "noise": 1.5}, "data.noise"),
])
def test_a_field_nothing_reads_is_a_spec_error(train, data, key):
    preset = _preset(train, data)
    task = "detection" if preset.data.name == "coco" else "classification"
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        check_recipe(preset, task, "where", {})


def test_unknown_recipe_key_and_stale_source_are_refused():
    with pytest.raises(Exception, match="optimizer"):
        _preset({"optimizer": "sgd"})
    with pytest.raises(SpecError, match="sources.lr_steps"):
        check_recipe(_preset({}), "classification", "where", {"lr_steps": "old"})


def test_unknown_optimizer_is_an_error_not_a_fallback():
    from repro.errors import ConfigError

    with pytest.raises(ConfigError, match="not a timm optimizer"):
        build_optimizer(nn.Linear(2, 2), _recipe(opt="rmsprp"))


# ------------------------------------------------------------------ the dry-run contract
def test_dry_run_json_shows_each_rows_recipe_with_sources(cli):
    out = cli("run", "papers/fasternet/table3", "--preset", "paper", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    cells = {c["row"]: c for c in map(json.loads, out.stdout.splitlines())}
    assert set(cells) >= {"t0", "t1", "t2", "s", "m", "l"}
    for cell in cells.values():
        assert {"row", "column", "args", "train", "data", "sources"} <= set(cell)
        for field in ("opt", "lr", "weight_decay", "sched", "batch_size", "epochs"):
            assert field in cell["sources"], (cell["row"], field)
    # Per-variant regularisation (appendix Table 6) reaches each row.
    assert cells["t0"]["train"]["mixup"] != cells["l"]["train"]["mixup"]
    assert cells["l"]["train"]["clip_grad"] is not None and cells["t0"]["train"]["clip_grad"] is None
    assert cells["l"]["args"]["drop_path_rate"] == cells["l"]["train"]["drop_path_rate"]


def test_a_timm_style_config_comes_through_unchanged(cli, tmp_path):
    config = {"opt": "adamw", "lr": 0.002, "weight_decay": 0.05, "sched": "cosine", "warmup_epochs": 20,
              "warmup_lr": 1.0e-6, "min_lr": 1.0e-5, "smoothing": 0.1, "mixup": 0.5, "cutmix": 1.0,
              "aa": "rand-m7-mstd0.5-inc1", "drop_path_rate": 0.2, "clip_grad": 1.0, "epochs": 300,
              "train_interpolation": "bicubic"}
    path = tmp_path / "fasternet_m.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    out = cli("run", "papers/fasternet/table3", "--preset", "paper", "--only", "m|*", "--recipe", str(path),
              "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    cell = json.loads(out.stdout.splitlines()[0])
    assert {k: cell["train"][k] for k in config} == config
    assert {cell["sources"][k] for k in config} == {str(path)}
    path.write_text("opt: adamw\nmodel: fasternet_m\n")
    bad = cli("run", "papers/fasternet/table3", "--recipe", str(path), "--dry-run")
    assert bad.returncode == 2 and "model" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ canaries
def _recipe_without_model_size(preset) -> dict:
    """The recipe's values less what only follows the model's size (EfficientNet-B1..B7's dropout
    and resolution): one canary per recipe, on its first row, keeps CI in minutes (B7 at 600 px took
    334 s for four updates here). Presets with the same values (FasterNet's `paper` and `official`)
    share a canary."""
    train, data = preset.train.model_dump(), preset.data.model_dump()
    for field in ("drop_rate", "drop_path_rate"):
        train.pop(field)
    for key in ("image_size", "crop_pct"):
        data.pop(key, None)
    return {"train": train, "data": data}


def _canary_cells():
    """One cell per distinct recipe of every paper's tables (its first row), under every paper-like
    (non-proxy) preset: classification and detection."""
    seen, out = set(), []
    for paper in list_papers():
        for name in paper.table_names():
            table = load_table(f"{paper.name}/{name}")
            presets = {p for p, body in paper.presets.items() if not body.proxy}
            for preset in sorted(presets):
                try:
                    cells = expand_cells(table, preset)
                except SpecError:
                    continue  # a preset of the other kind (detection)
                for cell in cells:
                    if not cell.runnable or cell.preset.data.name not in ("imagenet", "cifar10", "svhn", "gtsrb", "coco"):
                        continue
                    key = json.dumps([table.paper.name, table.spec.task, _recipe_without_model_size(cell.preset)],
                                     sort_keys=True, default=str)
                    if key not in seen:
                        seen.add(key)
                        out.append(pytest.param(table.id, preset, cell.row, cell.column,
                                                id=f"{table.id}-{preset}-{cell.row}-{cell.column}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("table_id, preset, row, column", _canary_cells())
def test_paper_recipe_canary(table_id, preset, row, column):
    from repro.train.canary import run_canary

    table = load_table(table_id)
    cell = next(c for c in expand_cells(table, preset) if (c.row, c.column) == (row, column))
    # Detection: one image per update (the papers run 1-2 per GPU); a Mask R-CNN at 800 px on this
    # CPU took 9 GB and 100-150 s for four updates of two images.
    result = run_canary(table, cell, steps=4, batch_size=1 if table.spec.task == "detection" else 2)
    assert len(result.losses) == 4 and all(math.isfinite(x) for x in result.losses), result.losses
    assert not result.climbed, f"loss climbed: {result.losses} at lr {result.lrs}"
    expected = cell.args["min_size"] if table.spec.task == "detection" else cell.preset.data.image_size
    assert result.image_size == expected  # the network ran at the recipe's resolution


# ------------------------------------------------------------------ parts a recipe switches on
def test_progressive_resolution_changes_the_train_size_by_epoch():
    """FasterNet's 192 px until epoch 280, then 224: here 24 px, then 32 from epoch 2."""
    from types import SimpleNamespace

    from repro.train.data import ClassificationData

    recipe = _recipe(image_size_schedule={0: 24, 2: 32}, scale=(0.5, 1.0))
    cfg = {"name": "synthetic", "image_size": 32, "num_classes": 4, "train_size": 8, "val_size": 4,
           "augment": "imagenet"}
    data = ClassificationData(cfg, 4, recipe).prepare()
    assert [data.train_image_size(e) for e in (0, 1, 2, 300)] == [24, 24, 32, 32]
    data.trainer = SimpleNamespace(current_epoch=0)
    assert next(iter(data.train_dataloader()))[0].shape[-1] == 24
    data.trainer = SimpleNamespace(current_epoch=2)
    assert next(iter(data.train_dataloader()))[0].shape[-1] == 32
    assert next(iter(data.val_dataloader()))[0].shape[-1] == 32  # evaluation stays at image_size


def test_ema_weights_are_the_ones_evaluated_and_bn_settings_reach_every_layer():
    from repro.train.module import ClassificationModule
    from repro.train.recipe import apply_batchnorm

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 3, 8, 8))
    recipe = _recipe(model_ema=True, model_ema_decay=0.5, bn_momentum=0.01, bn_eps=1e-3)
    apply_batchnorm(model, recipe)
    assert (model[1].momentum, model[1].eps) == (0.01, 1e-3)
    module = ClassificationModule(model, recipe, total_steps=10)
    assert module.eval_model is module.model_ema.module and module.eval_model is not model
    assert not any(p.requires_grad for p in module.model_ema.parameters())  # DDP must not wait for them
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = module.model_ema.module[0].weight.clone()
    module.model_ema.update(model, step=10)  # timm copies on the first update; decay applies after
    after = module.model_ema.module[0].weight
    assert torch.allclose(after, 0.5 * before + 0.5 * model[0].weight)  # decay 0.5: halfway
