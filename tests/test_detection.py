"""Detection: backbones, detectors, init_from, and Table 7 end to end on synthetic COCO."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from repro.errors import RunFailed, SpecError
from repro.nn.detection import bind_backbones
from repro.spec import expand_cells, load_table
from repro.spec.cells import resolve_init_from
from repro.store import Store

torch.set_num_threads(2)


def _targets(n, masks=False, size=64):
    out = []
    for i in range(n):
        t = {"boxes": torch.tensor([[8.0, 10.0, 30.0 + i, 40.0]]), "labels": torch.tensor([1 + i % 3])}
        if masks:
            m = torch.zeros(1, size, size, dtype=torch.uint8)
            m[0, 10:40, 8:30] = 1
            t["masks"] = m
        out.append(t)
    return out


# ------------------------------------------------------------------ backbones
def test_shufflenet_backbone_stage_features_and_strides():
    from papers.shufflenet.models import BACKBONES

    body = BACKBONES["shufflenet_v1"](groups=3, scale=1.0).eval()
    feats = body(torch.zeros(2, 3, 64, 64))
    assert body.strides == [8, 16, 32] and body.out_channels == [240, 480, 960]  # Table 1, g=3
    assert [tuple(f.shape) for f in feats] == [(2, 240, 8, 8), (2, 480, 4, 4), (2, 960, 2, 2)]


def test_fasternet_backbone_stage_features_and_strides():
    from papers.fasternet.models import BACKBONES

    body = BACKBONES["fasternet"](variant="t0").eval()
    feats = body(torch.zeros(1, 3, 64, 64))
    assert body.strides == [4, 8, 16, 32] and body.out_channels == [40, 80, 160, 320]
    assert [tuple(f.shape) for f in feats] == [(1, 40, 16, 16), (1, 80, 8, 8), (1, 160, 4, 4), (1, 320, 2, 2)]


def test_backbone_parameter_names_match_the_classifier():
    """What makes init_from work: every backbone tensor but detection-only ones is a classifier tensor."""
    from papers.fasternet.models import BACKBONES as FN
    from papers.fasternet.models import fasternet
    from papers.shufflenet.models import BACKBONES as SN
    from papers.shufflenet.models import shufflenet_v1

    assert set(SN["shufflenet_v1"]().state_dict()) == {k for k in shufflenet_v1().state_dict() if not k.startswith("fc.")}
    extra = set(FN["fasternet"](variant="t0").state_dict()) - set(fasternet("t0").state_dict())
    assert extra and all(k.startswith("out_norms.") for k in extra)


# ------------------------------------------------------------------ detectors
KNOBS = {"rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50,
         "rpn_post_nms_top_n_test": 20, "box_batch_size_per_image": 16, "fpn_channels": 32, "head_dim": 64}


@pytest.mark.parametrize("paper,kind,args", [
    ("shufflenet", "fasterrcnn", {"backbone": "shufflenet_v1", "backbone_args": {"groups": 3, "scale": 0.5}}),
    ("fasternet", "maskrcnn", {"backbone": "fasternet", "backbone_args": {"variant": "t0"}}),
])
def test_detector_losses_backward_and_predictions(paper, kind, args):
    import importlib

    backbones = importlib.import_module(f"papers.{paper}.models").BACKBONES
    model = bind_backbones(kind, backbones)(**args, num_classes=3, min_size=600, max_size=1000, size_scale=0.1, **KNOBS)
    assert model.transform.min_size == (60,) and model.transform.max_size == 100  # sizes x size_scale
    masks = kind == "maskrcnn"
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    losses = model.train()(images, _targets(2, masks))
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} | ({"loss_mask"} if masks else set())
    assert set(losses) == expected
    loss = sum(losses.values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.backbone.body.parameters() if p.requires_grad)
    with torch.no_grad():
        out = model.eval()(images)
    assert len(out) == 2 and {"boxes", "labels", "scores"} <= set(out[0]) and ("masks" in out[0]) == masks


def test_detector_builds_on_meta_and_counts_backbone_complexity():
    from papers.shufflenet.models import BACKBONES
    from repro.complexity import count_complexity

    with torch.device("meta"):
        model = bind_backbones("fasterrcnn", BACKBONES)(backbone="shufflenet_v1", backbone_args={"groups": 3})
    c = count_complexity(model, 224)
    assert c.params > 1e6 and c.macs > 1e8


def test_unknown_backbone_is_a_config_error():
    from repro.errors import ConfigError
    from repro.spec.cells import build_model

    table = load_table("papers/shufflenet/table7")
    cell = dataclasses.replace(expand_cells(table, "test")[0], args={"backbone": "resnet50"})
    with pytest.raises(ConfigError, match="unknown backbone 'resnet50'.*shufflenet_v1"):
        build_model(table, cell, meta=True)


# ------------------------------------------------------------------ init_from
def _table7_cell(row="shufflenet_1x_g3", init_from="shufflenet/table2:1x|g=3"):
    table = load_table("papers/shufflenet/table7")
    cell = next(c for c in expand_cells(table, "test") if c.row == row and c.column == "300")
    return table, dataclasses.replace(cell, init_from=init_from, init_from_cell=resolve_init_from(table, init_from, "test"))


def test_init_from_resolves_under_the_same_preset_family_and_enters_the_identity():
    table, cell = _table7_cell()
    source = next(c for c in expand_cells(load_table("papers/shufflenet/table2"), "test") if c.row == "1x" and c.column == "g=3")
    assert cell.init_from_cell == source.id and source.preset_name == "test"
    in_spec = next(c for c in expand_cells(table, "test") if c.row == cell.row and c.column == cell.column)
    assert in_spec.init_from == "shufflenet/table2:1x|g=3" and in_spec.id == cell.id  # Sec. 4.4 fine-tunes
    plain = dataclasses.replace(cell, init_from=None, init_from_cell=None)
    assert plain.identity()["init_from"] is None and cell.id != plain.id
    with pytest.raises(SpecError, match="no cell row '3x'"):
        resolve_init_from(table, "shufflenet/table2:3x|g=3", "test")
    with pytest.raises(SpecError, match="expected <paper>/<table>:<row>|<column>"):
        resolve_init_from(table, "table2:1x", "test")


def test_init_from_loads_the_classification_backbone(tmp_path):
    from papers.shufflenet.models import shufflenet_v1
    from repro.train.detection import build_detector, init_backbone

    table, cell = _table7_cell()
    store = Store(tmp_path / "store")
    model = build_detector(table, cell)
    with pytest.raises(RunFailed, match=r"not done.*repro run papers/shufflenet/table2 --preset test --only '1x\|g=3'"):
        init_backbone(model, table, cell, store)

    classifier = shufflenet_v1(groups=3, scale=1.0, num_classes=4)
    ckpt = store.checkpoint_path(cell.init_from_cell)
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in classifier.state_dict().items()}, "global_step": 6}, ckpt)
    store.write_result(cell.init_from_cell, {"cell_id": cell.init_from_cell, "steps": 6, "metrics": {}})
    info = init_backbone(model, table, cell, store)
    assert info["init_from_cell"] == cell.init_from_cell and info["init_untouched_tensors"] == []
    assert info["init_loaded_tensors"] == len(model.backbone.body.state_dict())
    torch.testing.assert_close(model.backbone.body.stages[2][0].expand[0].weight, classifier.stages[2][0].expand[0].weight)

    # A checkpoint of another width does not fit: a clear error, not a silent partial load.
    _, wide = _table7_cell(row="shufflenet_2x_g3")
    with pytest.raises(RunFailed, match="does not fit this backbone"):
        init_backbone(build_detector(table, wide), table, dataclasses.replace(wide, init_from_cell=cell.init_from_cell), store)


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_table7_test_preset_through_the_cli(cli, tmp_path):
    store = tmp_path / "store"
    # The detector fine-tunes the ImageNet cell's backbone (Sec. 4.4): that run comes first.
    first = cli("run", "papers/shufflenet/table2", "--preset", "test", "--only", "1x|g=3", "--store", str(store),
                "--no-report", "--no-progress")
    assert first.returncode == 0, first.stderr
    out = cli("run", "papers/shufflenet/table7", "--preset", "test", "--only", "shufflenet_1x_g3|300",
              "--store", str(store), "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    (r,) = [r for r in map(json.loads, map(Path.read_text, store.glob("*/result.json"))) if r["table"] == "shufflenet/table7"]
    assert r["init_from"] == "shufflenet/table2:1x|g=3" and r["init_loaded_tensors"] > 0
    assert r["preset"] == "test_coco" and r["proxy"] and r["model"] == "fasterrcnn" and r["steps"] == 3
    assert 0.0 <= r["metrics"]["box_ap"] <= 100.0 and "box_ap50" in r["metrics"] and "mask_ap" not in r["metrics"]
    assert r["detector"] == {"min_size": [30], "max_size": 50}  # 300 / 500 x size_scale 0.1
    assert "19.8" not in out.stdout and "14.5" in out.stdout  # the printed table has the paper's 300x value


@pytest.mark.slow
def test_maskrcnn_cell_without_its_imagenet_run_says_which_run_to_do_first(cli, tmp_path):
    out = cli("run", "papers/fasternet/table4_box", "--preset", "test", "--only", "s|ap_box",
              "--store", str(tmp_path / "store"), "--no-report", "--no-progress")
    assert out.returncode != 0
    assert "repro run papers/fasternet/table3 --preset test --only 's|top1_acc'" in out.stderr
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------ mmdet (optional extra)
def test_mmdet_config_builds_the_fasternet_mask_rcnn():
    pytest.importorskip("mmdet", reason="mmdet is an optional extra (pip install -e '.[mmdet]'); see docs/detection.md")
    pytest.importorskip("mmcv.ops", reason="mmdet needs mmcv built with its compiled ops (mmcv < 2.2 has no PyPI wheels); see docs/detection.md")
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import repro.nn.mmdet_backbones as reg
    from tests.conftest import REPO

    register_all_modules()
    assert reg.REGISTERED
    cfg = Config.fromfile(str(REPO / "configs/mmdet/mask-rcnn_fasternet-s_fpn_1x_coco.py"))
    backbone = MODELS.build(cfg.model.backbone)
    feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == cfg.model.neck.in_channels
    detector = MODELS.build(cfg.model)
    assert detector.backbone.strides == [4, 8, 16, 32]


@pytest.mark.slow
def test_init_from_loads_a_real_classification_checkpoint(cli, tmp_path):
    """The Lightning checkpoint a table2 run writes initialises Table 7's 1x backbone."""
    from repro.train.detection import build_detector, init_backbone

    store = tmp_path / "store"
    out = cli("run", "papers/shufflenet/table2", "--preset", "test", "--only", "1x|g=3", "--store", str(store),
              "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    table, cell = _table7_cell()
    model = build_detector(table, cell)
    info = init_backbone(model, table, cell, Store(store))
    assert info["init_loaded_tensors"] == len(model.backbone.body.state_dict())
    saved = torch.load(Store(store).checkpoint_path(cell.init_from_cell), weights_only=True)["state_dict"]
    torch.testing.assert_close(model.backbone.body.stem[0][0].weight, saved["model.stem.0.0.weight"])
