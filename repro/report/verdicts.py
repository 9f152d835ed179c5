"""Verdicts: does our number reproduce the published one, does the paper's ordering hold, and do
our params/FLOPs match the printed ones?

Every function here is pure (numbers in, a verdict out) so the rules can be tested on their own.
"""

from __future__ import annotations

import math
import statistics

# Cell verdicts, in the order a reader meets them in REPORT.md.
REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
PROXY_ONLY = "proxy only"
NOT_RUN = "not run"
NOT_TRANSCRIBED = "published value not transcribed"
NOT_IN_SUITE = "published only"  # another paper's network, quoted by this one
NOT_REPRODUCIBLE = "not reproducible"

CELL_VERDICTS = {
    REPRODUCED: "ours is within the table's tolerance of the published number, or better",
    NOT_REPRODUCED: "ours is worse than the published number by more than the tolerance",
    PROXY_ONLY: "run on a proxy preset (synthetic data): never compared with the paper",
    NOT_RUN: "the cell is built here but has no finished run in the store",
    NOT_TRANSCRIBED: "the paper has the cell but its number could not be read from a text source (see the note)",
    NOT_IN_SUITE: "the row is another paper's network, quoted by this paper for comparison: its published number is "
                  "shown, nothing is built or run for it here",
    NOT_REPRODUCIBLE: "the paper does not give enough to build the cell (the reason follows)",
}

# Trend statuses.
HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_CHECKABLE = "not checkable here"  # the claim involves cells this suite does not build

# Complexity marks.
MATCH = "match"        # ours rounds to the printed number
CLOSE = "close"        # within COMPLEXITY_REL_TOL of it, but not to the printed digit
MISMATCH = "mismatch"
COMPLEXITY_REL_TOL = 0.05


def summarize(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one seed) and n."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None}
    return {"n": n, "mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else 0.0}


def gap_to_paper(ours: float, published: float, better: str) -> float:
    """How much worse than the paper we are, in metric units (negative: better than the paper)."""
    return ours - published if better == "lower" else published - ours


def cell_verdict(ours: float | None, published: float | None, better: str, tolerance: float, proxy: bool) -> str:
    """`better` is 'lower' or 'higher'. Matching the paper or beating it counts as reproduced.

    A missing published number wins over a missing run: the cell cannot be compared whether or
    not it ran, and it must not read as a missing result of ours.
    """
    if proxy:
        return PROXY_ONLY if ours is not None else NOT_RUN
    if published is None:
        return NOT_TRANSCRIBED
    if ours is None:
        return NOT_RUN
    # A tiny epsilon so that a gap of exactly the tolerance (e.g. 1.0 from 33.6 - 32.6) counts as
    # within it despite binary floating point.
    return REPRODUCED if gap_to_paper(ours, published, better) <= tolerance + 1e-9 else NOT_REPRODUCED


def difference_verdict(ours: float | None, published: float | None, tolerance: float, proxy: bool) -> str:
    """A derived difference (e.g. no-shuffle minus shuffle error) has no better direction: it is
    reproduced when it lands within the tolerance of the printed one on either side."""
    if proxy:
        return PROXY_ONLY if ours is not None else NOT_RUN
    if published is None:
        return NOT_TRANSCRIBED
    if ours is None:
        return NOT_RUN
    return REPRODUCED if abs(ours - published) <= tolerance + 1e-9 else NOT_REPRODUCED


def printed_decimals(value: float) -> int:
    """Decimals the paper printed, as far as the YAML number tells.

    YAML keeps 313 an int (0 decimals) and 15.0 a float (1 decimal), but drops trailing zeros
    after the first (0.70 parses as 0.7), so for those we are one digit more lenient than print.
    """
    if isinstance(value, int):
        return 0
    fraction = repr(float(value)).partition(".")[2]
    if not fraction.isdigit():  # exponent notation: far below anything a paper prints
        return 6
    return max(1, len(fraction.rstrip("0")))


def complexity_verdict(ours: float | None, published: float | None, rel_tol: float = COMPLEXITY_REL_TOL) -> str | None:
    """MATCH when ours rounds to the printed number at its printed precision; CLOSE within rel_tol."""
    if ours is None or published is None:
        return None
    half_ulp = 0.5 * 10 ** (-printed_decimals(published))
    if abs(ours - published) <= half_ulp + 1e-9:
        return MATCH
    if published and abs(ours - published) <= rel_tol * abs(published):
        return CLOSE
    return MISMATCH


def trend_verdict(claim, means: dict[tuple[str, str], float], rows: list[str], columns: list[str], better: str,
                  buildable: set[tuple[str, str]] | None = None) -> dict:
    """Check one ordering claim of a spec on a grid of values keyed (row, column).

    `means` holds the numbers to check (ours, or the published ones); `buildable` the cells this
    suite can produce at all (None: every cell, as for the published grid). A claim that needs a
    cell outside `buildable` is NOT_CHECKABLE on our numbers rather than NOT_RUN, so the reader
    knows no amount of running will settle it.

    column_better: in every row where both exist, column `better` beats column `worse`.
    best_column:   in the named rows (default all), `column` is the best of the columns present.
    row_order:     in `column` (default the first), the `rows` are ordered best first, each
                   strictly better than the next (two rows: the first beats the second).
    """
    sign = 1 if better == "lower" else -1
    beats = lambda a, b: sign * (a - b) < 0  # noqa: E731  a strictly better than b
    buildable_ok = (lambda key: True) if buildable is None else (lambda key: key in buildable)  # noqa: E731
    checked, failures, unbuildable = 0, [], False
    if claim.kind == "column_better":
        for r in rows:
            keys = [(r, claim.better), (r, claim.worse)]
            if not all(buildable_ok(k) for k in keys):
                continue  # rows the paper has but we do not build are not part of our check
            a, b = (means.get(k) for k in keys)
            if a is None or b is None:
                continue
            checked += 1
            if not beats(a, b):
                failures.append(r)
    elif claim.kind == "best_column":
        for r in claim.rows or rows:
            vals = {c: means[(r, c)] for c in columns if (r, c) in means}
            if claim.column not in vals or len(vals) < 2:
                continue
            checked += 1
            best = min(vals, key=lambda c: sign * vals[c])
            if best != claim.column:
                failures.append(f"{r} (best: {best})")
    elif claim.kind == "row_order":
        col = claim.column or columns[0]
        keys = [(r, col) for r in claim.rows]
        unbuildable = not all(buildable_ok(k) for k in keys)
        seq = [means.get(k) for k in keys]
        if not unbuildable and len(seq) > 1 and all(v is not None for v in seq):
            checked = 1
            broken = [f"{x} vs {y}" for (x, a), (y, b) in zip(zip(claim.rows, seq), zip(claim.rows[1:], seq[1:]))
                      if not beats(a, b)]
            failures.extend(broken)
    if checked:
        status = HOLDS if not failures else DOES_NOT_HOLD
    else:
        status = NOT_CHECKABLE if unbuildable else NOT_RUN
    return {"claim": claim.claim, "kind": claim.kind, "status": status, "checked": checked, "failures": failures}


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
