"""`repro`: the command line. Thin: parse, call the framework, print. Heavy imports are lazy.

Every user error is one line on stderr (`repro: ...`) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from repro.errors import ConfigError, ReproError, RunFailed


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _store(args):
    from repro.store import Store

    return Store(args.store)


# ------------------------------------------------------------------ commands
def cmd_list(args) -> int:
    from repro.spec.load import list_papers, warn_broken_papers

    papers = list_papers()
    warn_broken_papers()
    for paper in papers:
        pub = paper.published
        print(f"{paper.name}  ({pub.paper}, arXiv {pub.arxiv}{pub.version or ''})")
        presets = [name + (" (proxy)" if preset.proxy else "") for name, preset in paper.presets.items()]
        print(f"  presets: {', '.join(presets)}")
        for name in paper.table_names():
            print(f"  papers/{paper.name}/{name}")
    return 0


def _parse_set(items: list[str] | None) -> dict:
    import yaml

    from repro.spec.load import parse_yaml, yaml_problem
    from repro.spec.recipes import looks_secret

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=0.1")
        if looks_secret(key):
            # Never echo the value: it would land in the shell's scrollback and CI logs.
            raise ConfigError(f"--set {key}: looks like a secret; --set values are recorded in config.json, result.json "
                              "and W&B, so pass secrets in environment variables (e.g. WANDB_API_KEY), never --set")
        try:
            overrides[key] = parse_yaml(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: the value is not valid YAML ({yaml_problem(exc)[1]})") from None
    return overrides


def _cells(args):
    from repro.spec import expand_cells, load_table

    table = load_table(args.table, check_path=True)
    overrides, sources = overrides_of(args)
    cells = expand_cells(table, args.preset, seeds=args.seeds, overrides=overrides, override_sources=sources)
    only = getattr(args, "only", None)
    if only:
        wanted = []
        for pattern in only:
            row, sep, col = pattern.partition("|")
            if not sep:
                raise ConfigError(f"--only {pattern!r}: expected ROW|COLUMN (either may be *), e.g. --only '1x|g=3'")
            wanted.append((row.strip(), col.strip()))
        cells = [c for c in cells if any(r in ("*", c.row) and k in ("*", c.column) for r, k in wanted)]
        if not cells:
            raise ConfigError(f"--only {' '.join(only)} matches no cell of {table.id}; see `repro run {args.table} --dry-run`")
    return table, cells


def overrides_of(args) -> tuple[dict, dict]:
    """The preset overrides a run command gives (--recipe FILE, then --set), and their sources."""
    overrides, sources = _recipe_file(getattr(args, "recipe", None))
    command_line = _parse_set(getattr(args, "set", None))
    overrides.update(command_line)
    for key in command_line:
        sources.pop(key, None)
    return overrides, sources


def _recipe_file(path) -> tuple[dict, dict]:
    """`--recipe FILE`: recipe fields in timm train.py's names (an official timm-style config) as
    overrides, each sourced to the file; a key no recipe field has is refused, naming it."""
    if not path:
        return {}, {}
    from repro.spec.load import read_yaml
    from repro.spec.schema import TrainRecipe

    body = read_yaml(Path(path))
    if not isinstance(body, dict):
        raise ConfigError(f"--recipe {path}: expected a mapping of recipe fields, e.g. 'lr: 0.004'")
    unknown = [k for k in body if k not in TrainRecipe.model_fields]
    if unknown:
        raise ConfigError(f"--recipe {path}: {unknown[0]!r} is not a recipe field (repro reads timm train.py's "
                          "recipe names: opt, lr, sched, mixup, aa, ...); remove it")
    return {f"train.{k}": v for k, v in body.items()}, {f"train.{k}": str(path) for k in body}


# Lightning's `ddp` strategy re-runs this command line in one child process per extra device. The
# parent names the cells it is about to run here, so each child trains exactly the same ones (the
# children must not re-plan: the parent's live "running" state would make them skip its cells).
DDP_CELLS_ENV = "REPRO_DDP_CELLS"


def _ddp_child_cells(cells, store):
    """The cells this process trains as a DDP rank > 0, or None when it is rank 0 / single-process."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and DDP_CELLS_ENV in os.environ:
        by_id = {c.id: c for c in cells}
        return [by_id[i] for i in os.environ[DDP_CELLS_ENV].split(",") if i in by_id]
    if os.environ.get("SLURM_PROCID", "0") != "0" and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        # srun started every rank at once (slurm/ddp.sbatch): all ranks take the cells not yet done.
        seen = set()
        return [c for c in cells if c.runnable and not store.is_done(c.id) and not (c.id in seen or seen.add(c.id))]
    return None


def _reclaim_own_job(todo, store) -> None:
    """A requeued SLURM job finds its own cells marked in flight (by itself, before the requeue)."""
    from repro.store.claim import slurm_job_id

    job = slurm_job_id()
    if job is None:
        return
    for cell in list(todo.in_flight):
        state = store.state(cell.id)
        if state is not None and state.job_id == job:
            todo.in_flight.remove(cell)
            todo.todo.append(cell)


def _run_options(args, store):
    from repro.train.run import RunOptions

    return RunOptions(store=store, data_root=args.data_root, wandb_mode=args.wandb,
                      accelerator="gpu" if args.gpus else "cpu", devices=args.gpus or args.cpus or 1,
                      num_nodes=args.nodes, fast=getattr(args, "fast", False),
                      wait=getattr(args, "wait", False), restart=getattr(args, "restart", False),
                      threads=getattr(args, "threads", None))


def cmd_run(args) -> int:
    from repro.launch import plan

    if args.launcher == "local" and args.nodes > 1:
        raise ConfigError("--nodes > 1 needs a cluster launcher: add --launcher slurm")
    if getattr(args, "fast", False) and args.launcher != "local":
        raise ConfigError(f"--fast: the fast training path runs with --launcher local only (not {args.launcher}) in this version")
    if args.gpus and args.cpus:
        raise ConfigError("--gpus and --cpus both given: --gpus N trains on N GPUs, --cpus N on N CPU processes; pick one")
    table, cells = _cells(args)
    if getattr(args, "fast", False) and table.spec.task != "classification":
        raise ConfigError(f"--fast: {table.id} is a {table.spec.task} table; the fast path covers classification only")
    store = _store(args)
    child_cells = _ddp_child_cells(cells, store) if args.launcher == "local" and not args.dry_run else None
    if child_cells is not None:
        from repro.launch.local import run_local

        run_local(table, child_cells, _run_options(args, store), progress=False)
        return 0
    todo = plan(cells, store)
    if args.launcher == "local":
        _reclaim_own_job(todo, store)
        if getattr(args, "wait", False):  # train them once their holder lets go
            todo.todo.extend(todo.in_flight)
            todo.in_flight.clear()
    if args.dry_run:
        return _print_plan_json(cells, todo) if args.json else _print_plan(table, cells, store, todo)
    if args.json:
        raise ConfigError("--json describes a plan: add --dry-run")
    store.check_writable()
    _check_devices(args)
    _check_buildable(table, todo.todo)
    if args.launcher == "local":  # a cluster's nodes may see data this machine does not
        _check_data(todo.todo, args.data_root)
    print(f"{table.id} [{args.preset}]: {todo.summary()}; store {store.root}", flush=True)
    if args.launcher == "local":
        from repro.launch.local import run_local

        opts = _run_options(args, store)
        if opts.devices * opts.num_nodes > 1:
            os.environ[DDP_CELLS_ENV] = ",".join(c.id for c in todo.todo)
        run_local(table, todo.todo, opts, progress=not args.no_progress)
    else:
        from repro.launch import launch_remote

        code = launch_remote(args, table, todo, store)
        if args.launcher == "slurm" or code != 0:  # slurm returns at submit; ray has finished: report
            return code
    report_error = report_line = None
    if not args.no_report:
        from repro.report.render import default_report_path, report_written_line, write_report

        # The user's report goes beside their store, never over the REPORT.md this repository ships.
        out = Path(args.report) if args.report else default_report_path(store)
        try:
            report_line = report_written_line(out, write_report(store, out))
        except ReproError as exc:  # the results are in the store: show them, then say what failed
            report_error = exc
    _print_table(table, cells, store)
    if report_line:
        print(report_line)
    if report_error is not None:
        raise RunFailed(f"{report_error} (the results are kept in {store.root}: "
                        f"`repro report --store {store.root} --out FILE` renders them)")
    return 0


def _check_devices(args) -> None:
    if args.gpus:
        import torch

        if args.launcher == "local" and not torch.cuda.is_available():
            raise ConfigError(f"--gpus {args.gpus} asked for, but this machine has no CUDA GPU; drop --gpus to train on CPU")
        if args.launcher == "local" and torch.cuda.device_count() < args.gpus:
            raise ConfigError(f"--gpus {args.gpus} asked for, but this machine has {torch.cuda.device_count()}")


def _check_data(cells, data_root) -> None:
    """Open every dataset the cells train and evaluate on before the first cell starts: a missing
    dataset is one line and an untouched store, not a failed cell found minutes in."""
    from repro.data import build_dataset

    seen = set()
    for cell in cells:
        cfg = cell.preset.data.model_dump()
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            for split in ("train", "val"):
                build_dataset(cfg, split, data_root)


def _check_buildable(table, cells) -> None:
    """Build every model on the meta device first, so a bad argument fails before any training."""
    from repro.spec.cells import build_model

    seen = set()
    for cell in cells:
        key = (cell.model, json.dumps(cell.args, sort_keys=True))
        if key not in seen:
            seen.add(key)
            build_model(table, cell, meta=True)


def _print_plan(table, cells, store, todo) -> int:
    status = {c.id: "run" for c in todo.todo} | {c.id: "done" for c in todo.done} | {c.id: "in flight" for c in todo.in_flight}
    print(f"{table.id}: {len(cells)} cells; {todo.summary()}")
    for c in cells:
        what = status.get(c.id) if c.runnable else ("published only (not built here)" if c.model is None else c.skip)
        print(f"  {c.id}  {c.row:>24} | {c.column:<12} seed {c.seed}  {c.model or '-'} {json.dumps(c.args) if c.model else ''}  -> {what}")
    return 0


def _print_plan_json(cells, todo) -> int:
    from repro.spec.recipes import recipe_record

    status = {c.id: "run" for c in todo.todo} | {c.id: "done" for c in todo.done} | {c.id: "in flight" for c in todo.in_flight}
    for c in cells:
        record = {"cell_id": c.id, "table": c.table_id, "row": c.row, "column": c.column, "seed": c.seed,
                  "preset": c.preset_name, "proxy": c.preset.proxy, "model": c.model, "args": c.args,
                  "init_from": c.init_from, "status": status.get(c.id) if c.runnable else "not run",
                  "skip": c.skip, **(recipe_record(c.preset, c.sources) if c.runnable else {})}
        print(json.dumps(record, default=str))
    return 0


def _print_table(table, cells, store) -> None:
    metric = table.spec.metric.name
    print(f"\n{table.id}: {table.spec.title} ({metric}, {table.spec.metric.better} is better)")
    print(f"{'row':>24} | {'column':<12} | {'paper':>6} | {'ours':>6} | preset")
    for c in cells:
        result = store.result(c.id) if c.runnable else None
        ours = f"{result['metrics'].get(metric, float('nan')):6.1f}" if result else "     -"
        pub = f"{c.published:6.1f}" if c.published is not None else "     -"
        tag = f"{c.preset_name}{' (proxy: not comparable)' if c.preset.proxy else ''}" if result else ""
        print(f"{c.row:>24} | {c.column:<12} | {pub} | {ours} | {tag}")


def cmd_report(args) -> int:
    from repro.report.render import check_readable_store, default_report_path, report_written_line, write_report

    store = _store(args)
    check_readable_store(store)
    out = Path(args.out) if args.out else default_report_path(store)
    print(report_written_line(out, write_report(store, out, tables=args.tables or None)))
    return 0


def cmd_complexity(args) -> int:
    from repro.complexity import COUNTING_RULE, cell_complexity
    from repro.spec import expand_cells, load_table

    table = load_table(args.table, check_path=True)
    rows = []
    for cell in expand_cells(table, "paper"):
        rec = {"cell_id": cell.id, "row": cell.row, "column": cell.column, "model": cell.model, "args": cell.args,
               "published_mflops": cell.published_complexity}
        if cell.runnable:
            c = cell_complexity(table, cell)
            rec.update(params=c["params"], mflops=round(c["mflops"], 3), input_size=c["input_size"])
        else:
            rec["skip"] = cell.skip or "published only (not built here)"
        rows.append(rec)
    if args.json:
        for rec in rows:
            print(json.dumps(rec))
        return 0
    print(f"{table.id}: {COUNTING_RULE}")
    for r in rows:
        ours = (f"params {r['params'] / 1e6:7.3f}M | {r['mflops']:9.2f} MFLOPs" if "params" in r
                else f"{'(' + r['skip'] + ')':<36}")
        print(f"{r['row']:>24} | {r['column']:<12} | {ours} | paper {r['published_mflops']}")
    return 0


def cmd_published(args) -> int:
    from repro.spec.load import list_papers, load_table, resolve_paper
    from repro.spec.published import published_records

    ref = args.ref.strip().rstrip("/")
    parts = Path(ref.removesuffix(".yaml")).parts
    papers = {p.name: p for p in list_papers()}
    if parts and parts[-1] in papers:
        records = published_records(papers[parts[-1]])
    elif len(parts) == 1 or parts[-2] == "papers":  # `papers/<name>` or `<name>`: a paper that is not there
        records = published_records(resolve_paper(ref))
    else:
        table = load_table(ref, check_path=True)
        records = published_records(table.paper, table.spec.table)
    if args.json:
        for rec in records:
            print(json.dumps(rec))
    else:
        for r in records:
            print(f"{r['paper']} {r['table']} | {r['row_label']} | {r['column_label']}: {r['value']} {r['unit']}  [{r['source']}]")
    return 0


def cmd_status(args) -> int:
    from repro.launch.status import presets_held, print_status
    from repro.spec import load_table

    store = _store(args)
    if args.preset is not None:
        table, cells = _cells(args)
        return print_status(table, cells, store, args.preset)
    # No --preset: every preset this store holds runs of for the table, so a proxy quickstart's
    # store does not read as "15 pending" under the paper preset it never ran.
    table = load_table(args.table, check_path=True)
    cells_of = lambda preset: _cells(argparse.Namespace(**{**vars(args), "preset": preset}))[1]  # noqa: E731
    held = presets_held(table, store, cells_of)
    if not held:
        return print_status(table, cells_of("paper"), store, "paper",
                            note="the store holds no runs of this table under any preset; showing preset 'paper'")
    for i, (preset, cells) in enumerate(held.items()):
        if i:
            print()
        print_status(table, cells, store, preset)
    return 0


def cmd_sweep(args) -> int:
    from repro.launch.sweep import run_sweep

    return run_sweep(args)


def cmd_bench(args) -> int:
    from repro.bench import run_bench

    return run_bench(args)


def cmd_collect(args) -> int:
    from repro.track.collect import collect

    return collect(args)


def cmd_sync(args) -> int:
    from repro.track.collect import sync

    return sync(args)


# ------------------------------------------------------------------ parser
class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="repro", description="Reproduce the tables of efficient-CNN papers.")
    p.add_argument("--version", action="version", version="repro 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    def add_store(sp):
        sp.add_argument("--store", default=None, help="results store directory (default: $REPRO_STORE or ./runs)")

    sp = sub.add_parser("list", help="papers, tables and presets")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("run", help="run the cells of a table and refresh the report")
    sp.add_argument("table", help="table of an installed paper (papers/ or $REPRO_PAPERS), e.g. papers/shufflenet/table2, "
                                  "from any directory; a path to an existing spec file elsewhere is an error, never "
                                  "silently the installed spec of the same name")
    sp.add_argument("--preset", default="paper", help="preset from the paper's presets.yaml (paper, proxy, test)")
    sp.add_argument("--seeds", type=_positive_int, default=1, help="seeds per cell (default 1)")
    sp.add_argument("--dry-run", action="store_true", help="print the cells and what would run, run nothing")
    sp.add_argument("--json", action="store_true",
                    help="with --dry-run: one JSON object per cell (row, column, model args, the resolved recipe "
                         "under timm's field names, and each field's source)")
    sp.add_argument("--only", action="append", metavar="ROW|COLUMN", help="run only matching cells (repeatable; * matches any)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a preset field, e.g. --set train.lr=0.1 (changes the cells' ids: a new run)")
    sp.add_argument("--recipe", metavar="FILE",
                    help="a YAML of recipe fields in timm train.py's names (e.g. an official timm config) "
                         "applied over the preset; --set wins over it")
    sp.add_argument("--data-root", default=os.environ.get("REPRO_DATA_ROOT"), help="folder holding <dataset>/ (or $REPRO_DATA_ROOT)")
    sp.add_argument("--launcher", choices=["local", "ray", "slurm"], default="local")
    sp.add_argument("--fast", action="store_true",
                    help="fast training path: channels_last; on GPUs also bf16 autocast and torch.compile "
                         "(classification tables, local launcher; recorded in result.json as train_path)")
    sp.add_argument("--gpus", type=_positive_int, default=None, help="GPUs per node (Lightning DDP when > 1)")
    sp.add_argument("--cpus", type=_positive_int, default=None, help="CPU processes per node for DDP on CPU (gloo)")
    sp.add_argument("--nodes", type=_positive_int, default=1, help="nodes per run (cluster launchers)")
    sp.add_argument("--partition", default=None, help="SLURM partition")
    sp.add_argument("--account", default=None, help="SLURM account")
    sp.add_argument("--time", default="24:00:00", help="SLURM time limit per job")
    sp.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local one)")
    sp.add_argument("--wandb", choices=["auto", "online", "offline", "off"], default=None,
                    help="W&B mirror (default auto: online when logged in, else offline)")
    sp.add_argument("--report", default=None, metavar="FILE",
                    help="report to refresh after the run (default <store>/REPORT.md, beside the runs; "
                         "report.json and the plots go to the same folder)")
    sp.add_argument("--no-report", action="store_true", help="do not refresh the report")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--wait", action="store_true",
                    help="cells another process is training: wait until it finishes (or dies, then take them over) "
                         "instead of skipping them")
    sp.add_argument("--threads", type=_positive_int, default=None,
                    help="CPU threads per training process (default: the CPUs this process may use, less the load "
                         "other work puts on them; recorded in result.json)")
    sp.add_argument("--restart", action="store_true",
                    help="ignore the cells' checkpoints and train from step 0 (finished cells stay finished)")
    add_store(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("status", help="state of each cell of a table: pending / running / done / failed")
    sp.add_argument("table", help="table path, e.g. papers/shufflenet/table2")
    sp.add_argument("--preset", default=None,
                    help="the preset the run used (default: every preset the store holds runs of for this table, "
                         "or paper when it holds none)")
    sp.add_argument("--seeds", type=_positive_int, default=1, help="the seeds the run used (default 1)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="the same overrides as the run")
    sp.add_argument("--recipe", metavar="FILE", help="the same --recipe file as the run")
    sp.add_argument("--only", action="append", metavar="ROW|COLUMN", help="only matching cells (repeatable; * matches any)")
    add_store(sp)
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("report", help="render REPORT.md and report.json from the store")
    sp.add_argument("--out", default=None, metavar="FILE",
                    help="report file (default <store>/REPORT.md; report.json and the plots go beside it). "
                         "The shipped report: repro report --store results/runs --out REPORT.md")
    sp.add_argument("--tables", nargs="*", help="only these tables (paper/table)")
    add_store(sp)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("complexity", help="params and MFLOPs (multiply-adds) of every cell of a table")
    sp.add_argument("table")
    sp.add_argument("--json", action="store_true", help="one JSON object per cell")
    sp.set_defaults(func=cmd_complexity)

    sp = sub.add_parser("sweep", help="a Ray Tune search over a cell's recipe (sweeps/<name>.yaml)")
    sp.add_argument("spec", help="sweep spec, e.g. sweeps/shufflenet_proxy_lr.yaml")
    sp.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local one)")
    sp.add_argument("--num-samples", type=_positive_int, default=None, help="override the spec's trial budget")
    sp.add_argument("--cpus", type=_positive_int, default=None, help="CPUs for a local Ray cluster")
    sp.add_argument("--wandb", choices=["auto", "online", "offline", "off"], default=None)
    add_store(sp)
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("bench", help="training/inference throughput and latency per model; results to files")
    sp.add_argument("target", help="a table path (papers/<paper>/<table>), a model (paper:model[:json-args]), "
                                    "`data` (input pipeline) or `overhead` (per-cell orchestration)")
    sp.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    sp.add_argument("--batch", type=_positive_int, default=None)
    sp.add_argument("--threads", type=_positive_int, default=None)
    sp.add_argument("--vs", choices=["timm"], default=None, help="time the same architecture from timm side by side")
    sp.add_argument("--fast", action="store_true", help="the fast path: channels_last, fused BN, torch.compile, bf16 on GPU")
    sp.add_argument("--out", default=None, help="results file (default <store>/bench/<target>-<device>.json)")
    add_store(sp)
    from repro.bench import add_extra_bench_arguments

    add_extra_bench_arguments(sp)
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("collect", help="pull finished runs from W&B into the store")
    sp.add_argument("--entity", default=None)
    sp.add_argument("--project", default="repro")
    sp.add_argument("--group", default=None, help="only runs of this group (a table id, e.g. shufflenet/table2)")
    add_store(sp)
    sp.set_defaults(func=cmd_collect)

    sp = sub.add_parser("sync", help="upload offline W&B runs of the store (wraps `wandb sync`)")
    sp.add_argument("--dry-run", action="store_true")
    add_store(sp)
    sp.set_defaults(func=cmd_sync)

    sp = sub.add_parser("published", help="the published numbers of a paper or table, with sources")
    sp.add_argument("ref", help="papers/<paper> or papers/<paper>/<table>")
    sp.add_argument("--json", action="store_true", help="one JSON record per number")
    sp.set_defaults(func=cmd_published)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func in (cmd_run, cmd_sweep):
        from repro.train.threads import measure_before_torch

        measure_before_torch()
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that left (`| head`) is caught below, not at exit
        return code
    except ReproError as exc:
        # An error raised in a DataLoader worker comes back wrapped in a worker traceback; the
        # user's message is its last line.
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        print(f"repro: {lines[-1] if lines else type(exc).__name__}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("repro: interrupted; completed cells are kept, re-run to resume the rest", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `repro published ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        from repro.train.run import Stopped

        if not isinstance(exc, Stopped):
            raise
        print(f"repro: {exc}; re-run the same command to resume from it", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended


if __name__ == "__main__":
    sys.exit(main())
