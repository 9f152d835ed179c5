"""FasterNet (Chen et al., arXiv 2303.03667 / CVPR 2023).

Architecture per the paper's Sec. 3.4 and appendix Table 8: a 4x4/4 conv embedding -> four
stages of FasterNet blocks, separated by 2x2/2 conv merging layers that double the width ->
global average pool -> 1x1 conv to 1280 -> activation -> FC. Every embedding/merging conv is
followed by a norm layer. A FasterNet block is

    PConv 3x3 (on the first r*c channels) -> Conv 1x1 (c -> 2c) -> norm -> act -> Conv 1x1 (2c -> c)

with an identity shortcut around it (and stochastic depth on the branch). Norm and activation
sit only after the middle 1x1 conv: the paper removes them elsewhere to keep feature diversity.

Variants differ only in width c, depths, activation and stochastic-depth rate (Table 8 and the
training-settings Table 6), so they are rows of data in VARIANTS.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import StochasticDepth

from repro.nn import make_activation

# name: (embed_dim c, depths per stage, activation, max stochastic-depth rate)
# c, depths and activation: Table 8; stochastic depth: Table 6 ("Stoch. Depth" row).
VARIANTS: dict[str, dict] = {
    "t0": dict(embed_dim=40, depths=(1, 2, 8, 2), act="gelu", drop_path_rate=0.0),
    "t1": dict(embed_dim=64, depths=(1, 2, 8, 2), act="gelu", drop_path_rate=0.02),
    "t2": dict(embed_dim=96, depths=(1, 2, 8, 2), act="relu", drop_path_rate=0.05),
    "s": dict(embed_dim=128, depths=(1, 2, 13, 2), act="relu", drop_path_rate=0.1),
    "m": dict(embed_dim=144, depths=(3, 4, 18, 3), act="relu", drop_path_rate=0.2),
    "l": dict(embed_dim=192, depths=(3, 4, 18, 3), act="relu", drop_path_rate=0.3),
}
# Shared by every variant (Table 8): r = 1/4, MLP expansion 2, BN, 1280-d pre-classifier conv.
DEFAULTS = dict(partial_ratio=0.25, mlp_ratio=2.0, norm="bn", feature_dim=1280)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor (the 'LN' row of the ablation, Table 5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


NORMS = {"bn": nn.BatchNorm2d, "ln": LayerNorm2d}
ACTS = {"relu": nn.ReLU, "gelu": nn.GELU}


class PartialConv(nn.Module):
    """PConv: a regular 3x3 conv on the first `dim * partial_ratio` channels; the rest pass untouched.

    Two forwards that compute the same thing:
      * "split_cat": split -> conv -> cat. Autograd-friendly (no in-place writes), so used in training.
      * "slicing":   copy the input once and overwrite its first channels in place. Only the conv's
                     output is written; the untouched channels are never re-concatenated. Inference only.
    `forward_mode="auto"` (default) picks split_cat while training or compiling, else slicing.
    """

    MODES = ("auto", "split_cat", "slicing")

    def __init__(self, dim: int, partial_ratio: float = 0.25, kernel_size: int = 3, forward_mode: str = "auto"):
        super().__init__()
        if forward_mode not in self.MODES:
            raise ValueError(f"PartialConv: forward_mode must be one of {self.MODES}, got {forward_mode!r}")
        self.dim_conv = int(round(dim * partial_ratio))
        if not 0 < self.dim_conv <= dim:
            raise ValueError(f"PartialConv: partial_ratio {partial_ratio} leaves no channel to convolve out of {dim}")
        self.dim_untouched = dim - self.dim_conv
        self.forward_mode = forward_mode
        self.conv = nn.Conv2d(self.dim_conv, self.dim_conv, kernel_size, 1, kernel_size // 2, bias=False)

    def forward_split_cat(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        return torch.cat((self.conv(x1), x2), dim=1)

    def forward_slicing(self, x: torch.Tensor) -> torch.Tensor:
        # The one copy is required: the block's shortcut still needs the unmodified input.
        out = x.clone()
        out[:, : self.dim_conv] = self.conv(x[:, : self.dim_conv])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.forward_mode
        if mode == "auto":
            # The in-place slicing forward saves a copy in eager mode only; under torch.compile
            # split_cat lets Inductor plan the buffers (and its weight freezing cannot trace the
            # in-place write).
            mode = "split_cat" if self.training or torch.compiler.is_compiling() else "slicing"
        return self.forward_slicing(x) if mode == "slicing" else self.forward_split_cat(x)


class FasterNetBlock(nn.Module):
    """PConv -> 1x1 (expand) -> norm -> act -> 1x1 (project), plus identity shortcut with drop path."""

    def __init__(self, dim: int, partial_ratio: float, mlp_ratio: float, norm: type[nn.Module],
                 act: type[nn.Module], drop_path: float = 0.0, forward_mode: str = "auto"):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.spatial_mixing = PartialConv(dim, partial_ratio, forward_mode=forward_mode)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            norm(hidden),
            make_activation(act),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.spatial_mixing(x)))


class ConvNorm(nn.Sequential):
    """Non-overlapping strided conv (embedding 4x4/4 or merging 2x2/2) followed by a norm layer."""

    def __init__(self, in_dim: int, out_dim: int, patch: int, norm: type[nn.Module]):
        super().__init__(nn.Conv2d(in_dim, out_dim, patch, stride=patch, bias=False), norm(out_dim))


class FasterNet(nn.Module):
    def __init__(self, embed_dim: int = 40, depths: Sequence[int] = (1, 2, 8, 2), num_classes: int = 1000,
                 partial_ratio: float = 0.25, mlp_ratio: float = 2.0, norm: str = "bn", act: str = "gelu",
                 drop_path_rate: float = 0.0, feature_dim: int = 1280, in_channels: int = 3,
                 forward_mode: str = "auto"):
        super().__init__()
        if norm not in NORMS or act not in ACTS:
            raise ValueError(f"FasterNet: norm must be one of {sorted(NORMS)} and act one of {sorted(ACTS)}; "
                             f"got norm={norm!r}, act={act!r}")
        norm_layer, act_layer = NORMS[norm], ACTS[act]
        self.widths = [embed_dim * 2**i for i in range(len(depths))]
        self.patch_embed = ConvNorm(in_channels, embed_dim, 4, norm_layer)
        # Stochastic depth grows linearly with block index, from 0 to drop_path_rate.
        n = sum(depths)  # (plain Python so that building on the meta device works)
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        start = 0
        for i, (dim, depth) in enumerate(zip(self.widths, depths)):
            if i > 0:
                self.merges.append(ConvNorm(self.widths[i - 1], dim, 2, norm_layer))
            self.stages.append(nn.Sequential(*[
                FasterNetBlock(dim, partial_ratio, mlp_ratio, norm_layer, act_layer, rates[start + j], forward_mode)
                for j in range(depth)
            ]))
            start += depth
        self.num_features = self.widths[-1]
        # Classifier: global pool -> Conv 1x1 to 1280 -> act -> FC (Table 8, "Classifier" row).
        self.pre_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(self.num_features, feature_dim, 1, bias=False),
            act_layer(),
        )
        self.head = nn.Linear(feature_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, out_indices: Sequence[int] = ()) -> list[torch.Tensor]:
        """Run the four stages; return the outputs of the stages in `out_indices` (plus the last one)."""
        x = self.patch_embed(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.merges[i - 1](x)
            x = stage(x)
            if i in out_indices:
                feats.append(x)
        if len(self.stages) - 1 not in out_indices:
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)[-1]
        return self.head(torch.flatten(self.pre_head(x), 1))


class FasterNetBackbone(nn.Module):
    """FasterNet without its classifier, returning multi-scale stage features (strides 4/8/16/32).

    For dense prediction (the paper's Mask R-CNN experiments); the paper adds a norm layer on each
    returned feature map, which we do too.
    """

    def __init__(self, net: FasterNet, out_indices: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        self.out_indices = tuple(out_indices)
        self.patch_embed, self.stages, self.merges = net.patch_embed, net.stages, net.merges
        norm_type = type(net.patch_embed[1])
        self.out_norms = nn.ModuleList([norm_type(net.widths[i]) for i in self.out_indices])
        self.out_channels = [net.widths[i] for i in self.out_indices]
        self.strides = [4 * 2**i for i in self.out_indices]  # 4x4/4 embedding, then 2x2/2 merges

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.merges[i - 1](x)
            x = stage(x)
            if i in self.out_indices:
                outs.append(self.out_norms[self.out_indices.index(i)](x))
        return outs


def _config(variant: str, **overrides) -> dict:
    key = variant.lower().removeprefix("fasternet_").removeprefix("fasternet-")
    if key not in VARIANTS:
        raise ValueError(f"fasternet: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    cfg = {**DEFAULTS, **VARIANTS[key]}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def fasternet(variant: str = "t0", num_classes: int = 1000, partial_ratio: float | None = None,
              norm: str | None = None, act: str | None = None, drop_path_rate: float | None = None,
              embed_dim: int | None = None, depths: Sequence[int] | None = None,
              forward_mode: str = "auto") -> FasterNet:
    """FasterNet-T0/T1/T2/S/M/L. `partial_ratio`, `norm` ("bn"/"ln"), `act` ("relu"/"gelu"),
    `embed_dim` and `depths` override the variant's value (the ablation knobs of Table 5)."""
    cfg = _config(variant, partial_ratio=partial_ratio, norm=norm, act=act, drop_path_rate=drop_path_rate,
                  embed_dim=embed_dim, depths=tuple(depths) if depths is not None else None)
    return FasterNet(num_classes=num_classes, forward_mode=forward_mode, **cfg)


def backbone(variant: str = "t0", out_indices: Sequence[int] = (0, 1, 2, 3), **kwargs) -> FasterNetBackbone:
    """Multi-scale feature extractor for detection/segmentation heads."""
    return FasterNetBackbone(fasternet(variant, num_classes=0, **kwargs), out_indices)


MODELS = {"fasternet": fasternet}
# Detection backbones (repro.nn.detection): a table names them as `backbone:` of fasterrcnn/maskrcnn.
# Parameter names match `fasternet` (minus its classifier), so an ImageNet checkpoint loads into it.
BACKBONES = {"fasternet": backbone}
