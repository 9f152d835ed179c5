"""ShuffleNet v1: channel shuffle, every variant of Tables 1-5, complexity against the paper."""

from __future__ import annotations

import pytest
import torch
import yaml

from papers.shufflenet.models import SCALES, STAGE_WIDTHS, shufflenet_v1
from repro.complexity import count_complexity
from repro.nn import channel_shuffle
from tests.conftest import REPO

PUBLISHED = yaml.safe_load((REPO / "papers/shufflenet/published.yaml").read_text())["tables"]


def test_channel_shuffle_is_the_papers_permutation():
    # 6 channels in g=3 groups of 2: (a0 a1 | b0 b1 | c0 c1) -> (a0 b0 c0 a1 b1 c1)
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("groups,channels", [(2, 8), (3, 12), (4, 16), (8, 24)])
def test_channel_shuffle_inverse(groups, channels):
    x = torch.randn(2, channels, 3, 3)
    shuffled = channel_shuffle(x, groups)
    assert not torch.equal(shuffled, x)
    # Shuffling with channels/g groups undoes a shuffle with g groups.
    assert torch.equal(channel_shuffle(shuffled, channels // groups), x)


def test_every_group_of_next_layer_sees_every_group_of_previous():
    groups, per_group = 3, 4
    x = torch.arange(groups * per_group).float().view(1, -1, 1, 1)
    out = channel_shuffle(x, groups).flatten().long()
    for chunk in out.view(groups, per_group):
        assert {int(c) // per_group for c in chunk} == set(range(groups))


def test_channel_shuffle_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="do not split"):
        channel_shuffle(torch.zeros(1, 7, 2, 2), 3)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_table1_widths_and_complexity(groups):
    model = shufflenet_v1(groups=groups)
    row = PUBLISHED["table1"]["rows"][f"g={groups}"]["values"]
    assert model.stage_widths == (row["stage2"], row["stage3"], row["stage4"]) == STAGE_WIDTHS[groups]
    c = count_complexity(model, 224)
    print(f"g={groups}: {c.params:,} params, {c.macs:,} MACs (paper {row['complexity']}M)")
    assert c.mflops == pytest.approx(row["complexity"], rel=0.03)


@pytest.mark.parametrize("scale", ["1x", "0.5x", "0.25x"])
@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_table2_complexity_column(scale, groups):
    published = PUBLISHED["table2"]["rows"][scale]["values"]["complexity"]
    model = shufflenet_v1(groups=groups, scale=float(scale[:-1]))
    c = count_complexity(model, 224)
    print(f"{scale} g={groups}: {c.mflops:.2f} MFLOPs (paper {published})")
    # The paper prints one rounded complexity per width for all g; ours stays within 6% of it.
    assert c.mflops == pytest.approx(published, rel=0.06)


@pytest.mark.parametrize("row,scale,groups", [
    ("shufflenet_2x_g3", 2.0, 3), ("shufflenet_1.5x_g3", 1.5, 3),
    ("shufflenet_1x_g8", 1.0, 8), ("shufflenet_0.5x_g4", 0.5, 4),
])
def test_table5_complexity(row, scale, groups):
    published = PUBLISHED["table5"]["rows"][row]["values"]["complexity"]
    c = count_complexity(shufflenet_v1(groups=groups, scale=scale), 224)
    assert c.mflops == pytest.approx(published, rel=0.06)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_every_width_divides_into_groups_and_runs(scale, groups):
    model = shufflenet_v1(groups=groups, scale=scale, num_classes=7)
    for width in model.stage_widths:
        assert width % (4 * groups) == 0
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_no_shuffle_variant_differs_only_in_the_permutation():
    torch.manual_seed(0)
    a = shufflenet_v1(groups=3, shuffle=True, num_classes=5).eval()
    b = shufflenet_v1(groups=3, shuffle=False, num_classes=5).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert count_complexity(a).macs == count_complexity(b).macs
    assert not torch.allclose(a(x), b(x))


def test_stage2_first_pointwise_is_not_grouped_and_no_relu_after_depthwise():
    model = shufflenet_v1(groups=8)
    first = model.stages[0][0]
    assert first.compress[0].groups == 1
    assert model.stages[0][1].compress[0].groups == 8
    assert len(first.depthwise) == 2  # conv + BN, no activation


def test_shallow_variant_has_half_the_units():
    full, shallow = shufflenet_v1(scale=0.5), shufflenet_v1(scale=0.5, shallow=True)
    assert [len(s) for s in full.stages] == [4, 8, 4]
    assert [len(s) for s in shallow.stages] == [2, 4, 2]


@pytest.mark.parametrize("kwargs,message", [({"groups": 5}, "groups must be one of"), ({"scale": 0.75}, "scale must be one of")])
def test_bad_knobs_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shufflenet_v1(**kwargs)
