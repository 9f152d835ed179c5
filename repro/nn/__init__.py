"""Blocks shared by more than one paper's models. A paper-specific block lives in its paper folder."""

from repro.nn.blocks import (
    ConvBNAct,
    SqueezeExcite,
    channel_shuffle,
    make_activation,
    make_divisible,
    round_to_multiple,
)

__all__ = ["ConvBNAct", "SqueezeExcite", "channel_shuffle", "make_activation", "make_divisible", "round_to_multiple"]
