"""GhostNet (Han et al., arXiv 1911.11907 / CVPR 2020) and the paper's CIFAR-10 Ghost baselines.

Ghost module (Sec. 3.1): a primary conv makes m = ceil(n / s) "intrinsic" maps; a d x d depthwise
conv (the cheap linear operation) makes (s - 1) ghost maps from each; the concatenation is cut to
the n requested channels. Both parts are conv -> BN (-> ReLU), so the module replaces a whole
conv-BN(-ReLU) unit of an existing network.

GhostNet (Sec. 3.3, architecture table) is MobileNetV3-large's layout with Ghost bottlenecks: Ghost module
(expand, ReLU) -> [depthwise stride-2 conv + BN if the block downsamples] -> [SE] -> Ghost module
(project, linear), with an identity shortcut or, where shape changes, depthwise + 1x1 conv.

CIFAR-10 (Sec. 4.1): VGG-16 and ResNet-56 with every conv-BN(-ReLU) swapped for a Ghost module of
the same kernel size and output width; `ratio` (s) and `dw_size` (d) are the knobs of the s and d
ablations (d_ablation.yaml, s_ablation.yaml).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from repro.nn import ConvBNAct, SqueezeExcite, make_divisible


class GhostModule(nn.Module):
    """n output maps from ceil(n/s) intrinsic maps plus their cheap depthwise 'ghosts'."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, ratio: int = 2,
                 dw_size: int = 3, stride: int = 1, act: bool = True):
        super().__init__()
        if ratio < 1:
            raise ValueError(f"GhostModule: ratio s must be >= 1, got {ratio}")
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        relu = nn.ReLU if act else None
        self.primary = ConvBNAct(in_channels, intrinsic, kernel_size, stride, act=relu)
        # s = 1 degenerates to a plain conv: no ghosts to make.
        self.cheap = (ConvBNAct(intrinsic, intrinsic * (ratio - 1), dw_size, groups=intrinsic, act=relu)
                      if ratio > 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.primary(x)
        if self.cheap is None:
            return x[:, : self.out_channels]
        # ceil() can make one or more maps too many; slice back to the requested width.
        return torch.cat((x, self.cheap(x)), dim=1)[:, : self.out_channels]


class GhostBottleneck(nn.Module):
    """Ghost bottleneck (Fig. 3): expand Ghost module -> [dw stride 2] -> [SE] -> project Ghost module."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dw_kernel: int = 3,
                 stride: int = 1, se_ratio: float = 0.0):
        super().__init__()
        self.expand = GhostModule(in_channels, mid_channels, act=True)
        self.downsample = (ConvBNAct(mid_channels, mid_channels, dw_kernel, stride, groups=mid_channels, act=None)
                           if stride > 1 else nn.Identity())
        # SE as in MobileNetV3: channels/4 rounded to a multiple of 4, hard-sigmoid gate.
        self.se = (SqueezeExcite(mid_channels, make_divisible(mid_channels * se_ratio, 4), gate=nn.Hardsigmoid)
                   if se_ratio > 0 else nn.Identity())
        self.project = GhostModule(mid_channels, out_channels, act=False)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvBNAct(in_channels, in_channels, dw_kernel, stride, groups=in_channels, act=None),
                ConvBNAct(in_channels, out_channels, 1, act=None),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.downsample(self.expand(x))))
        return out + self.shortcut(x)


# Architecture table (Sec. 3.3): one row per Ghost bottleneck: (dw kernel, expansion width, output width, SE ratio, stride).
GHOSTNET_CFG = (
    (3, 16, 16, 0.0, 1),
    (3, 48, 24, 0.0, 2),
    (3, 72, 24, 0.0, 1),
    (5, 72, 40, 0.25, 2),
    (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0.0, 2),
    (3, 200, 80, 0.0, 1),
    (3, 184, 80, 0.0, 1),
    (3, 184, 80, 0.0, 1),
    (3, 480, 112, 0.25, 1),
    (3, 672, 112, 0.25, 1),
    (5, 672, 160, 0.25, 2),
    (5, 960, 160, 0.0, 1),
    (5, 960, 160, 0.25, 1),
    (5, 960, 160, 0.0, 1),
    (5, 960, 160, 0.25, 1),
)
STEM_CHANNELS, LAST_CHANNELS, HEAD_CHANNELS = 16, 960, 1280
WIDTHS = (0.5, 1.0, 1.3)  # the widths of the ImageNet comparison table


class GhostNet(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                 cfg=GHOSTNET_CFG, in_channels: int = 3):
        super().__init__()
        # Width multiplier scales every layer but the 1280-d head; channels round to multiples of 4.
        stem = make_divisible(STEM_CHANNELS * width, 4)
        layers: list[nn.Module] = [ConvBNAct(in_channels, stem, 3, 2)]
        prev = stem
        for k, exp, out, se, stride in cfg:
            out_c, mid_c = make_divisible(out * width, 4), make_divisible(exp * width, 4)
            layers.append(GhostBottleneck(prev, mid_c, out_c, k, stride, se))
            prev = out_c
        last = make_divisible(LAST_CHANNELS * width, 4)
        layers.append(ConvBNAct(prev, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # 1x1 conv to 1280 + ReLU after pooling (as MobileNetV3), dropout 0.2, then the classifier.
        self.head = nn.Sequential(nn.Conv2d(last, HEAD_CHANNELS, 1, bias=True), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.pool(self.features(x)))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def ghostnet(width: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> GhostNet:
    return GhostNet(width=width, num_classes=num_classes, dropout=dropout)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 baselines (Sec. 4.1: the s/d ablations and the CIFAR-10 comparison) and their Ghost versions.


def _unit(in_c: int, out_c: int, stride: int = 1, act: bool = True, ghost: dict | None = None) -> nn.Module:
    """A 3x3 conv-BN(-ReLU) unit, or the Ghost module that replaces it (same kernel, same width)."""
    if ghost is None:
        return ConvBNAct(in_c, out_c, 3, stride, act=nn.ReLU if act else None)
    return GhostModule(in_c, out_c, 3, stride=stride, act=act, **ghost)


# VGG-16 for CIFAR: 13 3x3 convs ('M' = 2x2 max pool), as in the pruning papers the Ghost paper
# compares with; the classifier is 512 -> 512 (BN, ReLU) -> classes, which with BN gives the
# 15M weights / 313M FLOPs of the CIFAR-10 comparison table.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGGCifar(nn.Module):
    def __init__(self, num_classes: int = 10, ghost: dict | None = None, cfg=VGG16_CFG):
        super().__init__()
        layers, prev = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(_unit(prev, v, ghost=ghost))
                prev = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # 1x1 already at 32 px; keeps other sizes working
        self.classifier = nn.Sequential(
            nn.Linear(prev, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlockCifar(nn.Module):
    """ResNet basic block with the parameter-free 'option A' shortcut of He et al.'s CIFAR ResNets
    (stride-2 subsampling + zero-padded channels), so the shortcut adds no weights."""

    def __init__(self, in_c: int, out_c: int, stride: int, ghost: dict | None):
        super().__init__()
        self.conv1 = _unit(in_c, out_c, stride, act=True, ghost=ghost)
        self.conv2 = _unit(out_c, out_c, 1, act=False, ghost=ghost)
        self.stride, self.pad = stride, out_c - in_c
        self.act = nn.ReLU(inplace=True)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for CIFAR: 3x3 conv (16) -> 3 stages of n blocks (16/32/64) -> pool -> FC."""

    def __init__(self, depth: int = 56, num_classes: int = 10, ghost: dict | None = None):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"ResNetCifar: depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = _unit(3, 16, ghost=ghost)
        blocks, prev = [], 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(n):
                blocks.append(BasicBlockCifar(prev, width, 2 if (i > 0 and j == 0) else 1, ghost))
                prev = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def vgg16_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(num_classes)


def ghost_vgg16(num_classes: int = 10, ratio: int = 2, dw_size: int = 3) -> VGGCifar:
    """Ghost-VGG-16: every conv of VGG-16 replaced by a Ghost module with ratio s and cheap kernel d."""
    return VGGCifar(num_classes, ghost=dict(ratio=ratio, dw_size=dw_size))


def resnet56_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(56, num_classes)


def ghost_resnet56(num_classes: int = 10, ratio: int = 2, dw_size: int = 1) -> ResNetCifar:
    """Ghost-ResNet-56: every conv of ResNet-56 replaced by a Ghost module (ratio s, cheap kernel d).

    The CIFAR-10 table labels this row only "(s=2)". d=1 is the one cheap-op kernel whose
    complexity rounds to both printed figures: 429,882 params / 63.0M MACs (printed 0.43M / 63M);
    d=3, the VGG-16 row's kernel, gives 438,010 / 65.1M.
    """
    return ResNetCifar(56, num_classes, ghost=dict(ratio=ratio, dw_size=dw_size))


MODELS = {
    "ghostnet": ghostnet,
    "vgg16_cifar": vgg16_cifar,
    "ghost_vgg16": ghost_vgg16,
    "resnet56_cifar": resnet56_cifar,
    "ghost_resnet56": ghost_resnet56,
}
