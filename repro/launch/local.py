"""Run cells one after another in this process, with one progress bar for the table."""

from __future__ import annotations

import sys

from repro.errors import CellBusy, ReproError, RunFailed
from repro.spec.cells import Cell
from repro.spec.load import Table
from repro.train.run import RunOptions, Stopped, run_cell


def run_local(table: Table, cells: list[Cell], opts: RunOptions, progress: bool = True) -> list[dict]:
    from tqdm.auto import tqdm

    results, failed = [], []
    if not cells:  # nothing to do: no empty progress bar
        return results
    bar = tqdm(total=len(cells), desc=table.id, unit="cell", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for cell in cells:
        bar.set_postfix_str(f"{cell.row} | {cell.column} (seed {cell.seed}) starting")

        def report(step, total, loss, cell=cell):
            bar.set_postfix_str(f"{cell.row} | {cell.column} step {step}/{total}" + (f" loss {loss:.3f}" if loss is not None else ""))

        opts.progress = report
        try:
            results.append(run_cell(table, cell, opts))
        except CellBusy as exc:  # another process started it after we planned: one trainer per cell
            bar.write(f"repro: {exc}", file=sys.stderr)
        except Stopped:  # SIGTERM: the checkpoint is saved; the process exits as asked
            raise
        except Exception as exc:  # noqa: BLE001  run_cell has marked the cell failed in the store
            # One failed cell must not cost the others: note it, go on, fail at the end. A user's
            # error says what to fix; anything else (a torch error) is shown as its type and message.
            message = str(exc) if isinstance(exc, ReproError) else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            failed.append((cell, message))
            bar.write(f"repro: cell ({cell.row}, {cell.column}) seed {cell.seed} failed: {message}", file=sys.stderr)
        bar.update(1)
    bar.close()
    if failed:
        first_cell, first_error = failed[0]
        raise RunFailed(f"{len(failed)} of {len(cells)} cells failed, first ({first_cell.row}, {first_cell.column}): "
                        f"{first_error}; finished cells are kept (see `repro status {table.id}`)")
    return results
