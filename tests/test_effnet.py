"""EffNet (arXiv 1801.06434): block shapes for bottleneck factors 2 and 4, networks, complexity, specs."""

from pathlib import Path

import pytest
import torch
import yaml

from papers.effnet.models import MODELS, EffNetBlock, effnet
from repro.complexity import count_complexity

PAPER = Path(__file__).resolve().parents[1] / "papers" / "effnet"
SPECS = ["cifar10.yaml", "svhn.yaml", "gtsrb.yaml", "bottleneck.yaml"]
# Our counts at 32 px, 10 classes, pinned as a regression (the paper's figures are image tables, not transcribed).
MEASURED = {"baseline": (412234, 39559168), "mobilenet": (86666, 2914304), "shufflenet": (49578, 2165760),
            "effnet": (239402, 9043968)}


@pytest.mark.parametrize("factor, mid", [(2, 64), (4, 32)])
def test_block_shapes(factor, mid):
    block = EffNetBlock(64, 128, bottleneck_factor=factor).eval()
    assert block.pointwise[0].out_channels == mid          # bottleneck: out // factor
    assert block.depthwise_row[0].out_channels == 2 * mid  # depth multiplier 2
    assert block.depthwise_row[0].kernel_size == (1, 3) and block.depthwise_col[0].kernel_size == (3, 1)
    assert block.strided[0].kernel_size == (1, 2) and block.strided[0].stride == (1, 2)
    x = torch.randn(2, 64, 16, 16)
    assert block.pool(block.depthwise_row(block.pointwise(x))).shape == (2, 2 * mid, 8, 16)  # height halved first
    with torch.no_grad():
        assert block(x).shape == (2, 128, 8, 8)


def test_bottleneck_floor():
    assert EffNetBlock(3, 8, bottleneck_factor=4).pointwise[0].out_channels == 6


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_and_complexity(name):
    model = MODELS[name](num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    c = count_complexity(model, 32)
    print(f"{name}: {c.params:,} params, {c.macs:,} MACs ({c.mflops:.2f} MFLOPs) at 32 px")
    assert (c.params, c.macs) == MEASURED[name]


def test_gtsrb_classes_and_bottleneck_ablation():
    assert MODELS["effnet"](num_classes=43)(torch.randn(2, 3, 32, 32)).shape == (2, 43)
    bf2, bf4 = (count_complexity(effnet(bottleneck_factor=f), 32) for f in (2, 4))
    print(f"bottleneck 2: {bf2.params:,} params {bf2.macs:,} MACs; bottleneck 4: {bf4.params:,} params {bf4.macs:,} MACs")
    assert bf4.macs < bf2.macs and bf4.params < bf2.params


def test_specs_have_published_entries():
    published = yaml.safe_load((PAPER / "published.yaml").read_text())["tables"]
    presets = yaml.safe_load((PAPER / "presets.yaml").read_text())
    assert {"paper", "proxy", "test"} <= set(presets)
    for name in SPECS:
        spec = yaml.safe_load((PAPER / name).read_text())
        for alias in spec.get("presets", {}).values():
            assert alias in presets
        table = published[spec["table"]]
        for row in spec["rows"]:
            assert row.get("model", spec.get("model")) in MODELS
            for col in spec["columns"]:
                assert col["id"] in table["rows"][row["id"]]["values"], (name, row["id"], col["id"])
        assert spec["complexity"]["column"] in table["columns"]
    for name, table in published.items():
        for row_id, row in table["rows"].items():
            for col, value in row["values"].items():
                assert value is None  # nothing transcribed: image tables, no text source (see published.yaml)
                assert any(n.get("row") == row_id and n.get("column") == col and "not transcribed" in n["note"]
                           for n in table["notes"])
