"""EfficientNet B0-B7 (Tan & Le, arXiv 1905.11946 / ICML 2019) and the baselines of its Table 3.

EfficientNet-B0 is the paper's Table 1: a 3x3/2 stem, seven stages of MBConv blocks, a 1x1 head
conv to 1280 channels, global pooling, dropout and an FC layer. MBConv = 1x1 expansion (skipped when
the expand ratio is 1) -> k x k depthwise -> squeeze-and-excitation -> 1x1 linear projection, with
an identity shortcut (and drop-connect) when shape is kept. Swish throughout; SE squeezes to 0.25
of the *block input* channels, as in the official release.

B1-B7 are compound-scaled B0 (Sec. 3.3): channels -> make_divisible(c * width, 8),
repeats -> ceil(depth * repeats), input resolution and dropout per model (SCALING).

Table 3's baselines are here too, each with depth (d), width (w) and resolution knobs: MobileNetV1,
MobileNetV2 and ResNet-50. Depth scales the repeats of every stage (ceil(d * n)), width scales
every stage's channels (make_divisible(c * w, 8)); resolution is the input size the caller feeds
(`resolution(model_name, r)` gives round(224 * r)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from repro.nn import ConvBNAct, SqueezeExcite, make_divisible


class Stage(NamedTuple):
    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


# Table 1 of the paper (stages 2-8); the stem is Conv3x3/2 with 32 channels, the head 1x1 to 1280.
B0_STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# (width, depth, resolution, dropout) per model, as in the official release (efficientnet_builder.py);
# the paper states dropout rises linearly from 0.2 (B0) to 0.5 (B7) (Sec. 5.2).
SCALING = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def round_channels(channels: int, width: float) -> int:
    return make_divisible(channels * width, 8)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def scaled_stages(width: float, depth: float) -> list[Stage]:
    """B0's stage table after compound scaling: the data B1-B7 are built from."""
    return [s._replace(channels=round_channels(s.channels, width), repeats=round_repeats(s.repeats, depth))
            for s in B0_STAGES]


def _bn_swish(channels_in, channels_out, kernel=1, stride=1, groups=1, act=True):
    block = ConvBNAct(channels_in, channels_out, kernel, stride, groups=groups, act=nn.SiLU if act else None)
    # TF's batch-norm defaults of the official release: momentum 0.99 (torch: 0.01), eps 1e-3.
    block[1].momentum, block[1].eps = 0.01, 1e-3
    return block


class DropPath(nn.Module):
    """Stochastic depth ("drop connect" in the paper): drop a residual branch per sample."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
        return x * mask / keep


class MBConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int,
                 se_ratio: float = 0.25, drop_path: float = 0.0):
        super().__init__()
        mid = in_ch * expand
        self.expand = _bn_swish(in_ch, mid) if expand != 1 else nn.Identity()
        self.depthwise = _bn_swish(mid, mid, kernel, stride, groups=mid)
        # SE width is a fraction of the block *input*, not of the expanded width.
        self.se = SqueezeExcite(mid, max(1, int(in_ch * se_ratio)), act=nn.SiLU) if se_ratio else nn.Identity()
        self.project = _bn_swish(mid, out_ch, act=False)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + self.drop_path(out) if self.residual else out


class EfficientNet(nn.Module):
    def __init__(self, stages: list[Stage], stem: int, head: int, num_classes: int = 1000,
                 dropout: float = 0.2, drop_path_rate: float = 0.2, se_ratio: float = 0.25):
        super().__init__()
        self.stem = _bn_swish(3, stem, 3, 2)
        total = sum(s.repeats for s in stages)
        blocks, in_ch, index = [], stem, 0
        for s in stages:
            for i in range(s.repeats):
                # Drop-connect rate grows linearly with block index, as in the official release.
                blocks.append(MBConv(in_ch, s.channels, s.expand, s.kernel, s.stride if i == 0 else 1,
                                     se_ratio, drop_path_rate * index / total))
                in_ch, index = s.channels, index + 1
        self.blocks = nn.Sequential(*blocks)
        self.head = _bn_swish(in_ch, head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def efficientnet(variant: str = "b0", num_classes: int = 1000, width: float | None = None,
                 depth: float | None = None, dropout: float | None = None, drop_path_rate: float = 0.2,
                 se_ratio: float = 0.25) -> EfficientNet:
    """EfficientNet-B0..B7; `width`/`depth`/`dropout` override the variant's coefficients.

    drop_path_rate 0.2 is the official release's default; the ICML text says "drop connect ratio 0.3".
    """
    w, d, _, p = SCALING[variant]
    w, d = width or w, depth or d
    return EfficientNet(scaled_stages(w, d), round_channels(STEM_CHANNELS, w), round_channels(HEAD_CHANNELS, w),
                        num_classes, p if dropout is None else dropout, drop_path_rate, se_ratio)


# --- Table 3 baselines --------------------------------------------------------------------------

# MobileNetV1 (Howard et al. 2017, Table 1): stem 3x3/2 32, then depthwise-separable layers as
# (channels, stride of the first layer, repeats); the five 512-wide layers are one stage.
MOBILENET_V1_STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 2, 6), (1024, 2, 2))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        in_ch = round_channels(32, width)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, 2)]
        for channels, stride, repeats in MOBILENET_V1_STAGES:
            out_ch = round_channels(channels, width)
            for i in range(round_repeats(repeats, depth)):
                layers += [ConvBNAct(in_ch, in_ch, 3, stride if i == 0 else 1, groups=in_ch),
                           ConvBNAct(in_ch, out_ch, 1)]
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


# MobileNetV2 (Sandler et al. 2018, Table 2): (expand t, channels c, repeats n, stride s).
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expand: int, stride: int):
        super().__init__()
        mid = in_ch * expand
        layers = [ConvBNAct(in_ch, mid, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [ConvBNAct(mid, mid, 3, stride, groups=mid, act=nn.ReLU6), ConvBNAct(mid, out_ch, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        in_ch = round_channels(32, width)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in MOBILENET_V2_STAGES:
            out_ch = round_channels(c, width)
            for i in range(round_repeats(n, depth)):
                layers.append(InvertedResidual(in_ch, out_ch, t, s if i == 0 else 1))
                in_ch = out_ch
        # As in MobileNetV2, the last conv is not narrowed below 1280 for width < 1.
        last = round_channels(1280, max(1.0, width))
        layers.append(ConvBNAct(in_ch, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, planes: int, stride: int, expansion: int = 4):
        super().__init__()
        out_ch = planes * expansion
        # Stride on the 3x3 conv (torchvision's "ResNet v1.5").
        self.body = nn.Sequential(ConvBNAct(in_ch, planes, 1), ConvBNAct(planes, planes, 3, stride),
                                  ConvBNAct(planes, out_ch, 1, act=None))
        self.shortcut = (ConvBNAct(in_ch, out_ch, 1, stride, act=None)
                         if stride != 1 or in_ch != out_ch else nn.Identity())
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.body(x))


RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (planes, blocks, stride)


class ResNet50(nn.Module):
    """ResNet-50 with every stage's width (incl. the stem) times `width` and blocks times `depth`."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        in_ch = round_channels(64, width)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 7, 2), nn.MaxPool2d(3, 2, 1)]
        for planes, blocks, stride in RESNET50_STAGES:
            planes = round_channels(planes, width)
            for i in range(round_repeats(blocks, depth)):
                layers.append(Bottleneck(in_ch, planes, stride if i == 0 else 1))
                in_ch = planes * 4
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v1(num_classes: int = 1000, width: float = 1.0, depth: float = 1.0) -> MobileNetV1:
    return MobileNetV1(num_classes, width, depth)


def mobilenet_v2(num_classes: int = 1000, width: float = 1.0, depth: float = 1.0) -> MobileNetV2:
    return MobileNetV2(num_classes, width, depth)


def resnet50(num_classes: int = 1000, width: float = 1.0, depth: float = 1.0) -> ResNet50:
    return ResNet50(num_classes, width, depth)


def resolution(multiplier: float, base: int = 224) -> int:
    """Input size for a resolution multiplier r of Table 3 (r=1 is 224 px)."""
    return int(round(base * multiplier))


def _variant(name: str):
    # An explicit signature, so a recipe's drop_rate / drop_path_rate find their arguments and the
    # resolved args of a cell name every value that builds it.
    def build(num_classes: int = 1000, width: float | None = None, depth: float | None = None,
              dropout: float | None = None, drop_path_rate: float = 0.2, se_ratio: float = 0.25) -> EfficientNet:
        return efficientnet(name, num_classes, width=width, depth=depth, dropout=dropout,
                            drop_path_rate=drop_path_rate, se_ratio=se_ratio)
    build.__name__ = f"efficientnet_{name}"
    return build


MODELS = {f"efficientnet_{name}": _variant(name) for name in SCALING}
MODELS.update(efficientnet=efficientnet, mobilenet_v1=mobilenet_v1, mobilenet_v2=mobilenet_v2, resnet50=resnet50)
