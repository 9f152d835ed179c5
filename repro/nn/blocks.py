"""Small building blocks that several papers' networks are composed of."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: view channels as (groups, n), transpose to (n, groups), flatten.

    After it, every group of the next grouped conv receives channels from every group of the
    previous one. One reshape + transpose; the final reshape copies once.
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels do not split into {groups} groups")
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        # channels_last (the fast path): shuffle the innermost dim of the NHWC view, so the one
        # copy stays NHWC. The NCHW recipe below would copy into NCHW order (10x slower on CPU)
        # and make every following conv convert back.
        nhwc = x.permute(0, 2, 3, 1).reshape(batch, height, width, groups, channels // groups)
        return nhwc.transpose(3, 4).reshape(batch, height, width, channels).permute(0, 3, 1, 2)
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def round_to_multiple(value: float, divisor: int) -> int:
    """Nearest multiple of `divisor` (at least `divisor`)."""
    return max(divisor, int(round(value / divisor)) * divisor)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNet/EfficientNet channel rounding: nearest multiple of `divisor`, never below 90% of value."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_activation(act: Callable[[], nn.Module]) -> nn.Module:
    """`act(inplace=True)` where the activation supports it, else `act()`.

    Every caller applies the activation to a tensor nobody else reads (a BN or conv output), so
    overwriting it is safe; it saves one allocation and one memory pass per activation, which is
    most of what separates a naive CPU forward from timm's.
    """
    try:
        return act(inplace=True)
    except TypeError:  # e.g. nn.GELU, nn.Identity
        return act()


class ConvBNAct(nn.Sequential):
    """Conv -> BatchNorm -> activation (activation optional: pass `act=None`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        padding: int | tuple[int, int] | None = None,
        bias: bool = False,
    ):
        if padding is None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = (ks[0] // 2, ks[1] // 2)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias),
            nn.BatchNorm2d(out_channels),
        ]
        if act is not None:
            layers.append(make_activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation: global pool -> reduce -> act -> expand -> gate."""

    def __init__(
        self,
        channels: int,
        reduced_channels: int,
        act: Callable[[], nn.Module] = nn.ReLU,
        gate: Callable[[], nn.Module] = nn.Sigmoid,
    ):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced_channels, 1, bias=True)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(reduced_channels, channels, 1, bias=True)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * self.gate(scale)
