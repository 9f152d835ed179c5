"""Each loader on tiny files written here in the real on-disk format, plus its error cases."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision.transforms import v2

from repro.data import cifar, coco, gtsrb, imagenet, svhn, synthetic_coco
from repro.data.coco_eval import evaluate_coco, to_coco_results
from repro.data.transforms import classification_transforms
from repro.errors import DataError


def _image(path, size=(40, 30), colour=(200, 30, 30), **save_kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **save_kwargs)
    return path


# ----------------------------------------------------------------------------- transforms

def _types(compose):
    return [type(t) for t in compose.transforms]


def test_transform_recipes():
    from timm.data.transforms import RandomResizedCropAndInterpolation
    from torchvision import transforms as tv

    from repro.spec.schema import TrainRecipe

    train = classification_transforms({"name": "imagenet", "image_size": 224}, train=True)
    assert isinstance(train.transforms[0], RandomResizedCropAndInterpolation)
    assert isinstance(train.transforms[1], tv.RandomHorizontalFlip)
    val = classification_transforms({"name": "imagenet", "image_size": 224}, train=False)
    assert val.transforms[0].size == 256 and list(val.transforms[1].size) == [224, 224]  # crop_pct 0.875
    # The recipe's augmentation reaches timm's transform: RandAugment, bicubic crops, the scale range.
    recipe = TrainRecipe(batch_size=8, max_steps=1, lr=0.1, aa="rand-m7-mstd0.5-inc1", scale=(0.35, 1.0),
                         train_interpolation="bicubic")
    strong = classification_transforms({"name": "imagenet", "image_size": 192}, train=True, recipe=recipe)
    assert strong.transforms[0].scale == (0.35, 1.0) and strong.transforms[0].size == (192, 192)
    assert any(type(t).__name__ == "RandAugment" for t in strong.transforms)
    bicubic_eval = classification_transforms({"name": "imagenet", "image_size": 224, "crop_pct": 0.9,
                                              "interpolation": "bicubic"}, train=False)
    assert bicubic_eval.transforms[0].size == 248  # floor(224 / 0.9), timm's rule
    cifar_train = classification_transforms({"name": "cifar10", "image_size": 32}, train=True)
    assert v2.RandomCrop in _types(cifar_train) and v2.RandomHorizontalFlip in _types(cifar_train)
    # digits and traffic signs must not be mirrored unless the recipe asks for it
    assert v2.RandomHorizontalFlip not in _types(classification_transforms({"name": "svhn"}, True))
    flip = TrainRecipe(batch_size=8, max_steps=1, lr=0.1, hflip=0.5)
    assert v2.RandomHorizontalFlip in _types(classification_transforms({"name": "svhn"}, True, recipe=flip))
    with pytest.raises(DataError, match="augment"):
        classification_transforms({"augment": "autoaugment"}, True)


# ----------------------------------------------------------------------------- imagenet

@pytest.fixture
def imagenet_root(tmp_path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for cls, colour in (("n01440764", (255, 0, 0)), ("n01443537", (0, 0, 255))):
            for i in range(2):
                _image(root / split / cls / f"{cls}_{i}.JPEG", (48, 40), colour)
    return root


def test_imagenet_loads(imagenet_root):
    cfg = {"name": "imagenet", "image_size": 32, "num_classes": 2}
    train = imagenet.build(cfg, "train", imagenet_root)
    assert len(train) == 4 and train.classes == ["n01440764", "n01443537"]
    val = imagenet.build(cfg, "val", imagenet_root)
    image, label = val[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 1
    assert image[2].mean() > image[0].mean()  # blue class really is blue after normalising


def _remove_root(root):
    shutil.rmtree(root)


def _remove_val(root):
    shutil.rmtree(root / "val")


def _flatten_val(root):  # the original val tarball: 50k loose JPEGs
    for path in list((root / "val").rglob("*.JPEG")):
        path.rename(root / "val" / path.name)
    for folder in (root / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()


def _empty_class(root):
    for path in (root / "val" / "n01443537").iterdir():
        path.unlink()


def _rename_class(root):
    (root / "val" / "n01443537").rename(root / "val" / "n09999999")


@pytest.mark.parametrize("breakage, message", [
    (_remove_root, r"imagenet folder .* does not exist; expected root/train/<class>/\*.JPEG"),
    (_remove_val, r"split folder .*val is missing"),
    (_flatten_val, r"no class folders in .*val \(the images lie loose.*valprep"),
    (_empty_class, r"1 class folder\(s\) in .*val contain no images \(first: n01443537\)"),
    (_rename_class, r"class folders of .*val \(2\) differ from .*train \(2\), e.g. 'n01443537'"),
])
def test_imagenet_layout_errors(imagenet_root, breakage, message):
    breakage(imagenet_root)
    with pytest.raises(DataError, match=message) as err:
        imagenet.build({"name": "imagenet", "image_size": 32}, "val", imagenet_root)
    assert "\n" not in str(err.value)  # the CLI prints it on one line


def test_imagenet_num_classes_mismatch(imagenet_root):
    with pytest.raises(DataError, match="2 class folders but data.num_classes is 1000"):
        imagenet.build({"name": "imagenet", "num_classes": 1000}, "train", imagenet_root)


def test_imagenet_corrupt_jpeg_is_named(imagenet_root):
    good = (imagenet_root / "train" / "n01440764" / "n01440764_0.JPEG")
    _image(good, (64, 64), quality=95)
    good.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated download
    (imagenet_root / "train" / "n01440764" / "n01440764_1.JPEG").write_bytes(b"not a jpeg")
    ds = imagenet.build({"name": "imagenet", "image_size": 32}, "train", imagenet_root)
    for index, name in ((0, "n01440764_0.JPEG"), (1, "n01440764_1.JPEG")):
        with pytest.raises(DataError, match=name):
            ds[index]
    assert ds[2][0].shape == (3, 32, 32)  # the intact files still load


# ----------------------------------------------------------------------------- cifar

def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0] = 0
    data[0, :1024] = 255  # first image pure red: R plane comes first in the row
    batch = {b"batch_label": b"x", b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": data, b"filenames": [b"f%d.png" % i for i in range(n)]}
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.fixture
def cifar_root(tmp_path):
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for i in range(1, 6):
        _cifar_batch(batches / f"data_batch_{i}", 2, i)
    _cifar_batch(batches / "test_batch", 10, 0)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return tmp_path / "cifar10"


def test_cifar_loads(cifar_root):
    cfg = {"name": "cifar10", "image_size": 32}
    train = cifar.build(cfg, "train", cifar_root)
    assert len(train) == 10 and train.classes[0] == "airplane"
    assert train.images.shape == (10, 32, 32, 3)
    assert (train.images[0][..., 0] == 255).all() and (train.images[0][..., 1:] == 0).all()
    val = cifar.build(cfg, "val", cifar_root / "cifar-10-batches-py")  # root = batches folder
    image, label = val[0]
    assert len(val) == 10 and image.shape == (3, 32, 32) and isinstance(label, int)
    assert image[0].min() > 2 and image[1].max() < -1  # red survives ToImage + Normalize


def test_cifar_errors(cifar_root, tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        cifar.build({}, "train", tmp_path)  # tmp_path holds no batches
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="extract it"):
        cifar.build({}, "train", tmp_path)
    batches = cifar_root / "cifar-10-batches-py"
    third = batches / "data_batch_3"
    third.write_bytes(third.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3 is corrupt or truncated"):
        cifar.build({}, "train", cifar_root)
    (batches / "test_batch").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="test_batch is corrupt"):
        cifar.build({}, "val", cifar_root)
    (batches / "data_batch_5").unlink()
    _cifar_batch(third, 2, 3)
    with pytest.raises(DataError, match="data_batch_5 is missing"):
        cifar.build({}, "train", cifar_root)


# ----------------------------------------------------------------------------- svhn

def _svhn_mat(path, labels, keys=("X", "y")):
    from scipy.io import savemat
    x = np.zeros((32, 32, 3, len(labels)), dtype=np.uint8)
    x[0, 1, :, 0] = (255, 0, 0)  # a red pixel at row 0, column 1 of image 0
    arrays = {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(-1, 1)}
    savemat(str(path), {k: arrays[k] for k in keys})


def test_svhn_loads(tmp_path):
    _svhn_mat(tmp_path / "train_32x32.mat", [1, 10, 5, 10])
    _svhn_mat(tmp_path / "test_32x32.mat", [3, 4])
    train = svhn.build({"name": "svhn", "image_size": 32}, "train", tmp_path)
    assert train.targets == [1, 0, 5, 0]  # label 10 is the digit 0
    assert tuple(train.images[0, 0, 1]) == (255, 0, 0) and train.images.shape == (4, 32, 32, 3)
    image, label = svhn.build({"name": "svhn", "image_size": 32}, "val", tmp_path)[1]
    assert image.shape == (3, 32, 32) and label == 4


def test_svhn_errors(tmp_path):
    with pytest.raises(DataError, match="train_32x32.mat is missing"):
        svhn.build({}, "train", tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 10)
    with pytest.raises(DataError, match="train_32x32.mat is corrupt"):
        svhn.build({}, "train", tmp_path)
    _svhn_mat(tmp_path / "test_32x32.mat", [1, 2], keys=("X",))
    with pytest.raises(DataError, match="lacks the X and/or y"):
        svhn.build({}, "val", tmp_path)


# ----------------------------------------------------------------------------- gtsrb

HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]


def _sign(path, size=(40, 30)):
    """Blue margin around a red ROI at (5, 5)..(size-6) inclusive, like a sign with its border."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (5, 5, size[0] - 5, size[1] - 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)  # .ppm suffix -> PIL writes a binary PPM
    return [path.name, size[0], size[1], 5, 5, size[0] - 6, size[1] - 6]


def _csv(path, rows, header=HEADER):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def gtsrb_root(tmp_path):
    root = tmp_path / "gtsrb"
    for cls in (0, 2):
        folder = root / "Final_Training" / "Images" / f"{cls:05d}"
        rows = [_sign(folder / f"00000_{i:05d}.ppm", (30 + 10 * i, 32)) + [cls] for i in range(2)]
        _csv(folder / f"GT-{cls:05d}.csv", rows)
    test = root / "Final_Test" / "Images"
    _csv(root / "GT-final_test.csv", [_sign(test / f"{i:05d}.ppm") + [i * 7] for i in range(3)])
    return root


def test_gtsrb_loads(gtsrb_root):
    cfg = {"name": "gtsrb", "image_size": 32}
    train = gtsrb.build(cfg, "train", gtsrb_root)
    assert len(train) == 4 and train.targets == [0, 0, 2, 2]
    val = gtsrb.build(cfg, "val", gtsrb_root)
    image, label = val[2]
    assert image.shape == (3, 32, 32) and label == 14
    assert image[2, 0, 0] > image[0, 0, 0]  # whole image: the corner is the blue margin
    cropped, _ = gtsrb.build({**cfg, "crop_roi": True}, "val", gtsrb_root)[2]
    assert (cropped[0] > cropped[2]).all()  # ROI only: red everywhere


def test_gtsrb_errors(gtsrb_root):
    cls_dir = gtsrb_root / "Final_Training" / "Images" / "00002"
    (cls_dir / "00000_00001.ppm").unlink()
    with pytest.raises(DataError, match=r"1 of 4 GTSRB images .* missing .*00000_00001\.ppm"):
        gtsrb.build({}, "train", gtsrb_root)
    (cls_dir / "GT-00002.csv").unlink()
    with pytest.raises(DataError, match="GT-00002.csv is missing"):
        gtsrb.build({}, "train", gtsrb_root)
    # the csv that ships inside Final_Test has no labels
    (gtsrb_root / "GT-final_test.csv").rename(gtsrb_root / "Final_Test" / "Images" / "GT-final_test.test.csv")
    with pytest.raises(DataError, match="GT-final_test.csv are missing"):
        gtsrb.build({}, "val", gtsrb_root)
    _csv(gtsrb_root / "GT-final_test.csv", [["00000.ppm", 40, 30, 5, 5, 34, 24]], header=HEADER[:-1])
    with pytest.raises(DataError, match="lacks column.*ClassId"):
        gtsrb.build({}, "val", gtsrb_root)
    with pytest.raises(DataError, match="Final_Training/Images"):
        gtsrb.build({}, "train", gtsrb_root / "Final_Test")


# ----------------------------------------------------------------------------- coco

def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _write_coco(root, split="val"):
    """3 images, categories 3 and 7 (non-contiguous on purpose), every segmentation encoding."""
    images = [{"id": 1, "file_name": "1.jpg", "width": 40, "height": 30},
              {"id": 2, "file_name": "2.jpg", "width": 50, "height": 60},
              {"id": 3, "file_name": "3.jpg", "width": 20, "height": 20}]
    for im in images:
        _image(root / f"{split}2017" / im["file_name"], (im["width"], im["height"]))
    blob = np.zeros((30, 40), np.uint8)
    blob[10:20, 20:30] = 1
    anns = [
        # polygon rectangle x 2..12, y 4..14
        {"bbox": [2, 4, 10, 10], "category_id": 3, "segmentation": [[2, 4, 12, 4, 12, 14, 2, 14]], "image_id": 1},
        {"bbox": [20, 10, 10, 10], "category_id": 7, "segmentation": _rle(blob), "image_id": 1},  # compressed RLE
        {"bbox": [0, 0, 5, 0], "category_id": 3, "segmentation": [], "image_id": 1},  # zero height: skipped
        {"bbox": [1, 1, 4, 4], "category_id": 3, "segmentation": {"size": [60, 50], "counts": [60, 4, 56, 4, 2876]},
         "image_id": 2},  # uncompressed RLE, column-major runs: rows 0..3 of columns 1 and 2
        {"bbox": [5, 5, 10, 10], "category_id": 7, "segmentation": [[5, 5, 15, 5, 15, 15]], "image_id": 2,
         "iscrowd": 1},  # crowd: not a target, not counted as skipped
        {"bbox": [3, 3, -1, 4], "category_id": 7, "segmentation": [], "image_id": 3},  # negative width: skipped
        # a 2-point "polygon" (pycocotools would take it for a box): the box becomes the mask
        {"bbox": [30, 40, 5, 5], "category_id": 7, "segmentation": [[30, 40, 35, 45]], "image_id": 2},
    ]
    for i, ann in enumerate(anns, 1):
        ann.update(id=i, area=float(ann["bbox"][2] * ann["bbox"][3]), iscrowd=ann.get("iscrowd", 0))
    cats = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_coco_loads(tmp_path):
    _write_coco(tmp_path, "val")
    val = coco.build({"name": "coco"}, "val", tmp_path)
    assert len(val) == 3 and val.skipped_annotations == 2 and val.label_to_cat_id == {1: 3, 2: 7}
    image, target = val[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["image_id"] == 1 and target["labels"].tolist() == [1, 2]
    assert target["boxes"].tolist() == [[2, 4, 12, 14], [20, 10, 30, 20]]
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (2, 30, 40)
    assert masks[1].sum() == 100 and masks[1, 10:20, 20:30].all()
    assert masks[0].sum() == 100 and masks[0, 4:14, 2:12].all()  # polygon corners are pixel boundaries
    _, target2 = val[1]
    assert target2["labels"].tolist() == [1, 2]  # the crowd annotation is left out
    assert target2["masks"][0].nonzero().tolist() == [[r, c] for r in range(4) for c in (1, 2)]
    assert target2["masks"][1].sum() == 25 and target2["masks"][1, 40:45, 30:35].all()
    _, empty = val[2]  # val keeps images without usable annotations
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 20, 20)


def test_coco_train_drops_empty_images_and_flips_consistently(tmp_path):
    _write_coco(tmp_path, "train")
    train = coco.build({"name": "coco"}, "train", tmp_path)
    assert len(train) == 2 and train.ids == [1, 2]
    torch.manual_seed(0)
    xs = set()
    for _ in range(8):
        _, target = train[0]
        x1, _, x2, _ = target["boxes"][1].tolist()
        cols = target["masks"][1].any(0).nonzero().flatten()
        assert (cols.min().item(), cols.max().item() + 1) == (x1, x2)  # mask flipped with its box
        xs.add(x1)
    assert xs == {20.0, 10.0}  # both orientations seen (40 - 30 = 10)


def test_coco_errors(tmp_path):
    with pytest.raises(DataError, match="instances_val2017.json is missing"):
        coco.build({}, "val", tmp_path)
    _write_coco(tmp_path, "val")
    (tmp_path / "val2017" / "2.jpg").unlink()
    (tmp_path / "val2017" / "3.jpg").unlink()
    with pytest.raises(DataError, match=r"2 of 3 images listed in .* are missing from .*val2017 \(first: 2.jpg\)"):
        coco.build({}, "val", tmp_path)
    (tmp_path / "val2017" / "1.jpg").unlink()
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(DataError, match="lacks categories"):
        coco.build({}, "val", tmp_path)
    (tmp_path / "annotations" / "instances_val2017.json").write_text(
        '{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(DataError, match="lists no images"):
        coco.build({}, "val", tmp_path)
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(DataError, match="not valid COCO json"):
        coco.build({}, "val", tmp_path)
    _write_coco(tmp_path, "val")
    (tmp_path / "val2017" / "1.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(DataError, match="cannot decode image .*1.jpg"):
        coco.build({}, "val", tmp_path)[0]


# ----------------------------------------------------------------------------- coco eval

def _square(x, y, side=20):
    return [[x, y, x + side, y, x + side, y + side, x, y + side]]


@pytest.fixture
def eval_gt():
    """One 100x100 image, two 20x20 objects of one category (area 400: 'small' in COCO terms)."""
    from pycocotools.coco import COCO
    anns = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [x, y, 20, 20], "segmentation": _square(x, y),
             "area": 400.0, "iscrowd": 0} for i, (x, y) in ((1, (10, 10)), (2, (50, 50)))]
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 100, "height": 100}], "annotations": anns,
                  "categories": [{"id": 1, "name": "thing"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _det(x, y, score):
    mask = np.zeros((100, 100), np.uint8)
    mask[y:y + 20, x:x + 20] = 1
    return {"image_id": 1, "category_id": 1, "bbox": [x, y, 20, 20], "score": score, "segmentation": _rle(mask)}


def test_coco_eval_hand_checked(eval_gt):
    perfect = evaluate_coco(eval_gt, [_det(10, 10, 0.9), _det(50, 50, 0.8)])
    for key in ("box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "box_ap_s"):
        assert perfect[key] == pytest.approx(100.0), key
    assert math.isnan(perfect["box_ap_m"])  # no medium ground truth: COCOeval's -1 becomes NaN

    # Second box shifted right by 15 px: overlap 5x20=100, IoU = 100 / (400+400-100) = 1/7 < 0.5,
    # so at every IoU threshold it is a false positive and its object is missed.
    # Ranked by score: TP (0.9) then FP (0.8): precision 1 up to recall 0.5, recall never > 0.5.
    # COCO samples precision at 101 recalls 0, .01, ..., 1: 51 of them (<= .5) get 1, the rest 0.
    # AP = 51/101 at each of the 10 IoU thresholds -> 50.495 %. Masks shift with the boxes: same.
    shifted = evaluate_coco(eval_gt, [_det(10, 10, 0.9), _det(65, 50, 0.8)])
    for key in ("box_ap", "box_ap50", "box_ap75", "mask_ap"):
        assert shifted[key] == pytest.approx(100 * 51 / 101), key
    # Scores swapped: FP first, so the best precision reachable at recall 0.5 is 1/2.
    # AP = 51 * 0.5 / 101 -> 25.248 %.
    swapped = evaluate_coco(eval_gt, [_det(10, 10, 0.8), _det(65, 50, 0.9)])
    assert swapped["box_ap"] == pytest.approx(100 * 25.5 / 101)
    assert swapped["mask_ap"] == pytest.approx(100 * 25.5 / 101)

    assert evaluate_coco(eval_gt, [])["box_ap"] == 0.0
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_coco(eval_gt, [{k: v for k, v in _det(10, 10, 1.0).items() if k != "segmentation"}])
    box_only = evaluate_coco(eval_gt, [_det(10, 10, 0.9)], iou_types=("bbox",))
    assert "mask_ap" not in box_only and box_only["box_ap"] == pytest.approx(100 * 51 / 101)


# ----------------------------------------------------------------------------- synthetic coco

def _targets_as_detections(dataset):
    """The dataset's own targets, in model-output form, run through to_coco_results."""
    outputs, ids = [], []
    for i in range(len(dataset)):
        _, t = dataset[i]
        outputs.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                        "masks": t["masks"][:, None].float()})
        ids.append(t["image_id"])
    return to_coco_results(outputs, ids, dataset.label_to_cat_id)


def test_synthetic_coco(tmp_path, monkeypatch):
    cfg = {"name": "synthetic_coco", "image_size": 64, "num_train": 12, "num_val": 6, "path": str(tmp_path / "a")}
    train = synthetic_coco.build(cfg, "train", None)
    val = synthetic_coco.build(cfg, "val", None)
    assert len(train) == 12 and len(val) == 6 and val.num_classes == 3 and train.skipped_annotations == 0
    image, target = val[0]
    assert image.shape == (3, 64, 64) and len(target["labels"]) >= 1
    assert set(val.coco.getCatIds()) == {1, 2, 3}
    # The dataset's targets reproduce the json exactly: boxes and masks evaluate to AP 100.
    scores = evaluate_coco(val.coco, _targets_as_detections(val))
    assert scores["box_ap"] > 99 and scores["mask_ap"] > 99

    # Deterministic: a second folder gets identical annotations and pixels.
    synthetic_coco.build({**cfg, "path": str(tmp_path / "b")}, "val", None)
    for name in ("annotations/instances_val2017.json", "annotations/instances_train2017.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert (tmp_path / "a/val2017/000003.jpg").read_bytes() == (tmp_path / "b/val2017/000003.jpg").read_bytes()

    # Cached: no regeneration for the same keys; regenerated when a generation key changes.
    stamp = (tmp_path / "a/val2017/000000.jpg").stat().st_mtime_ns
    synthetic_coco.build({**cfg, "batch_size": 4}, "val", None)
    assert (tmp_path / "a/val2017/000000.jpg").stat().st_mtime_ns == stamp
    assert len(synthetic_coco.build({**cfg, "num_val": 3}, "val", None)) == 3

    # Never writes over a folder it did not make.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("x")
    with pytest.raises(DataError, match="not written by synthetic_coco"):
        synthetic_coco.build({**cfg, "path": str(tmp_path / "c")}, "val", None)

    # Without a path: the cache folder, keyed by the generation keys.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    synthetic_coco.build({"name": "synthetic_coco", "num_train": 2, "num_val": 2}, "val", None)
    (folder,) = (tmp_path / "cache" / "repro" / "synthetic_coco").iterdir()
    assert (folder / "annotations" / "instances_train2017.json").is_file()
