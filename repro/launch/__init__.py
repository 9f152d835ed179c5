"""Launchers: cells in, runs out. `plan` decides what needs running; a launcher runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from repro.spec.cells import Cell
from repro.store import Store


@dataclass
class Plan:
    todo: list[Cell] = field(default_factory=list)
    done: list[Cell] = field(default_factory=list)
    in_flight: list[Cell] = field(default_factory=list)
    not_runnable: list[Cell] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.todo)} to run, {len(self.done)} done, {len(self.in_flight)} in flight, "
                f"{len(self.not_runnable)} not trained here (published only or derived)")


def plan(cells: list[Cell], store: Store) -> Plan:
    """Split cells by what the store already holds; a run shared by two cells is counted once."""
    result, seen = Plan(), set()
    for cell in cells:
        if not cell.runnable:
            result.not_runnable.append(cell)
            continue
        if cell.id in seen:
            continue
        seen.add(cell.id)
        if store.is_done(cell.id):
            result.done.append(cell)
        elif store.in_flight(cell.id):
            result.in_flight.append(cell)
        else:
            result.todo.append(cell)
    return result


def launch_remote(args, table, todo: Plan, store: Store) -> int:
    """Hand the cells to a cluster launcher (`--launcher ray|slurm`); returns the exit code."""
    if args.launcher == "ray":
        from repro.launch.ray import launch_ray

        return launch_ray(args, table, todo, store)
    from repro.launch.slurm import launch_slurm

    return launch_slurm(args, table, todo, store)
