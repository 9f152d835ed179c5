"""`python -m repro.bench ...`: the bench command with every option (same as `repro bench`)."""

from __future__ import annotations

import argparse
import sys

from repro.bench import add_bench_arguments, run_bench
from repro.errors import ReproError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.bench", description="Throughput/latency benchmarks; results to files.")
    add_bench_arguments(p)
    p.add_argument("--store", default=None, help="results store directory (default: $REPRO_STORE or ./runs)")
    args = p.parse_args(argv)
    try:
        return run_bench(args)
    except ReproError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        print(f"repro: {lines[-1] if lines else type(exc).__name__}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
