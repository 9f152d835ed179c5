"""Parameter and multiply-add counts.

All five papers say "FLOPs" for multiply-adds. We count with torch's maintained
`torch.utils.flop_counter.FlopCounterMode`, which reports 2 FLOPs per multiply-add for
convolutions and matrix products, and halve it. Like the papers, this counts conv and FC
layers only: BN, activations, pooling and element-wise adds are not counted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

COUNTING_RULE = (
    "multiply-adds of conv and linear layers (torch.utils.flop_counter FLOPs / 2); "
    "BN, activations, pooling and additions not counted; batch 1"
)


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    input_size: tuple[int, int]

    @property
    def mflops(self) -> float:
        return self.macs / 1e6

    @property
    def gflops(self) -> float:
        return self.macs / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_complexity(model, input_size: int | tuple[int, int] = 224, in_channels: int = 3) -> Complexity:
    """Params and multiply-adds of one forward pass of a single image in eval mode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    # A meta-device copy gives the same shapes (and so the same counts) without computing
    # anything: B7 at 600 px costs milliseconds instead of seconds.
    probe = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(1, in_channels, *input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        probe(x)
    return Complexity(count_params(model), counter.get_total_flops() // 2, tuple(input_size))


def cell_complexity(table, cell) -> dict:
    """Params and MACs as the paper counts them (its input size and class count) and as trained.

    Cached on disk, keyed by the model's configuration and the source of the code that builds
    it, so the report does not re-trace every model of every paper each time it renders.
    """
    key = _cache_key(table, cell)
    cached = _cache_read(key)
    if cached is not None:
        return cached
    from repro.spec.cells import build_model

    paper_model = build_model(table, cell, num_classes=paper_num_classes(table), meta=True)
    paper = count_complexity(paper_model, cell.complexity_input_size)
    trained = count_complexity(build_model(table, cell, meta=True), cell.preset.data.image_size)
    record = {
        "params": paper.params, "mflops": paper.mflops, "input_size": cell.complexity_input_size,
        "trained_params": trained.params, "trained_mflops": trained.mflops,
        "trained_input_size": cell.preset.data.image_size, "rule": COUNTING_RULE,
    }
    _cache_write(key, record)
    return record


def _cache_dir():
    import os
    from pathlib import Path

    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "repro" / "complexity"


def _cache_key(table, cell) -> str:
    import hashlib
    import json
    from pathlib import Path

    sources = [Path(table.paper.models_module().__file__), *sorted(Path(__file__).parent.joinpath("nn").glob("*.py"))]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.read_bytes())
    digest.update(json.dumps([cell.model, cell.args, cell.complexity_input_size, paper_num_classes(table),
                              cell.preset.data.image_size, cell.preset.data.num_classes, COUNTING_RULE],
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def _cache_read(key: str) -> dict | None:
    import json

    try:
        return json.loads((_cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def _cache_write(key: str, record: dict) -> None:
    from repro.store import atomic_write_json

    try:
        atomic_write_json(_cache_dir() / f"{key}.json", record)
    except OSError:
        pass  # a read-only home only costs speed


def paper_num_classes(table) -> int:
    presets = table.paper.presets
    name = table.spec.presets.get("paper", "paper")
    return presets[name].data.num_classes if name in presets else 1000
