"""The recipe a cell trains with: preset, then the row's own fields, then the command line; checked
so that every field it sets is one the run reads, with the source of each field kept beside it.

No heavy imports here: `repro run --dry-run` resolves every cell of a table through this module.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from repro.data import DETECTION_DATASETS, augment_style, unknown_keys
from repro.errors import ConfigError, SpecError
from repro.spec.load import validation_problem
from repro.spec.schema import Preset, TrainRecipe

# Builder arguments the recipe's regularisation fields set, in order of preference.
DROP_RATE_ARGS = ("drop_rate", "dropout")
DROP_PATH_ARGS = ("drop_path_rate",)

# Fields only a classification run reads, and only a detection run reads.
CLASSIFICATION_ONLY = ("smoothing", "mixup", "cutmix", "cutmix_minmax", "aa", "color_jitter", "scale", "ratio",
                       "reprob", "train_interpolation", "hflip", "image_size_schedule", "precise_bn_batches",
                       "model_ema", "drop_rate")
DETECTION_ONLY = ("detector",)
# Training augmentation read by the timm transform (data.augment `imagenet`); `cifar` reads hflip.
IMAGENET_AUGMENTATION = ("aa", "color_jitter", "scale", "ratio", "reprob", "train_interpolation")
COMMAND_LINE = "--set on the command line"
# Parts of a key that name a credential. No recipe or data field has one, and a value given under
# such a key would be written to config.json, result.json and W&B: secrets go in the environment.
SECRET_WORDS = ("token", "secret", "password", "passwd", "passphrase", "api_key", "apikey", "access_key",
                "private_key", "credential")


def looks_secret(key: str) -> bool:
    """`data.api_token`, `train.HF-Token`, `wandb.apiKey`: a key that names a credential."""
    flat = key.lower().replace("-", "_")
    return any(word in flat or word.replace("_", "") in flat.replace("_", "") for word in SECRET_WORDS)


def unread_fields(recipe: TrainRecipe, task: str, style: str) -> list[str]:
    """Fields set away from their default that this run would not read."""
    set_fields = [name for name, f in TrainRecipe.model_fields.items() if getattr(recipe, name) != f.default]
    unread = set(DETECTION_ONLY if task == "classification" else CLASSIFICATION_ONLY)
    if style != "imagenet":
        unread |= set(IMAGENET_AUGMENTATION)
    if style == "none":
        unread.add("hflip")
    if not recipe.model_ema:
        unread.add("model_ema_decay")
    if recipe.mixup == 0 and recipe.cutmix == 0:
        unread |= {"cutmix_minmax", "mixup_prob", "mixup_switch_prob", "mixup_mode"}
    if recipe.sched != "step":
        unread.add("decay_epochs")
    if recipe.sched != "multistep":
        unread.add("decay_milestones")
    if recipe.sched not in ("step", "multistep", "poly"):
        unread.add("decay_rate")
    if recipe.sched in ("constant", "none"):
        unread.add("min_lr")
    if not recipe.warmup_epochs and not recipe.warmup_steps:
        unread.add("warmup_lr")
    if recipe.clip_grad is None:
        unread.add("clip_mode")
    if recipe.opt.lower() not in ("sgd", "momentum", "nesterov", "rmsprop", "rmsproptf", "sgdp", "lars", "nlars",
                                  "larc", "nlarc", "lamb", "lion", "sgdw", "nesterovw"):
        unread.add("momentum")
    return sorted(name for name in set_fields if name in unread)


def check_recipe(preset: Preset, task: str, where: str, sources: dict[str, str]) -> None:
    """A preset a cell runs: every data key read by its dataset, every recipe field by the run,
    every source naming a field."""
    data = preset.data.model_dump()
    if (data["name"] in DETECTION_DATASETS) != (task == "detection"):
        raise SpecError(f"{where}: the preset trains on {data['name']!r}, which does not suit a {task} table; "
                        "pick a preset of this table's kind")
    stale = sorted(set(sources) - set(data) - set(TrainRecipe.model_fields))
    if stale:
        raise SpecError(f"{where}: sources.{stale[0]} names no train or data field")
    unknown = unknown_keys(data)
    if unknown:
        raise SpecError(f"{where}: data.{unknown[0]} is not read by dataset {data['name']!r} "
                        f"(it would change the cell's id, not its run)")
    unread = unread_fields(preset.train, task, augment_style(data))
    if unread:
        raise SpecError(f"{where}: train.{unread[0]} is set but a {task} run with data.augment "
                        f"{augment_style(data)!r} and this recipe never reads it; remove it")


def model_overrides(recipe: TrainRecipe, accepted: set[str]) -> dict:
    """Builder arguments the recipe sets (drop_rate, drop_path_rate); SpecError when the model
    has no such argument."""
    overrides = {}
    for field_name, names in (("drop_rate", DROP_RATE_ARGS), ("drop_path_rate", DROP_PATH_ARGS)):
        value = getattr(recipe, field_name)
        if value is None:
            continue
        target = next((n for n in names if n in accepted), None)
        if target is None:
            raise SpecError(f"train.{field_name} is set but the model has no argument for it ({' / '.join(names)})")
        overrides[target] = value
    return overrides


def _validated(body: dict, what: str) -> Preset:
    try:
        return Preset.model_validate(body)
    except ValidationError as exc:
        raise SpecError(f"{what}: {validation_problem(exc, more=False)}") from None


def with_row_recipe(preset: Preset, preset_name: str, row, where: str,
                    named: dict | None = None) -> tuple[Preset, dict[str, str]]:
    """The preset with the row's own fields for `preset_name`, and the sources of the result.
    `named`: the paper's row_recipes.yaml, for a row that names its entry."""
    sources = dict(preset.sources)
    recipes = (named or {}).get(row.recipe, {}) if isinstance(row.recipe, str) else row.recipe
    own = recipes.get(preset_name)
    if own is None:
        return preset, sources
    body = preset.model_dump(exclude_unset=False)
    body["train"] = {**body["train"], **own.train}
    body["data"] = {**body["data"], **own.data}
    missing = [k for k in sorted(set(own.train) | set(own.data)) if k not in own.sources]
    if missing and not preset.proxy:
        raise SpecError(f"{where}: row {row.id!r} sets {missing[0]} for preset {preset_name!r} without a source")
    sources.update(own.sources)
    return _validated(body, f"{where}: row {row.id!r}, preset {preset_name!r}"), sources


def apply_overrides(preset: Preset, overrides: dict[str, Any]) -> Preset:
    """`{"train.lr": 0.1, "data.train_size": 512}` on top of a preset, validated like the file."""
    body = preset.model_dump()
    for key, value in overrides.items():
        section, _, field_name = key.partition(".")
        if section not in ("train", "data") or not field_name:
            raise ConfigError(f"--set {key}: expected train.<field> or data.<field>, e.g. train.lr=0.1")
        if section == "train" and field_name not in body["train"]:
            raise ConfigError(f"--set {key}: the recipe has no field {field_name!r}; fields: {', '.join(body['train'])}")
        body[section][field_name] = value
        if field_name == "max_steps":
            body[section]["epochs"] = None
        elif field_name == "epochs":
            body[section]["max_steps"] = None
    try:
        return Preset.model_validate(body)
    except ValidationError as exc:
        raise ConfigError(f"--set: {validation_problem(exc, more=False)}") from None


def recipe_record(preset: Preset, sources: dict[str, str]) -> dict:
    """The resolved recipe as the dry-run JSON shows it: every field under timm's name, the data
    and evaluation protocol, and the source of each field that has one."""
    train, data = preset.train.model_dump(), preset.data.model_dump()
    return {"train": train, "data": data,
            "sources": {k: v for k, v in sources.items() if k in train or k in data}}
