"""Verdicts: does our number reproduce the published one, and does the paper's ordering hold?"""

from __future__ import annotations

import statistics

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
PROXY_ONLY = "proxy only"
NOT_RUN = "not run"
NOT_TRANSCRIBED = "published value not transcribed"
NOT_IN_SUITE = "not in this suite"
NOT_REPRODUCIBLE = "not reproducible"


def summarize(values: list[float]) -> dict:
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None}
    return {"n": n, "mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else 0.0}


def cell_verdict(ours: float | None, published: float | None, better: str, tolerance: float, proxy: bool) -> str:
    """`better` is 'lower' or 'higher'. Matching the paper or beating it counts as reproduced."""
    if ours is None:
        return NOT_RUN
    if proxy:
        return PROXY_ONLY
    if published is None:
        return NOT_TRANSCRIBED
    gap = ours - published if better == "lower" else published - ours  # > 0 means worse than the paper
    return REPRODUCED if gap <= tolerance else NOT_REPRODUCED


def trend_verdict(claim, means: dict[tuple[str, str], float], rows: list[str], columns: list[str], better: str) -> dict:
    """Check one ordering claim of a spec on a grid of means keyed (row, column).

    column_better: in every row where both exist, `better` column beats `worse` column.
    best_column:   in the named rows (default all), `column` is the best of the columns run.
    """
    sign = 1 if better == "lower" else -1
    checked, failures = 0, []
    if claim.kind == "column_better":
        for r in rows:
            a, b = means.get((r, claim.better)), means.get((r, claim.worse))
            if a is None or b is None:
                continue
            checked += 1
            if sign * (a - b) >= 0:
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
        seq = [means.get((r, col)) for r in claim.rows]
        if all(v is not None for v in seq) and len(seq) > 1:
            checked = 1
            if any(sign * (a - b) >= 0 for a, b in zip(seq, seq[1:])):
                failures.append(" > ".join(claim.rows))
    if checked == 0:
        status = NOT_RUN
    else:
        status = "holds" if not failures else "does not hold"
    return {"claim": claim.claim, "status": status, "checked": checked, "failures": failures}
