"""Find paper folders and table specs; parse YAML safely and validate it against the schema."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import ValidationError

from repro.errors import SpecError
from repro.spec.schema import Preset, PublishedPaper, RowRecipe, Strict, TableSpec


class _RowRecipes(Strict):
    presets: dict[str, RowRecipe]

DATA_FILES = {"published.yaml", "presets.yaml", "row_recipes.yaml"}
# Extra folders holding paper packages (os.pathsep-separated), for papers kept outside this repo.
EXTRA_PAPERS_ENV = "REPRO_PAPERS"


def papers_root() -> Path:
    import papers

    return Path(papers.__file__).parent


def papers_roots() -> list[Path]:
    extra = [Path(p).expanduser().resolve() for p in os.environ.get(EXTRA_PAPERS_ENV, "").split(os.pathsep) if p]
    return [papers_root(), *extra]


def read_yaml(path: Path) -> object:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}:{where}: not valid YAML ({problem})") from None


def validate(schema, data, path: Path):
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        # An unknown key is usually a typo, and the most useful thing to name.
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        message = f"{path}: {loc}: {err['msg']}{more}"
        raise SpecError(" ".join(message.split())) from None  # one line, whatever the keys hold


@dataclass(frozen=True)
class PaperDir:
    """One `papers/<name>/` folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def published(self) -> PublishedPaper:
        return validate(PublishedPaper, read_yaml(self.path / "published.yaml"), self.path / "published.yaml")

    @cached_property
    def presets(self) -> dict[str, Preset]:
        path = self.path / "presets.yaml"
        raw = read_yaml(path)
        if not isinstance(raw, dict) or not raw:
            raise SpecError(f"{path}: expected a mapping of preset name -> preset")
        return {name: validate(Preset, body, path) for name, body in raw.items()}

    @cached_property
    def row_recipes(self) -> dict[str, dict[str, RowRecipe]]:
        """`row_recipes.yaml`: named per-row recipe fields (a variant's), per preset; optional."""
        path = self.path / "row_recipes.yaml"
        if not path.exists():
            return {}
        raw = read_yaml(path)
        if not isinstance(raw, dict):
            raise SpecError(f"{path}: expected a mapping of recipe name -> preset -> fields")
        return {name: validate(_RowRecipes, {"presets": body}, path).presets for name, body in raw.items()}

    def table_names(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.yaml") if p.name not in DATA_FILES)

    def preset(self, name: str, spec: TableSpec | None = None) -> tuple[str, Preset]:
        """The preset a table runs under `name`; a spec may alias e.g. paper -> paper_cifar."""
        resolved = (spec.presets.get(name, name) if spec else name)
        if resolved not in self.presets:
            raise SpecError(f"unknown preset {name!r} for {self.name}; choose one of: {', '.join(self.presets)}")
        return resolved, self.presets[resolved]

    @property
    def package(self) -> str:
        """The importable name: `papers.<name>` in this repo, `<name>` in a REPRO_PAPERS folder."""
        if self.path.parent == papers_root():
            return f"papers.{self.name}"
        if str(self.path.parent) not in sys.path:
            sys.path.insert(0, str(self.path.parent))
        return self.name

    def models_module(self):
        import importlib

        return importlib.import_module(f"{self.package}.models")


# Parsed folders and tables, reused while their files are unchanged: the report and init_from
# resolution load the same YAML many times in one process.
_PAPERS: dict[Path, tuple[tuple, "PaperDir"]] = {}
_TABLES: dict[Path, tuple[tuple, "Table"]] = {}


def _mtimes(*paths: Path) -> tuple:
    return tuple(p.stat().st_mtime_ns if p.exists() else None for p in paths)


def _paper_dir(path: Path) -> PaperDir:
    stamp = _mtimes(path / "published.yaml", path / "presets.yaml", path / "row_recipes.yaml")
    cached = _PAPERS.get(path)
    if cached is None or cached[0] != stamp:
        cached = _PAPERS[path] = (stamp, PaperDir(path))
    return cached[1]


def list_papers() -> list[PaperDir]:
    found = {}
    for root in papers_roots():
        if root.is_dir():
            for p in sorted(root.iterdir()):
                if (p / "__init__.py").exists() and (p / "published.yaml").exists():
                    found.setdefault(p.name, _paper_dir(p))
    return list(found.values())


@dataclass(frozen=True)
class Table:
    paper: PaperDir
    name: str
    spec: TableSpec

    @property
    def id(self) -> str:
        return f"{self.paper.name}/{self.name}"

    @property
    def path(self) -> Path:
        return self.paper.path / f"{self.name}.yaml"


def resolve_table(ref: str) -> tuple[PaperDir, str]:
    """`papers/shufflenet/table2`, `papers/shufflenet/table2.yaml` or `shufflenet/table2`."""
    ref = ref.strip().rstrip("/")
    path = Path(ref)
    if path.suffix in (".yaml", ".yml"):
        path = path.with_suffix("")
    parts = path.parts
    if len(parts) >= 2 and parts[-2] and parts[-1]:
        paper_name, table_name = parts[-2], parts[-1]
    else:
        raise SpecError(f"{ref!r} is not a table path; expected papers/<paper>/<table>, e.g. papers/shufflenet/table2")
    known = {p.name: p for p in list_papers()}
    if paper_name not in known:
        raise SpecError(f"unknown paper {paper_name!r}; known papers: {', '.join(sorted(known))}")
    paper = known[paper_name]
    if table_name not in paper.table_names():
        raise SpecError(f"unknown table {table_name!r} in {paper_name}; tables: {', '.join(paper.table_names())}")
    return paper, table_name


def load_table(ref: str) -> Table:
    paper, name = resolve_table(ref)
    path = paper.path / f"{name}.yaml"
    stamp = (_mtimes(path), id(paper))
    cached = _TABLES.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    spec = validate(TableSpec, read_yaml(path), path)
    table = Table(paper, name, spec)
    check_against_published(table)
    for row in spec.rows:
        if isinstance(row.recipe, str) and row.recipe not in paper.row_recipes:
            raise SpecError(f"{path}: row {row.id!r}: recipe {row.recipe!r} is not in {paper.name}/row_recipes.yaml")
    _TABLES[path] = (stamp, table)
    return table


def check_against_published(table: Table) -> None:
    """Every cell of the spec must point at a row/column of the published table it reproduces."""
    published = table.paper.published.tables.get(table.spec.table)
    if published is None:
        raise SpecError(f"{table.path}: table {table.spec.table!r} is not in {table.paper.name}/published.yaml")
    for row in table.spec.rows:
        if row.id not in published.rows:
            raise SpecError(f"{table.path}: row {row.id!r} is not a row of published {table.spec.table}")
    for col in table.spec.columns:
        if col.id not in published.columns:
            raise SpecError(f"{table.path}: column {col.id!r} is not a column of published {table.spec.table}")
    ref = table.spec.complexity
    if ref and ref.column and ref.column not in published.columns:
        raise SpecError(f"{table.path}: complexity column {ref.column!r} is not in published {table.spec.table}")
