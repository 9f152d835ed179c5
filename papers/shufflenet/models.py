"""ShuffleNet v1 (Zhang et al., arXiv 1707.01083v2 / CVPR 2018).

Architecture per the paper's Table 1: conv1 3x3/2 (24 ch) -> 3x3/2 max pool -> Stages 2-4 of
4/8/4 units -> global pool -> FC. Each unit: 1x1 group conv -> BN -> ReLU -> channel shuffle ->
3x3 depthwise (stride 2 in a stage's first unit) -> BN (no ReLU) -> 1x1 group conv -> BN; the
shortcut is identity (add) or, for a stage's first unit, a 3x3/2 average pool (concat). The
bottleneck is 1/4 of the unit's output channels; Stage 2's first pointwise layer is not grouped
because its input has only 24 channels.

Width rule (`scale` = s): stage widths are Table 1's 1x widths times s, rounded to the nearest
multiple of 4*g, so that both the unit's output and its bottleneck (output / 4) divide into g
groups at every scale. conv1's width (see STEM_CHANNELS) is rounded down to a multiple of g so the
concatenating unit's branch (output - input channels) divides into g groups too.
"""

from __future__ import annotations

import torch
from torch import nn

from repro.nn import ConvBNAct, channel_shuffle, round_to_multiple

# Table 1: output channels of Stages 2-4 at 1x, per number of groups g.
STAGE_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}
STAGE_REPEATS = (4, 8, 4)
# Table 5's "shallow" 0.5x: the paper's note on it is transcribed in NOTES-published.md.
SHALLOW_STAGE_REPEATS = (2, 4, 2)
# conv1 width per scale. Table 1 gives only 24 (1x); 12 below 1x, 48 at 2x and 24 at 1.5x is what reproduces the complexity the paper prints for every width (Table 2: 38 and
# 13 MFLOPs, Table 5: 292 for 1.5x and 524 for 2x); tests/test_shufflenet.py checks all of them.
STEM_CHANNELS = {0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
SCALES = tuple(STEM_CHANNELS)


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int,
                 shuffle: bool = True, group_first_pointwise: bool = True, bottleneck_ratio: float = 0.25):
        super().__init__()
        self.stride = stride
        self.groups = groups
        self.shuffle = shuffle and groups > 1
        bottleneck = int(out_channels * bottleneck_ratio)
        # With stride 2 the shortcut is concatenated, so the residual branch makes only the rest.
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        first_groups = groups if group_first_pointwise else 1
        self.compress = ConvBNAct(in_channels, bottleneck, 1, groups=first_groups)
        self.first_groups = first_groups
        self.depthwise = ConvBNAct(bottleneck, bottleneck, 3, stride=stride, groups=bottleneck, act=None)
        self.expand = ConvBNAct(bottleneck, branch_out, 1, groups=groups, act=None)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compress(x)
        if self.shuffle and self.first_groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return self.act(torch.cat((self.shortcut(x), out), dim=1))
        return self.act(x + out)


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, scale: float = 1.0, shuffle: bool = True, shallow: bool = False,
                 num_classes: int = 1000, stage_repeats: tuple[int, ...] | None = None):
        super().__init__()
        if groups not in STAGE_WIDTHS:
            raise ValueError(f"groups must be one of {sorted(STAGE_WIDTHS)} (Table 1), got {groups}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES} (the paper's width multipliers), got {scale}")
        repeats = stage_repeats or (SHALLOW_STAGE_REPEATS if shallow else STAGE_REPEATS)
        widths = [round_to_multiple(w * scale, 4 * groups) for w in STAGE_WIDTHS[groups]]
        stem = max(groups, STEM_CHANNELS[scale] // groups * groups)
        self.stage_widths = tuple(widths)

        self.stem = nn.Sequential(
            ConvBNAct(3, stem, 3, stride=2),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_channels = [], stem
        for stage_index, (width, repeat) in enumerate(zip(widths, repeats)):
            units = []
            for unit_index in range(repeat):
                units.append(ShuffleUnit(
                    in_channels, width, groups,
                    stride=2 if unit_index == 0 else 1,
                    shuffle=shuffle,
                    group_first_pointwise=not (stage_index == 0 and unit_index == 0),
                ))
                in_channels = width
            stages.append(nn.Sequential(*units))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage 2-4 outputs (strides 8, 16, 32), for detection backbones."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)[-1]
        return self.fc(torch.flatten(self.pool(x), 1))


def shufflenet_v1(groups: int = 3, scale: float = 1.0, shuffle: bool = True, shallow: bool = False,
                  num_classes: int = 1000) -> ShuffleNetV1:
    return ShuffleNetV1(groups=groups, scale=scale, shuffle=shuffle, shallow=shallow, num_classes=num_classes)


class ShuffleNetBackbone(nn.Module):
    """ShuffleNet v1 without its classifier: Stage 2-4 features (strides 8/16/32) for detectors.

    Holds the classification model's `stem` and `stages` under the same names, so an ImageNet
    checkpoint of `shufflenet_v1` loads into it as is (its `fc` is left out).
    """

    STRIDES = (8, 16, 32)

    def __init__(self, net: ShuffleNetV1, out_indices: tuple[int, ...] = (0, 1, 2)):
        super().__init__()
        self.out_indices = tuple(out_indices)
        self.stem, self.stages = net.stem, net.stages
        self.out_channels = [net.stage_widths[i] for i in self.out_indices]
        self.strides = [self.STRIDES[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def shufflenet_v1_backbone(groups: int = 3, scale: float = 1.0, shuffle: bool = True, shallow: bool = False,
                           out_indices: tuple[int, ...] = (0, 1, 2)) -> ShuffleNetBackbone:
    net = ShuffleNetV1(groups=groups, scale=scale, shuffle=shuffle, shallow=shallow, num_classes=1)
    return ShuffleNetBackbone(net, out_indices)


MODELS = {"shufflenet_v1": shufflenet_v1}
# Detection backbones (repro.nn.detection): a table names them as `backbone:` of fasterrcnn/maskrcnn.
BACKBONES = {"shufflenet_v1": shufflenet_v1_backbone}
