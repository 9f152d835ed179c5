"""The fast path: transformations that make a model run faster without changing what it computes.

Each function returns a model (or a context) that is numerically equivalent to its input, up to
float rounding (fusion, memory format) or up to the stated reduced precision (bf16 autocast,
opt-in, GPU only). They are usable from training (`prepare_for_training`) and from benchmarks or
evaluation (`prepare_for_inference`):

* `fuse_conv_bn(model)`: folds every eval-mode BatchNorm2d that directly follows a Conv2d inside an
  nn.Sequential into that conv (FasterNet reports its latency numbers this way; so do RepVGG-style
  deploy modes). Inference only: training needs the BN statistics.
* `to_channels_last(model)`: NHWC memory format, which cuDNN (tensor cores) and oneDNN prefer for
  1x1 and depthwise convs.
* `autocast(device, dtype)`: bf16 autocast, or a no-op for fp32. `fast_dtype` gives the fast path
  bf16 wherever the device computes it natively (`native_bf16`: CUDA Ampere or newer; CPUs with
  AVX512-BF16 or AMX), by the same rule on GPU and CPU. Elsewhere bf16 is emulated and slower than
  fp32, so the fast path stays fp32, and an explicit bf16 request is refused with that reason.
  On CPU, training keeps depthwise convs in fp32 (`keep_depthwise_fp32`): oneDNN's bf16 depthwise
  backward is slower than fp32's. Measured on this Zen 4 EPYC (docs/bench.md), the bf16 fast path
  is 1.4-2.5x timm's fp32 in training and 2.1-2.9x in inference.
* `maybe_compile(model, enabled, inference)`: torch.compile (Inductor). For inference it also
  freezes the weights (`freezing`), which lets Inductor fold BN and pre-pack conv weights for
  oneDNN on CPU: the largest single CPU win measured here (docs/bench.md). Compiling costs tens of
  seconds per model and training step on 2 cores, paid once, before any timing.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_conv_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of `model` with Conv2d -> BatchNorm2d pairs of every nn.Sequential folded.

    Only pairs inside an nn.Sequential are fused, because there the order of the children is the
    order of execution; elsewhere a BN attribute next to a conv attribute proves nothing about the
    data flow. The BN becomes nn.Identity so module paths and indices stay the same. Only plain
    nn.BatchNorm2d is folded: subclasses (e.g. timm's BatchNormAct2d) carry an activation.
    """
    fused = model if inplace else copy.deepcopy(model)
    fused.eval()
    for parent in fused.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                parent._modules[first] = fuse_conv_bn_eval(conv, bn)
                parent._modules[second] = nn.Identity()
    return fused


def count_batchnorms(model: nn.Module) -> int:
    return sum(type(m) is nn.BatchNorm2d for m in model.modules())


def to_channels_last(model: nn.Module) -> nn.Module:
    """The model with its 4-d weights in channels_last (NHWC) memory format (in place, returned)."""
    return model.to(memory_format=torch.channels_last)


def to_input_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


DTYPES = ("fp32", "bf16")


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 in hardware (CUDA: Ampere or newer; CPU: AVX512-BF16 or AMX)."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    try:  # a private op, but the one oneDNN itself consults; a torch without it gets fp32
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_dtype(device: str, fast: bool, requested: str | None = None) -> str:
    """The compute dtype of a run: `requested` if given (checked), else bf16 on a fast path where
    the device computes bf16 natively, else fp32."""
    if requested is None:
        return "bf16" if fast and native_bf16(device) else "fp32"
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {requested!r}")
    if requested == "bf16" and not fast:
        raise ValueError("bf16 belongs to the fast path: add --fast (the default path is timm's: fp32)")
    if requested == "bf16" and not native_bf16(device):
        raise ValueError(f"bf16 on {device}: this {device.upper()} has no native bf16 "
                         f"(needs AVX512-BF16/AMX on CPU, Ampere or newer on CUDA); emulated bf16 is slower than fp32")
    return requested


def autocast(device: str, dtype: str = "bf16"):
    """bf16 autocast on `device` when dtype is "bf16", else a no-op context."""
    if dtype == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Float32Conv2d(nn.Conv2d):
    """A Conv2d that computes in fp32 inside a bf16 autocast region (same parameters, same keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def is_depthwise(conv: nn.Module) -> bool:
    return type(conv) is nn.Conv2d and conv.groups > 1 and conv.groups == conv.in_channels


def depthwise_fp32_in_training(device: str, dtype: str) -> bool:
    """Whether `prepare_for_training` keeps depthwise convs fp32 (see `keep_depthwise_fp32`)."""
    return dtype == "bf16" and device == "cpu"


def keep_depthwise_fp32(model: nn.Module) -> nn.Module:
    """Depthwise convs of `model` compute in fp32 under bf16 autocast (in place, returned).

    For CPU training only: oneDNN's bf16 depthwise backward is slower than fp32's. A GhostNet
    training step, eager, 1 thread, took 666 ms in fp32, 1195 ms in bf16, and 636 ms in bf16 with
    its depthwise convs in fp32; EfficientNet-B0 took 2020 / 1651 / 1087 ms.
    """
    for conv in model.modules():
        if is_depthwise(conv):
            conv.__class__ = Float32Conv2d
    return model


def maybe_compile(model: nn.Module, enabled: bool, inference: bool = False):
    if not enabled:
        return model
    # Freezing treats parameters as constants: only sound when nothing will update them.
    return torch.compile(model, options={"freezing": True} if inference else None)


def default_compile(device: str, fast: bool) -> bool:
    """The fast path compiles on every device: on CPU too, compile plus freezing is what beats eager."""
    return fast


def prepare_for_inference(model: nn.Module, device: str = "cpu", channels_last: bool = True,
                          fuse: bool = True, compile: bool = False) -> nn.Module:
    """An eval-mode model for timing or evaluation: fused BN, channels_last, optionally compiled."""
    model = fuse_conv_bn(model) if fuse else model.eval()
    model = model.to(device)
    if channels_last:
        model = to_channels_last(model)
    return maybe_compile(model, compile, inference=True)


def prepare_for_training(model: nn.Module, device: str = "cpu", channels_last: bool = True,
                         compile: bool = False, dtype: str = "fp32") -> nn.Module:
    """The training-side fast path (no fusion: BN statistics are needed). Wrap the steps in
    `autocast(device, dtype)`; feed inputs through `to_input_format`."""
    model = model.to(device)
    if depthwise_fp32_in_training(device, dtype):
        keep_depthwise_fp32(model)
    if channels_last:
        model = to_channels_last(model)
    return maybe_compile(model, compile)
