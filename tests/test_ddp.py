"""A real 2-process DDP run on CPU (gloo) through the CLI: `repro run ... --cpus 2`.

Lightning's default `ddp` strategy re-executes the command line for rank 1; the CLI hands that
child the parent's cell list (REPRO_DDP_CELLS) so both ranks train the same cell, and only rank 0
touches the store's state and writes result.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def test_two_process_cpu_ddp_records_world_size_and_ranks_agree(tmp_path):
    store = tmp_path / "store"
    args = ["run", "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|g=8", "--cpus", "2",
            "--set", "train.batch_size=33",  # not divisible by 2: the run must say so
            "--store", str(store), "--no-report", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]

    results = list(store.glob("*/result.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    assert result["world_size"] == 2 and result["steps"] == 6
    assert result["paper_batch"] == 33 and result["global_batch"] == 32  # 16 per process
    assert stderr.count("global batch 32 (16 x 2 processes) differs from the recipe's 33") == 1  # rank 0 only
    # Both ranks computed the same validation metrics (gathered over ranks inside the run).
    per_rank = result["rank_metrics"]
    assert len(per_rank) == 2 and per_rank[0] == per_rank[1]
    assert per_rank[0]["val/samples"] == 64.0 and result["metrics"]["top1_err"] == per_rank[0]["val/top1_err"]
    # Only rank 0 (the process we started; rank 1 is its child) wrote the store's state and result.
    state = json.loads((results[0].parent / "state.json").read_text())
    assert state["status"] == "done" and state["pid"] == proc.pid
    assert not list(store.glob("*/.*.tmp")) and not list(store.glob("*/checkpoints/.*.tmp"))
