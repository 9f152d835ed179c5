"""The papers' detection backbones in mmdet's model registry (optional: needs mmdet + mmcv).

Importing this module registers one mmdet backbone type, `ReproBackbone`, that builds any paper's
`BACKBONES[name]` (see repro.nn.detection). An mmdet config selects it with

    custom_imports = dict(imports=["repro.nn.mmdet_backbones"], allow_failed_imports=False)
    model = dict(backbone=dict(type="ReproBackbone", paper="fasternet", name="fasternet",
                               args=dict(variant="s"), checkpoint="runs/<cell>/checkpoints/last.ckpt"))

`checkpoint` may be a repro classification run's checkpoint (e.g. a fasternet/table3 run): its
weights load by name, as `init_from` does for repro's own detection runs. Without mmdet installed
importing this module does nothing (REGISTERED stays False), so nothing in repro depends on it.
"""

from __future__ import annotations

import importlib

try:
    from mmdet.registry import MODELS
    from mmengine.model import BaseModule
except ImportError:  # mmdet is an optional extra; see docs/detection.md
    MODELS = BaseModule = None

REGISTERED = False


def build_backbone(paper: str, name: str, args: dict | None = None):
    module = importlib.import_module(f"papers.{paper}.models")
    backbones = getattr(module, "BACKBONES", {})
    if name not in backbones:
        raise KeyError(f"papers/{paper} has no detection backbone {name!r}; it defines: {', '.join(sorted(backbones))}")
    return backbones[name](**(args or {}))


if MODELS is not None:

    @MODELS.register_module()
    class ReproBackbone(BaseModule):
        """A paper's backbone as an mmdet backbone: a tuple of feature maps, finest first."""

        def __init__(self, paper: str, name: str, args: dict | None = None, checkpoint: str | None = None,
                     init_cfg=None):
            super().__init__(init_cfg)
            self.body = build_backbone(paper, name, args)
            self.out_channels = list(self.body.out_channels)
            self.strides = list(self.body.strides)
            self.checkpoint = checkpoint

        def init_weights(self):
            super().init_weights()
            if self.checkpoint:
                import torch

                from repro.nn.detection import load_classification_weights

                state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
                load_classification_weights(self.body, state.get("state_dict", state))

        def forward(self, x):
            return tuple(self.body(x))

    REGISTERED = True
