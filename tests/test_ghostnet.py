"""GhostNet: Ghost module widths, complexity vs. the paper, forward shapes, published/spec consistency."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from papers.ghostnet.models import MODELS, GhostModule
from repro.complexity import count_complexity

PAPER = Path(__file__).resolve().parents[1] / "papers" / "ghostnet"
PUBLISHED = yaml.safe_load((PAPER / "published.yaml").read_text())["tables"]

# (builder, kwargs, input size, table, row) -> the printed weights (M) and FLOPs (M) it must match.
CASES = {
    "ghostnet_0.5": ("ghostnet", dict(width=0.5), 224, "imagenet", "ghostnet_0.5"),
    "ghostnet_1.0": ("ghostnet", dict(width=1.0), 224, "imagenet", "ghostnet_1.0"),
    "ghostnet_1.3": ("ghostnet", dict(width=1.3), 224, "imagenet", "ghostnet_1.3"),
    "vgg16": ("vgg16_cifar", {}, 32, "cifar10", "vgg16"),
    "ghost_vgg16": ("ghost_vgg16", {}, 32, "cifar10", "ghost_vgg16"),
    "resnet56": ("resnet56_cifar", {}, 32, "cifar10", "resnet56"),
    "ghost_resnet56": ("ghost_resnet56", {}, 32, "cifar10", "ghost_resnet56"),
    **{f"s={s}": ("ghost_vgg16", dict(ratio=s), 32, "s_ablation", f"s={s}") for s in (2, 3, 4, 5)},
    **{f"d={d}": ("ghost_vgg16", dict(dw_size=d), 32, "d_ablation", f"d={d}") for d in (1, 3, 5, 7)},
}
# Exact counts under repro.complexity's rule (conv + linear multiply-adds; all params incl. BN).
EXACT = {
    "ghostnet_0.5": (2_587_292, 42_328_152), "ghostnet_1.0": (5_182_508, 141_150_512),
    "ghostnet_1.3": (7_358_820, 227_003_256), "vgg16": (14_987_722, 313_463_808),
    "ghost_vgg16": (7_651_498, 158_109_696), "resnet56": (853_018, 125_485_696),
    "ghost_resnet56": (429_882, 63_009_408),
    "s=2": (7_651_498, 158_109_696), "s=3": (5_219_500, 107_240_040),
    "s=4": (3_983_386, 80_432_640), "s=5": (3_270_721, 65_665_296),
    "d=1": (7_634_602, 157_003_776), "d=3": (7_651_498, 158_109_696),
    "d=5": (7_685_290, 160_321_536), "d=7": (7_735_978, 163_639_296),
}
# Where the printed figure is not what our counting rule rounds to: (what, max relative gap, the
# counting variant that does reproduce the printed digit).
KNOWN_DEVIATIONS = {
    ("ghostnet_1.3", "weights"): (0.01, "params_no_bn"),  # 7.359M -> 7.4; w/o BN 7.330M -> 7.3
    ("ghostnet_1.3", "flops"): (0.005, None),  # 227.0M vs 226; no variant found
    ("s=5", "flops"): (0.015, "conv_only"),  # 65.67M; conv layers only 65.40M -> 65
    ("d=7", "flops"): (0.005, "conv_only"),  # 163.64M; conv layers only 163.37M -> 163
}


def _rounds_to(ours: float, printed: float) -> bool:
    text = repr(float(printed))
    digits = len(text.split(".")[1].rstrip("0"))
    return abs(ours - printed) <= 0.5 * 10 ** -digits + 1e-9


def _alternative(variant: str, builder, kwargs, size, what) -> float:
    model = MODELS[builder](**kwargs)
    if variant == "params_no_bn":
        bn = sum(p.numel() for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
                 for p in m.parameters())
        return (sum(p.numel() for p in model.parameters()) - bn) / 1e6
    if variant == "conv_only":
        fc = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
        return (count_complexity(model, size).macs - fc) / 1e6
    raise KeyError(variant)


@pytest.mark.parametrize("s", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("d", [1, 3, 5, 7])
@pytest.mark.parametrize("out_channels", [7, 16, 30, 64])
def test_ghost_module_width(s, d, out_channels):
    module = GhostModule(5, out_channels, kernel_size=3, ratio=s, dw_size=d)
    y = module(torch.randn(2, 5, 8, 8))
    assert y.shape == (2, out_channels, 8, 8)


def test_ghost_module_stride_and_cheap_op_is_depthwise():
    module = GhostModule(8, 24, kernel_size=3, ratio=3, dw_size=5, stride=2)
    assert module(torch.randn(1, 8, 16, 16)).shape == (1, 24, 8, 8)
    cheap = module.cheap[0]
    assert cheap.groups == cheap.in_channels == 8 and cheap.out_channels == 16 and cheap.kernel_size == (5, 5)


@pytest.mark.parametrize("case", list(CASES))
def test_complexity_matches_paper(case):
    builder, kwargs, size, table, row = CASES[case]
    c = count_complexity(MODELS[builder](**kwargs), size)
    printed = PUBLISHED[table]["rows"][row]["values"]
    print(f"{case}: params {c.params} ({c.params / 1e6:.3f}M), MACs {c.macs} ({c.macs / 1e6:.2f}M) | "
          f"paper: {printed['weights']}M, {printed['flops']}M")
    assert (c.params, c.macs) == EXACT[case]
    for what, ours in (("weights", c.params / 1e6), ("flops", c.macs / 1e6)):
        deviation = KNOWN_DEVIATIONS.get((case, what))
        if deviation is None:
            assert _rounds_to(ours, printed[what]), (case, what, ours, printed[what])
            continue
        max_gap, variant = deviation
        assert abs(ours - printed[what]) / printed[what] < max_gap, (case, what, ours)
        if variant is not None:
            alt = _alternative(variant, builder, kwargs, size, what)
            print(f"  {what}: printed {printed[what]} reproduced by {variant}: {alt:.3f}")
            assert _rounds_to(alt, printed[what])


@pytest.mark.parametrize("width,timm_name", [(0.5, "ghostnet_050"), (1.0, "ghostnet_100"), (1.3, "ghostnet_130")])
def test_same_network_as_the_official_release(width, timm_name):
    """timm's GhostNet follows the authors' released code; equal params and MACs at every width
    show the 1.3x figure printed in the paper (226M, 7.3M) is not a deviation of ours."""
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ours, theirs = MODELS["ghostnet"](width=width), timm.create_model(timm_name)
    assert count_complexity(ours, 224) == count_complexity(theirs, 224)


def test_vanilla_rows_agree_across_tables():
    for table in ("s_ablation", "d_ablation"):
        assert PUBLISHED[table]["rows"]["vanilla"]["values"] == PUBLISHED["cifar10"]["rows"]["vgg16"]["values"]


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shape(name):
    model = MODELS[name](num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("kwargs", [dict(ratio=3, dw_size=5), dict(ratio=5, dw_size=1)])
def test_ghost_cifar_knobs_train_step(kwargs):
    for name in ("ghost_vgg16", "ghost_resnet56"):
        out = MODELS[name](**kwargs)(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10)
        out.sum().backward()


def _specs():
    return sorted(p for p in PAPER.glob("*.yaml") if p.name not in ("published.yaml", "presets.yaml"))


def test_presets_load():
    presets = yaml.safe_load((PAPER / "presets.yaml").read_text())
    assert {"paper", "paper_cifar", "proxy", "test"} <= set(presets)
    for name, preset in presets.items():
        if not preset.get("proxy"):
            assert set(preset["train"]) <= set(preset["sources"]), name


@pytest.mark.parametrize("spec_path", _specs(), ids=lambda p: p.name)
def test_spec_cells_have_published_values(spec_path):
    spec = yaml.safe_load(spec_path.read_text())
    presets = yaml.safe_load((PAPER / "presets.yaml").read_text())
    for alias in spec.get("presets", {}).values():
        assert alias in presets
    table = PUBLISHED[spec["table"]]
    skipped = {(c["row"], c["column"]) for c in spec.get("cells", []) if "skip" in c}
    for row in spec["rows"]:
        assert row["id"] in table["rows"], (spec_path.name, row["id"])
        model = row.get("model", spec.get("model"))
        assert model is None or model in MODELS
        for col in spec["columns"]:
            assert col["id"] in table["rows"][row["id"]]["values"], (row["id"], col["id"])
            if model is not None and (row["id"], col["id"]) not in skipped:
                assert table["rows"][row["id"]]["values"][col["id"]] is not None
    if "complexity" in spec:
        assert spec["complexity"]["column"] in table["columns"]
