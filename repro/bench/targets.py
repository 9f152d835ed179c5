"""What to benchmark: a table's runnable cells (deduplicated) or one `paper:model[:json-args]`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from repro.errors import ConfigError, ReproError


@dataclass
class BenchModel:
    paper: str
    model: str
    args: dict
    image_size: int           # the paper's resolution for this model (overridable by --image-size)
    num_classes: int
    build: Callable[[], object] = field(repr=False)
    label: str = ""           # where it came from, e.g. "table2 1x / g=3"

    @property
    def name(self) -> str:
        args = json.dumps(self.args, sort_keys=True, separators=(",", ":"))
        return f"{self.paper}:{self.model}:{args}"


def resolve_target(target: str) -> list[BenchModel]:
    """A table path (papers/<paper>/<table>) or `paper:model[:json-args]`; a bad one is a ReproError."""
    target = target.strip()
    if ":" in target:
        return [_single_model(target)]
    if "/" in target:
        return _table_models(target)
    raise ConfigError(f"bench target {target!r}: expected a table path (papers/shufflenet/table2), "
                      f"a model (shufflenet:shufflenet_v1 or 'ghostnet:ghostnet:{{\"width\": 1.0}}'), 'data' or 'overhead'")


def _table_models(ref: str) -> list[BenchModel]:
    from repro.complexity import paper_num_classes
    from repro.spec import expand_cells, load_table
    from repro.spec.cells import builder_for

    table = load_table(ref)
    num_classes = paper_num_classes(table)
    seen, out = set(), []
    for cell in expand_cells(table, "paper"):
        if not cell.runnable:
            continue
        key = (cell.model, json.dumps(cell.args, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        builder = builder_for(table, cell.model)
        out.append(BenchModel(table.paper.name, cell.model, dict(cell.args), cell.complexity_input_size, num_classes,
                              _bind(builder, cell.args, num_classes), f"{table.spec.table} {cell.row} / {cell.column}"))
    if not out:
        raise ConfigError(f"{ref}: no runnable cell to benchmark")
    return out


def _single_model(target: str) -> BenchModel:
    from repro.spec.load import list_papers

    paper_name, _, rest = target.partition(":")
    model, _, raw_args = rest.partition(":")
    papers = {p.name: p for p in list_papers()}
    if paper_name not in papers:
        raise ConfigError(f"bench target {target!r}: unknown paper {paper_name!r}; known: {', '.join(sorted(papers))}")
    paper = papers[paper_name]
    models = getattr(paper.models_module(), "MODELS", {})
    if model not in models:
        raise ConfigError(f"bench target {target!r}: {paper_name} has no model {model!r}; it defines: {', '.join(sorted(models))}")
    try:
        args = json.loads(raw_args) if raw_args else {}
    except ValueError as exc:
        raise ConfigError(f"bench target {target!r}: model arguments are not JSON ({exc.msg})") from None
    if not isinstance(args, dict):
        raise ConfigError(f"bench target {target!r}: model arguments must be a JSON object, e.g. '{{\"scale\": 0.5}}'")
    size, num_classes = _paper_resolution(paper, model, args)
    return BenchModel(paper_name, model, args, size, num_classes, _bind(models[model], args, num_classes), "model")


def _paper_resolution(paper, model: str, args: dict) -> tuple[int, int]:
    """The input size a table of the paper gives this model (e.g. 300 for B3), else the paper
    preset's image size, else 224; and the paper preset's class count."""
    from repro.spec import expand_cells, load_table

    num_classes, size = 1000, None
    preset = paper.presets.get("paper")
    if preset is not None:
        num_classes, size = preset.data.num_classes, preset.data.image_size
    for name in paper.table_names():
        try:
            cells = expand_cells(load_table(f"{paper.name}/{name}"), "paper")
        except ReproError:
            continue
        for cell in cells:
            if cell.model == model and all(cell.args.get(k) == v for k, v in args.items()):
                return cell.complexity_input_size, cell.preset.data.num_classes
    return size or 224, num_classes


def _bind(builder, args: dict, num_classes: int):
    def build():
        try:
            return builder(**args, num_classes=num_classes)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"cannot build {getattr(builder, '__name__', builder)}({args}): {exc}") from None
    return build
