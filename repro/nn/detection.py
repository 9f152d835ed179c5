"""Two-stage detectors (torchvision Faster R-CNN / Mask R-CNN) over any paper's backbone.

A paper folder exports `BACKBONES = {name: builder}` in its models.py. A backbone builder takes its
knobs as keyword arguments and returns an `nn.Module` whose forward gives a list of feature maps,
finest first, with two attributes:

    out_channels: list[int]   channels of each returned map
    strides: list[int]        its stride w.r.t. the input (e.g. [8, 16, 32])

Its parameter names are those of the paper's classification model (minus the classifier), so an
ImageNet checkpoint of that model loads into it (`init_from` in a table spec).

`fasterrcnn` / `maskrcnn` below are the model builders a detection table names
(`model: fasterrcnn, args: {backbone: shufflenet_v1, backbone_args: {groups: 3}}`);
`repro.spec.cells` binds them to the paper's BACKBONES, so adding a paper needs no edit here.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

# Runtime knobs a preset may set through `train.detector` (proposal counts, RoI sampling, ...):
# they change cost, not the architecture named by the spec, and are hashed with the recipe.
RUNTIME_KNOBS = (
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image", "box_batch_size_per_image", "box_detections_per_img", "box_score_thresh",
    "fpn_channels", "head_dim",
)


class BackboneWithFPN(nn.Module):
    """Backbone features -> FPN (plus a max-pooled extra level), or the last map alone (`fpn=False`).

    Returns an OrderedDict of maps, as torchvision's RPN and MultiScaleRoIAlign expect.
    """

    def __init__(self, body: nn.Module, fpn: bool = True, fpn_channels: int = 256):
        super().__init__()
        for attr in ("out_channels", "strides"):
            if not hasattr(body, attr):
                raise ValueError(f"detection backbone {type(body).__name__} lacks the `{attr}` attribute")
        self.body = body
        if fpn:
            self.fpn = FeaturePyramidNetwork(list(body.out_channels), fpn_channels, extra_blocks=LastLevelMaxPool())
            self.out_channels = fpn_channels
            self.strides = [*body.strides, body.strides[-1] * 2]  # the max-pooled "pool" level
            self.names = [str(i) for i in range(len(body.strides))] + ["pool"]
        else:
            self.fpn = None
            self.out_channels = body.out_channels[-1]
            self.strides = [body.strides[-1]]
            self.names = ["0"]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        if self.fpn is None:
            return OrderedDict([("0", feats[-1])])
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


class DetectorMixin:
    """What repro needs from a torchvision detector beyond its own forward.

    `forward` of torchvision detectors takes a list of images and, in eval mode, runs NMS whose
    output size depends on the data: it cannot run on the meta device, where repro counts params
    and multiply-adds. A plain 4-D tensor therefore runs the resize + backbone + FPN only (what
    the complexity of a detector's backbone means); lists go through the full detector.
    """

    def forward(self, images, targets=None):
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            batch, _ = self.transform(list(images))
            return list(self.backbone(batch.tensors).values())
        return super().forward(images, targets)


class ReproFasterRCNN(DetectorMixin, FasterRCNN):
    pass


class ReproMaskRCNN(DetectorMixin, MaskRCNN):
    pass


def _detector(kind: str, backbone: str, backbone_args: dict | None, fpn: bool, fpn_channels: int, head_dim: int,
              min_size: int, max_size: int, anchor_size: float, num_classes: int, backbones: dict[str, Callable],
              size_scale: float = 1.0, **knobs) -> nn.Module:
    if backbone not in backbones:
        raise ValueError(f"unknown backbone {backbone!r}; this paper defines: {', '.join(sorted(backbones))}")
    unknown = set(knobs) - set(RUNTIME_KNOBS) - {"fpn_channels", "head_dim"}
    if unknown:
        raise ValueError(f"unknown detector setting(s) {sorted(unknown)}; a preset may set: {', '.join(RUNTIME_KNOBS)}")
    body = backbones[backbone](**(backbone_args or {}))
    features = BackboneWithFPN(body, fpn=fpn, fpn_channels=fpn_channels)
    # A proxy shrinks every image by size_scale; objects shrink with it, so anchors do too.
    # One anchor size per level, `anchor_size` x its stride (torchvision/Detectron: 8 x stride).
    sizes = tuple((max(2.0, anchor_size * s * size_scale),) for s in features.strides)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    roi_names = [n for n in features.names if n != "pool"]  # RoIs are pooled from the backbone levels
    box_pool = MultiScaleRoIAlign(roi_names, output_size=7, sampling_ratio=2)
    common = dict(
        num_classes=None,  # given to the predictor, which must match head_dim
        min_size=max(16, round(min_size * size_scale)), max_size=max(16, round(max_size * size_scale)),
        rpn_anchor_generator=anchors, box_roi_pool=box_pool,
        box_head=TwoMLPHead(features.out_channels * 7 * 7, head_dim),
        box_predictor=FastRCNNPredictor(head_dim, num_classes + 1),  # + background
        **knobs,
    )
    if kind == "maskrcnn":
        mask_pool = MultiScaleRoIAlign(roi_names, output_size=14, sampling_ratio=2)
        mask_head = MaskRCNNHeads(features.out_channels, (256, 256, 256, 256), 1)
        mask_predictor = MaskRCNNPredictor(256, 256, num_classes + 1)
        return ReproMaskRCNN(features, mask_roi_pool=mask_pool, mask_head=mask_head, mask_predictor=mask_predictor, **common)
    return ReproFasterRCNN(features, **common)


def fasterrcnn(backbone: str, backbone_args: dict | None = None, fpn: bool = True, fpn_channels: int = 256,
               head_dim: int = 1024, min_size: int = 800, max_size: int = 1333, anchor_size: float = 8.0,
               num_classes: int = 80, *, backbones: dict[str, Callable], size_scale: float = 1.0, **knobs) -> nn.Module:
    """Faster R-CNN. `min_size`/`max_size`: shorter/longer image side after resizing (the paper's
    input size); `num_classes`: object categories (background is added); `size_scale` (from the
    preset's data) shrinks sizes and anchors together for proxies."""
    return _detector("fasterrcnn", backbone, backbone_args, fpn, fpn_channels, head_dim, min_size, max_size,
                     anchor_size, num_classes, backbones, size_scale, **knobs)


def maskrcnn(backbone: str, backbone_args: dict | None = None, fpn: bool = True, fpn_channels: int = 256,
             head_dim: int = 1024, min_size: int = 800, max_size: int = 1333, anchor_size: float = 8.0,
             num_classes: int = 80, *, backbones: dict[str, Callable], size_scale: float = 1.0, **knobs) -> nn.Module:
    """Mask R-CNN (Faster R-CNN + a 14x14 RoIAlign mask head); arguments as `fasterrcnn`."""
    return _detector("maskrcnn", backbone, backbone_args, fpn, fpn_channels, head_dim, min_size, max_size,
                     anchor_size, num_classes, backbones, size_scale, **knobs)


DETECTORS = {"fasterrcnn": fasterrcnn, "maskrcnn": maskrcnn}


def bind_backbones(kind: str, backbones: dict[str, Callable]) -> Callable[..., nn.Module]:
    """The detector builder for one paper: BACKBONES bound, and a signature that shows only the
    arguments a spec may set (so `repro.spec.cells.resolve_args` fills and checks them)."""
    fn = DETECTORS[kind]
    build = functools.partial(fn, backbones=backbones)
    sig = inspect.signature(fn)
    shown = [p for p in sig.parameters.values() if p.kind is not p.KEYWORD_ONLY and p.kind is not p.VAR_KEYWORD]
    build.__signature__ = sig.replace(parameters=shown)
    build.__name__ = kind
    return build


def load_classification_weights(body: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str = "model.") -> dict:
    """Load a classification checkpoint's tensors into a detection backbone, by name.

    `state_dict` is a Lightning checkpoint's (its model under `prefix`). The classifier has no
    counterpart in the backbone and is left out; backbone-only parts (e.g. output norms) keep
    their initialisation. Raises ValueError when nothing or something of the wrong shape matches,
    i.e. when the checkpoint is of another architecture.
    """
    weights = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    wanted = body.state_dict()
    shared = {k: v for k, v in weights.items() if k in wanted}
    mismatched = [k for k, v in shared.items() if v.shape != wanted[k].shape]
    if not shared or mismatched:
        raise ValueError(f"{len(shared)} tensors share a name with the backbone; shape mismatch in {mismatched[:3]}")
    body.load_state_dict(shared, strict=False)
    return {"loaded": len(shared), "untouched": sorted(set(wanted) - set(shared))}
