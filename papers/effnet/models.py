"""EffNet (Freeman, Roese-Koerner & Kummert, arXiv 1801.06434 / ICIP 2018) and the small networks
the paper compares it with on CIFAR-10, SVHN and GTSRB.

EffNet block (paper Sec. 3-4, Fig. 1-2), for `out` output channels and bottleneck factor b:
  1x1 conv            in  -> m = max(6, out // b)     pointwise bottleneck (b = 2 by default: narrow
                                                      networks have too few channels for ShuffleNet's 4)
  1x3 depthwise       m   -> 2m                       depth multiplier 2 on the first depthwise layer
  2x1 max pool, /2 in height only                     "separable pooling": half the downsampling early,
                                                      so the second spatial layer costs half as much
  3x1 depthwise       2m  -> 2m
  2x1 conv, /2 in width       2m  -> out              replaces the final pointwise conv: the other half
                                                      of the downsampling, learned instead of pooled
Every conv is followed by BN and a leaky ReLU. "2x1" is width x height; in torch's (height, width)
kernel notation the last conv is (1, 2) with stride (1, 2): two taps along the axis it strides.
The block halves both spatial dimensions, so a network is a chain of blocks.

The comparison networks (our reading of the paper's architecture table, which is an image in the PDF:
three stages of 64/128/256 channels at 16/8/4 px on 32 px input, flattened into one FC layer). A
secondary transcription of that table (the LeeWise9/Using-EffNet-to-slim-models README) gives the
same first stage: baseline 3x3x64 conv + max pool; EffNet 1x1x32 -> dw 1x3 + 1-D max pool -> dw 3x1
-> 2x1x64 with 1-D stride, i.e. the block below at out=64, b=2.
  baseline    3x [3x3 conv -> 2x2 max pool]
  mobilenet   first stage as the baseline (MobileNet keeps an ordinary first layer), then
              2x [3x3 depthwise /2 -> 1x1 conv]
  shufflenet  first stage as the baseline, then 2x ShuffleNet stride-2 unit (grouped 1x1 bottleneck
              of out/4, channel shuffle, 3x3 depthwise /2, grouped 1x1, concatenated with a 3x3/2
              average-pooled shortcut)
  effnet      3x EffNet block (EffNet also replaces the first layer, paper Sec. 3 "Addressing the first
              layer")
"""

from __future__ import annotations

import torch
from torch import nn

from repro.nn import ConvBNAct, channel_shuffle

MIN_CHANNELS = 6  # floor of the bottleneck width, so tiny networks keep a usable bottleneck
CHANNELS = (64, 128, 256)  # output channels of the three stages


def _act() -> nn.Module:
    return nn.LeakyReLU(0.01)


class EffNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bottleneck_factor: int = 2, depth_multiplier: int = 2):
        super().__init__()
        mid = max(MIN_CHANNELS, out_channels // bottleneck_factor)
        wide = mid * depth_multiplier
        self.pointwise = ConvBNAct(in_channels, mid, 1, act=_act)
        self.depthwise_row = ConvBNAct(mid, wide, (1, 3), groups=mid, act=_act)
        self.pool = nn.MaxPool2d((2, 1), stride=(2, 1))
        self.depthwise_col = ConvBNAct(wide, wide, (3, 1), groups=wide, act=_act)
        self.strided = ConvBNAct(wide, out_channels, (1, 2), stride=(1, 2), padding=0, act=_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.depthwise_row(self.pointwise(x)))
        return self.strided(self.depthwise_col(x))


class ConvPoolStage(nn.Sequential):
    """The baseline's stage: 3x3 conv -> BN -> leaky ReLU -> 2x2 max pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvBNAct(in_channels, out_channels, 3, act=_act), nn.MaxPool2d(2))


class MobileNetStage(nn.Sequential):
    """MobileNet's downsampling block: 3x3 depthwise with stride 2 -> 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvBNAct(in_channels, in_channels, 3, 2, groups=in_channels, act=_act),
                         ConvBNAct(in_channels, out_channels, 1, act=_act))


class ShuffleNetStage(nn.Module):
    """ShuffleNet's stride-2 unit; the residual branch makes out - in channels, the pooled input the rest."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4):
        super().__init__()
        bottleneck = out_channels // 4
        self.groups = groups
        self.compress = ConvBNAct(in_channels, bottleneck, 1, groups=groups, act=_act)
        self.depthwise = ConvBNAct(bottleneck, bottleneck, 3, 2, groups=bottleneck, act=None)
        self.expand = ConvBNAct(bottleneck, out_channels - in_channels, 1, groups=groups, act=None)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(self.compress(x), self.groups)
        out = self.expand(self.depthwise(out))
        return self.act(torch.cat((self.shortcut(x), out), dim=1))


class SmallNet(nn.Module):
    """Three downsampling stages -> flatten -> FC, the shape shared by all four compared networks."""

    def __init__(self, stages: list[nn.Module], out_channels: int, num_classes: int, input_size: int):
        super().__init__()
        self.features = nn.Sequential(*stages)
        side = input_size // 2 ** len(stages)
        self.fc = nn.Linear(out_channels * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def _widths(channels) -> list[tuple[int, int]]:
    ins = (3, *channels[:-1])
    return list(zip(ins, channels))


def baseline(num_classes: int = 10, input_size: int = 32, channels: tuple = CHANNELS) -> SmallNet:
    return SmallNet([ConvPoolStage(i, o) for i, o in _widths(channels)], channels[-1], num_classes, input_size)


def mobilenet(num_classes: int = 10, input_size: int = 32, channels: tuple = CHANNELS) -> SmallNet:
    (i0, o0), *rest = _widths(channels)
    stages = [ConvPoolStage(i0, o0)] + [MobileNetStage(i, o) for i, o in rest]
    return SmallNet(stages, channels[-1], num_classes, input_size)


def shufflenet(num_classes: int = 10, input_size: int = 32, channels: tuple = CHANNELS, groups: int = 4) -> SmallNet:
    (i0, o0), *rest = _widths(channels)
    stages = [ConvPoolStage(i0, o0)] + [ShuffleNetStage(i, o, groups) for i, o in rest]
    return SmallNet(stages, channels[-1], num_classes, input_size)


def effnet(num_classes: int = 10, input_size: int = 32, channels: tuple = CHANNELS,
           bottleneck_factor: int = 2, depth_multiplier: int = 2) -> SmallNet:
    stages = [EffNetBlock(i, o, bottleneck_factor, depth_multiplier) for i, o in _widths(channels)]
    return SmallNet(stages, channels[-1], num_classes, input_size)


MODELS = {"baseline": baseline, "mobilenet": mobilenet, "shufflenet": shufflenet, "effnet": effnet}
