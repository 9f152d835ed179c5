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


# Bounds on what a YAML document may hold. The largest shipped file has ~900 nodes, 8 levels and
# 36 kB; the limits are far above that and far below what makes a parse slow: an alias bomb
# ("billion laughs", a few hundred bytes) expands to 10^9 nodes in whatever walks it afterwards
# (pydantic, json.dumps), so it is refused on its expanded size, before anything walks it.
MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000  # counted with aliases expanded
MAX_YAML_CHARS = 4 * 1024 * 1024  # scalar characters, aliases expanded


class _BoundedSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """yaml's safe loader (libyaml's C parser where PyYAML has it: status and dry runs parse every
    paper's YAML, and the pure-Python parser took ~3 s for it) that refuses duplicate keys (YAML
    says they are an error; PyYAML lets the last one win silently), nesting deeper than
    MAX_YAML_DEPTH, and documents whose aliases expand past MAX_YAML_NODES nodes or MAX_YAML_CHARS
    characters, or refer to themselves. The checks walk the composed nodes before anything is built."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_nodes(node, {}, set())
        return self.construct_document(node)


def _duplicate_keys(node) -> None:
    # Merge keys (`<<: *base`) flatten the mapping later, and a key a merge brings in may
    # legitimately be overridden: only keys written in this mapping count.
    first_line = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        ident = (key.tag, key.value)
        if ident in first_line:
            raise yaml.composer.ComposerError(
                None, None, f"duplicate key {key.value!r}, first on line {first_line[ident]}", key.start_mark)
        first_line[ident] = key.start_mark.line + 1


def _check_nodes(node, sizes: dict, open_nodes: set) -> tuple[int, int, int]:
    """(nodes, scalar characters, nesting depth) of `node` with every alias expanded; raises past
    the bounds. Memoised per node, so it costs one visit per distinct node whatever the expansion."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.composer.ComposerError(None, None, "an alias refers to the node that contains it: "
                                          "a recursive document", node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        size = (1, len(node.value), 1)
    else:
        if isinstance(node, yaml.MappingNode):
            _duplicate_keys(node)
        open_nodes.add(key)
        children = [x for pair in node.value for x in pair] if isinstance(node, yaml.MappingNode) else node.value
        nodes, chars, depth = 1, 0, 1
        for child in children:
            n, c, d = _check_nodes(child, sizes, open_nodes)
            nodes, chars, depth = nodes + n, chars + c, max(depth, d + 1)
        open_nodes.discard(key)
        size = (nodes, chars, depth)
    if size[2] > MAX_YAML_DEPTH:
        raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", node.start_mark)
    if size[0] > MAX_YAML_NODES or size[1] > MAX_YAML_CHARS:
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand it to more than {MAX_YAML_NODES} values or "
            f"{MAX_YAML_CHARS // 2**20} MB of text; refused", node.start_mark)
    sizes[key] = size
    return size


def parse_yaml(text: str) -> object:
    """yaml.safe_load within the bounds above; raises yaml.YAMLError."""
    loader = _BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # cannot happen within MAX_YAML_DEPTH; a backstop, not a path
        raise yaml.YAMLError(f"nested too deeply (more than {MAX_YAML_DEPTH} levels)") from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    """(" line N" or "", the problem) of a YAML error, on one line."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return where, " ".join(str(problem).split())


def read_yaml(path: Path) -> object:
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError(f"{path}: is a directory, not a YAML file")
        if path.exists() and not path.is_file():
            raise SpecError(f"{path}: not a regular file (a device, pipe or socket); expected a YAML file")
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_YAML_BYTES:
        raise SpecError(f"{path}: larger than {MAX_YAML_BYTES // 2**20} MB; not a spec file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # a byte-order mark: Windows editors' "Unicode"
        raise SpecError(f"{path}: UTF-16 text, not UTF-8; save it as UTF-8")
    if b"\x00" in data:
        raise SpecError(f"{path}: a binary file (it holds NUL bytes), not YAML text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        where, problem = yaml_problem(exc)
        raise SpecError(f"{path}:{where}: not valid YAML ({problem})") from None


# Names pydantic puts in an error's location for the member of a Union it tried ("int", "float",
# "tuple[float, float]", "constrained-float"): they are not keys the user wrote.
_UNION_MEMBERS = {"int", "float", "str", "bool", "list", "dict", "tuple"}


def _is_union_member(part: str) -> bool:
    return part in _UNION_MEMBERS or "[" in part or part.startswith(("constrained-", "function-"))


def validation_problem(exc: ValidationError, more: bool = True) -> str:
    """`loc.of.field: message` of the most useful error, on one line. An unknown key is usually a
    typo, so it is named first; a value no member of a Union accepts gets each member's complaint."""
    errors = [dict(e, loc=tuple(str(p) for p in e["loc"] if not _is_union_member(str(p))))
              for e in exc.errors()]
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    same_place = [e for e in errors if e["loc"] == first["loc"]]
    messages = list(dict.fromkeys(e["msg"] for e in same_place))
    loc = ".".join(first["loc"]) or "(top level)"
    rest = len(errors) - len(same_place)
    text = f"{loc}: {' / '.join(messages)}" + (f" (+{rest} more)" if more and rest else "")
    return " ".join(text.split())  # one line, whatever the keys hold


def validate(schema, data, path: Path):
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path}: {validation_problem(exc)}") from None
    except RecursionError:  # read_yaml bounds nesting; a dict built in Python may not be
        raise SpecError(f"{path}: nested too deeply") from None


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
        if resolved != name and resolved not in self.presets:
            # The name itself is fine (it is in the choices); the table's alias points nowhere.
            raise SpecError(f"preset {name!r}: this table's `presets:` maps it to {resolved!r}, which is not in "
                            f"{self.name}/presets.yaml ({', '.join(self.presets)}); fix the alias")
        if resolved not in self.presets:
            raise SpecError(f"unknown preset {name!r} for {self.name}; choose one of: {', '.join(self.presets)}")
        return resolved, self.presets[resolved]

    def check(self) -> None:
        """Parse every paper-wide file now (SpecError if one is broken), not on first use."""
        self.published, self.presets, self.row_recipes  # noqa: B018 (cached_property loads)

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


# Paper folders whose published/presets/row_recipes file is broken, as of the last scan: name ->
# (folder, error). They are left out of `list_papers`: one broken folder on REPRO_PAPERS must not
# take down `repro list` or the report of every other paper. Commands that show every paper warn
# about them (broken_papers); naming one directly gives its error.
_BROKEN: dict[str, tuple[Path, SpecError]] = {}


def list_papers() -> list[PaperDir]:
    found, broken = {}, {}  # the first folder of a name wins, broken or not
    for root in papers_roots():
        try:
            folders = sorted(root.iterdir()) if root.is_dir() else []
        except OSError:  # an unreadable REPRO_PAPERS entry is as good as absent
            folders = []
        for p in folders:
            if p.name in found or p.name in broken or not ((p / "__init__.py").exists() and (p / "published.yaml").exists()):
                continue
            paper = _paper_dir(p)
            try:
                paper.check()
            except SpecError as exc:
                broken[p.name] = (p, exc)
                continue
            found[p.name] = paper
    _BROKEN.clear()
    _BROKEN.update(broken)
    return list(found.values())


def broken_papers() -> dict[str, tuple[Path, SpecError]]:
    """The paper folders the last `list_papers` left out, with why."""
    return dict(_BROKEN)


def warn_broken_papers() -> None:
    for folder, exc in _BROKEN.values():
        print(f"repro: warning: skipping paper folder {folder}: {exc}", file=sys.stderr)


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


def _unknown_paper(name: str, known: dict) -> SpecError:
    if name in _BROKEN:  # it exists, but a file of it is broken: that is the news
        return _BROKEN[name][1]
    return SpecError(f"unknown paper {name!r}; known papers: {', '.join(sorted(known))}")


def resolve_paper(ref: str) -> PaperDir:
    """`papers/shufflenet` or `shufflenet`."""
    name = Path(ref.strip().rstrip("/")).name
    known = {p.name: p for p in list_papers()}
    if name not in known:
        raise _unknown_paper(name, known)
    return known[name]


def _check_file_is_the_installed_spec(ref: str, installed: Path) -> None:
    """A table is named by paper and table, from any directory; but a ref that is also a path to
    an existing file must be that very spec. `repro run /elsewhere/shufflenet/table2` would
    otherwise run the installed table2 while the user edits another copy."""
    given = Path(ref).expanduser()
    candidates = [given] if given.suffix in (".yaml", ".yml") else [given.with_suffix(".yaml"), given.with_suffix(".yml"), given]
    on_disk = next((c for c in candidates if c.exists()), None)
    if on_disk is not None and on_disk.resolve() != installed.resolve():
        raise SpecError(f"{ref!r} is the file {on_disk.resolve()}, not the installed spec {installed}; repro runs the "
                        f"specs of installed papers only (papers/ and ${EXTRA_PAPERS_ENV}): put its paper folder on "
                        f"${EXTRA_PAPERS_ENV} under another name, or edit the installed spec")


def resolve_table(ref: str, check_path: bool = False) -> tuple[PaperDir, str]:
    """`papers/shufflenet/table2`, `papers/shufflenet/table2.yaml` or `shufflenet/table2`.
    `check_path` (a ref typed by a user): a ref that is an existing file must be the installed spec."""
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
    if paper_name not in known and paper_name == "papers":  # `papers/<paper>`: a paper, not a table
        if table_name in known:
            raise SpecError(f"{ref!r} is a paper, not a table; its tables: "
                            f"{', '.join(f'papers/{table_name}/{t}' for t in known[table_name].table_names())}")
        raise _unknown_paper(table_name, known)
    if paper_name not in known:
        raise _unknown_paper(paper_name, known)
    paper = known[paper_name]
    if check_path:
        _check_file_is_the_installed_spec(ref, paper.path / f"{table_name}.yaml")
    if table_name not in paper.table_names():
        raise SpecError(f"unknown table {table_name!r} in {paper_name}; tables: {', '.join(paper.table_names())}")
    return paper, table_name


def load_table(ref: str, check_path: bool = False) -> Table:
    paper, name = resolve_table(ref, check_path)
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
