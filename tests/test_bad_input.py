"""The bad-input catalogue: each case is one line on stderr naming the problem, a non-zero exit,
no traceback, and the store left as it was."""

from __future__ import annotations

import os
import pickle
import textwrap
from pathlib import Path

import pytest
import torch

from repro.cli import main
from tests.conftest import REPO, run_cli

TOY_MODELS = "from papers.shufflenet.models import MODELS  # noqa: F401\n"
TOY_PUBLISHED = """
paper: Toy
arxiv: "0000.00000"
version: v1
tables:
  t:
    caption: toy
    source: "toy, Table 1"
    columns: {a: {label: A, unit: "%"}, b: {label: B, unit: "%"}}
    rows: {r1: {label: R1, values: {a: 1.0, b: 2.0}}, r2: {label: R2, values: {a: 3.0, b: 4.0}}}
"""
GOOD_SPEC = """
table: t
title: toy
metric: {name: top1_err, unit: "%", better: lower}
model: shufflenet_v1
rows: [{id: r1, args: {scale: 0.25}}, {id: r2, args: {scale: 0.5}}]
columns: [{id: a, args: {groups: 1}}, {id: b, args: {groups: 2}}]
"""


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra_papers")
    paper = root / "toypaper"
    paper.mkdir()
    (paper / "__init__.py").write_text("")
    (paper / "models.py").write_text(TOY_MODELS)
    (paper / "published.yaml").write_text(TOY_PUBLISHED)
    (paper / "presets.yaml").write_text((REPO / "papers/shufflenet/presets.yaml").read_text())
    (paper / "good.yaml").write_text(GOOD_SPEC)
    return root


def toy_table(toy_root: Path, name: str, text: str, published: str | None = None) -> str:
    (toy_root / "toypaper" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return f"papers/toypaper/{name}"


def check_one_line_error(capsys, argv, *needles, store: Path | None = None):
    files = lambda: sorted(str(p) for p in store.rglob("*") if p.is_file()) if store.exists() else []  # noqa: E731
    before = files() if store is not None else None
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1, err
    assert err[0].startswith("repro") and "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0], err[0]
    if store is not None:
        assert files() == before, "the store must be left as it was"
    return err[0]


def expect_exit(capsys, argv, *needles):
    """argparse-level errors exit via SystemExit."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code != 0 and len(err) == 1 and "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0], err[0]


RUN = ["run", "--no-progress", "--no-report"]


def check_bad_set(capsys, store: Path, override: str, needle: str, table: str = "papers/shufflenet/table2"):
    """`--set override` on the test preset is one line containing `needle`, the store untouched."""
    check_one_line_error(capsys, [*RUN, table, "--preset", "test", "--set", override, "--store", str(store)],
                         needle, store=store)


@pytest.mark.parametrize("table,needle", [
    ("papers/nopaper/table2", "unknown paper 'nopaper'"),
    ("papers/shufflenet/table99", "unknown table 'table99'"),
    ("shufflenet", "not a table path"),
])
def test_unknown_tables(capsys, tmp_path, table, needle):
    check_one_line_error(capsys, [*RUN, table, "--store", str(tmp_path / "s")], needle, store=tmp_path / "s")


def test_unknown_preset(capsys, tmp_path):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "fast", "--store", str(tmp_path)],
                         "unknown preset 'fast'", "paper, proxy, test", store=tmp_path)


@pytest.mark.parametrize("argv,needle", [
    (["--seeds", "0"], "must be at least 1"),
    (["--seeds", "two"], "expected a whole number"),
    (["--gpus", "-1"], "must be at least 1"),
    (["--launcher", "kubernetes"], "invalid choice"),
])
def test_bad_flag_values(capsys, argv, needle):
    expect_exit(capsys, [*RUN, "papers/shufflenet/table2", *argv], needle)


@pytest.mark.parametrize("override,needle", [
    ("train.batch_size=0", "greater than 0"),
    ("train.batch_size=-8", "greater than 0"),
    ("train.lrr=0.1", "no field 'lrr'"),
    ("lr", "expected KEY=VALUE"),
    ("train.lr=fast", "valid number"),
])
def test_bad_overrides(capsys, tmp_path, override, needle):
    check_bad_set(capsys, tmp_path, override, needle)


def test_only_matching_nothing(capsys, tmp_path):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--only", "3x|g=9", "--store", str(tmp_path)],
                         "matches no cell")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpus_on_a_cpu_only_machine(capsys, tmp_path):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", "--gpus", "1",
                                  "--store", str(tmp_path)], "no CUDA GPU", "drop --gpus")


@pytest.mark.parametrize("argv,needle", [
    (["--nodes", "2"], "needs a cluster launcher"),
    (["--gpus", "1", "--cpus", "2"], "pick one"),
    (["--fast", "--launcher", "ray"], "--launcher local only"),
])
def test_conflicting_flags(capsys, tmp_path, argv, needle):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", *argv, "--store", str(tmp_path)], needle)


def test_fast_path_refuses_detection_tables(capsys, tmp_path):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table7", "--preset", "test", "--fast", "--store", str(tmp_path)],
                         "classification only")


def test_unwritable_store(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", "--store", str(blocker / "store")],
                         "not writable", "--store")


# ----------------------------------------------------------------- malformed specs
@pytest.mark.parametrize("name,text,needle", [
    ("badyaml", "table: t\nrows: [\n", "not valid YAML"),
    ("wrongtype", GOOD_SPEC.replace("model: shufflenet_v1", "model: shufflenet_v1\ntolerance: wide"), "tolerance"),
    ("unknownkey", GOOD_SPEC.replace("columns:", "colums:"), "colums"),
    ("nometric", GOOD_SPEC.replace('metric: {name: top1_err, unit: "%", better: lower}\n', ""), "metric"),
    ("duprows", GOOD_SPEC.replace("{id: r2,", "{id: r1,"), "duplicate row ids"),
    ("badbetter", GOOD_SPEC.replace("better: lower", "better: smaller"), "metric.better"),
    ("unknownrow", GOOD_SPEC.replace("{id: r2,", "{id: r9,"), "row 'r9' is not a row of published"),
    ("unknownmodel", GOOD_SPEC.replace("model: shufflenet_v1", "model: shufflenet_v9"), "unknown model 'shufflenet_v9'"),
    ("unknownarg", GOOD_SPEC.replace("{groups: 1}", "{grops: 1}"), "no argument(s) ['grops']"),
    ("groups5", GOOD_SPEC.replace("{groups: 2}", "{groups: 5}"), "groups must be one of"),
    ("scale075", GOOD_SPEC.replace("{scale: 0.5}", "{scale: 0.75}"), "scale must be one of"),
    ("toplist", "- just\n- a list\n", "expected a mapping"),
])
def test_malformed_specs(capsys, monkeypatch, toy_root, tmp_path, name, text, needle):
    monkeypatch.setenv("REPRO_PAPERS", str(toy_root))
    ref = toy_table(toy_root, name, text)
    check_one_line_error(capsys, [*RUN, ref, "--preset", "test", "--store", str(tmp_path)], needle, store=tmp_path)


def test_published_value_that_is_not_a_number(capsys, monkeypatch, tmp_path_factory):
    root = tmp_path_factory.mktemp("badpub")
    paper = root / "badpub"
    paper.mkdir()
    (paper / "__init__.py").write_text("")
    (paper / "models.py").write_text(TOY_MODELS)
    (paper / "published.yaml").write_text(TOY_PUBLISHED.replace("a: 1.0,", 'a: "32.6%",'))
    (paper / "presets.yaml").write_text((REPO / "papers/shufflenet/presets.yaml").read_text())
    (paper / "t.yaml").write_text(GOOD_SPEC)
    monkeypatch.setenv("REPRO_PAPERS", str(root))
    check_one_line_error(capsys, ["published", "papers/badpub", "--json"], "published.yaml", "r1.values.a")


# ----------------------------------------------------------------- data
def test_missing_imagenet_names_the_layout(capsys, tmp_path):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--only", "1x|g=3", "--data-root", str(tmp_path / "data"),
                                  "--store", str(tmp_path / "s")], "imagenet", "train")


def test_paper_preset_without_a_data_root(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_DATA_ROOT", raising=False)
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--only", "1x|g=3", "--store", str(tmp_path)],
                         "--data-root")


def test_imagenet_with_images_directly_under_train(capsys, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / "data/imagenet" / split).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "data/imagenet" / split / "x.JPEG")
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--only", "1x|g=3", "--data-root", str(tmp_path / "data"),
                                  "--store", str(tmp_path / "s")], "class")


def test_truncated_cifar_pickle(capsys, tmp_path):
    batches = tmp_path / "data/cifar10/cifar-10-batches-py"
    batches.mkdir(parents=True)
    blob = pickle.dumps({b"data": bytes(3072 * 4), b"labels": [0, 1, 2, 3]})
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(blob[: len(blob) // 2])
    check_one_line_error(capsys, [*RUN, "papers/ghostnet/cifar10", "--only", "*|*", "--data-root", str(tmp_path / "data"),
                                  "--store", str(tmp_path / "s")], "data_batch_1")


def test_cli_subprocess_prints_no_traceback(tmp_path):
    out = run_cli("run", "papers/shufflenet/table2", "--preset", "nope", "--store", str(tmp_path))
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr


def test_slurm_requested_but_unreachable(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    if __import__("shutil").which("sbatch") is None:
        needle = "not on PATH"
    else:
        needle = "no SLURM controller reachable"
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", "--launcher", "slurm",
                                  "--store", str(tmp_path / "s")], needle, store=tmp_path / "s")


def test_ray_requested_but_unreachable(capsys, tmp_path):
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", "--launcher", "ray",
                                  "--ray-address", "127.0.0.1:1", "--store", str(tmp_path / "s")],
                         "no Ray cluster answers", store=tmp_path / "s")


# ----------------------------------------------------------------- --set values torch would reject
# The schema bounds each of these; before, they passed it and failed inside torch, mid-run.
@pytest.mark.parametrize("override,needle", [
    ("train.momentum=-0.5", "train.momentum: Input should be greater than or equal to 0"),
    ("train.momentum=1.5", "train.momentum: Input should be less than 1"),
    ("train.weight_decay=-1e-4", "train.weight_decay: Input should be greater than or equal to 0"),
    ("train.lr=-0.1", "train.lr: Input should be greater than 0"),
    ("train.lr=0", "train.lr: Input should be greater than 0"),
    ("train.lr=.inf", "train.lr: Input should be a finite number"),
    ("train.lr=.nan", "train.lr: Input should be a finite number"),
    ("train.epochs=0", "train.epochs: Input should be greater than 0"),
    ("train.max_steps=-3", "train.max_steps: Input should be greater than 0"),
    ("train.batch_size=100000000", "train.batch_size: Input should be less than or equal to 1000000"),
    ("train.workers=-1", "train.workers: Input should be greater than or equal to 0"),
    ("train.smoothing=1", "train.smoothing: Input should be less than 1"),
    ("train.opt_betas=[1.5,0.9]", "opt_betas must each be in [0, 1)"),
    ("train.scale=[0.5,0.1]", "scale must be (low, high) with 0 < low <= high <= 1"),
    ("train.ratio=[0,1]", "ratio must be (low, high) with 0 < low"),
    ("train.color_jitter=[-1,0,0]", "color_jitter values must be >= 0"),
    ("train.color_jitter=[1,x,3]", "train.color_jitter: Input should be a valid number"),
    ("train.image_size_schedule={0: 0}", "image_size_schedule maps epoch >= 0 to a size in 1..4096"),
    ("data.train_size=0", "train_size must be from 1 to"),
    ("data.train_size=abc", "train_size must be a whole number"),
    ("data.train_size=1.5", "train_size must be a whole number"),
    ("data.val_size=-5", "val_size must be from 1 to"),
    ("data.seed=abc", "seed must be a whole number"),
    ("data.seed=-1", "seed must be from 0 to 4294967295"),
    ("data.seed=true", "seed must be a whole number"),
    ("data.noise=-1", "noise must be from 0 to 100"),
    ("data.noise=.nan", "noise must be a number"),
    ("data.image_size=0", "data.image_size: Input should be greater than 0"),
    ("data.image_size=100000", "data.image_size: Input should be less than or equal to 4096"),
    ("data.num_classes=1", "data.num_classes: Input should be greater than 1"),
    ("data.std=[0,1,1]", "std must be a list of 3 positive numbers"),
    ("data.mean=[0.5,0.5]", "mean must be a list of 3 numbers"),
    ("data.interpolation=cubic", "interpolation must be one of bilinear, bicubic, nearest"),
    ("data.augment=heavy", "augment must be one of imagenet, cifar, none"),
])
def test_set_values_the_run_would_reject(capsys, tmp_path, override, needle):
    check_bad_set(capsys, tmp_path, override, needle)


@pytest.mark.parametrize("override,needle", [
    ("train.detector={rpn_topn: 10}", "detector.rpn_topn is not a detector setting"),
    ("train.detector={rpn_batch_size_per_image: many}", "train.detector.rpn_batch_size_per_image: Input should be a valid"),
    ("train.detector={box_detections_per_img: 0}", "detector.box_detections_per_img must be a whole number"),
    ("train.detector={box_score_thresh: 2}", "detector.box_score_thresh must be from 0 to 1"),
])
def test_bad_detector_knobs(capsys, tmp_path, override, needle):
    check_bad_set(capsys, tmp_path, override, needle, table="papers/shufflenet/table7")


def test_detector_knobs_match_the_detector_module():
    from repro.nn.detection import RUNTIME_KNOBS
    from repro.spec.schema import DETECTOR_KNOBS

    assert set(DETECTOR_KNOBS) == set(RUNTIME_KNOBS)


# A 300-byte document whose aliases expand to 9^9 (387 million) values.
ALIAS_BOMB = "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9 if p else ['x'] * 9)}]\n"
                     for p, n in zip([""] + list("abcdefgh"), "abcdefghi"))


@pytest.mark.parametrize("override,needle", [
    ("train.lr=[", "--set train.lr: the value is not valid YAML"),
    ("train.lr={a: 1, a: 2}", "--set train.lr: the value is not valid YAML (duplicate key 'a', first on line 1)"),
    ("train.scale=" + "[" * 40 + "]" * 40, "nested deeper than 32 levels"),
    ("train.scale=&a [1, *a]", "an alias refers to the node that contains it"),
    ("train.scale=" + ALIAS_BOMB.replace("\n", ", ").join("{}"), "aliases expand it to more than 100000 values"),
    ("=0.1", "expected KEY=VALUE"),
    (" =0.1", "expected KEY=VALUE"),
])
def test_set_values_that_are_not_yaml_or_too_big(capsys, tmp_path, override, needle):
    import time

    started = time.monotonic()
    check_bad_set(capsys, tmp_path, override, needle)
    assert time.monotonic() - started < 10, "refused, but not fast"


@pytest.mark.parametrize("key", ["data.api_token", "train.password", "data.aws_secret_access_key", "wandb.apiKey",
                                 "data.HF-TOKEN", "data.credentials", "data.db_passwd", "train.private_key"])
def test_secret_looking_keys_are_refused_without_echoing_the_value(capsys, tmp_path, key):
    line = check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", "--dry-run",
                                         "--set", f"{key}=hunter2-s3cr3t", "--store", str(tmp_path)],
                                f"--set {key}: looks like a secret", "environment variables", store=tmp_path)
    assert "hunter2" not in line


# ----------------------------------------------------------------- spec files that are not specs
def _bytes_table(toy_root: Path, name: str, data: bytes) -> str:
    (toy_root / "toypaper" / f"{name}.yaml").write_bytes(data)
    return f"papers/toypaper/{name}"


@pytest.mark.parametrize("name,data,needle", [
    ("binary", b"table: t\n\x00\x01\x02\xff", "a binary file (it holds NUL bytes), not YAML text"),
    ("latin1", GOOD_SPEC.replace("title: toy", "title: caf\xe9").encode("latin-1"), "line 3: not UTF-8 text (byte 0xe9)"),
    ("utf16", GOOD_SPEC.encode("utf-16"), "UTF-16 text, not UTF-8; save it as UTF-8"),
    ("empty", b"", "expected a mapping at the top level, got NoneType"),
    ("deep", ("table: " + "[" * 100 + "]" * 100 + "\n").encode(), "line 1: not valid YAML (nested deeper than 32 levels)"),
    ("dupkey", (GOOD_SPEC + "title: again\n").encode(), "line 8: not valid YAML (duplicate key 'title', first on line 3)"),
    ("dupnested", GOOD_SPEC.replace("{scale: 0.25}", "{scale: 0.25, scale: 0.5}").encode(), "duplicate key 'scale'"),
    ("bomb", (GOOD_SPEC + "notes: {" + ALIAS_BOMB.replace("\n", ", ") + "}\n").encode(), "aliases expand it to more than"),
    ("recursive", (GOOD_SPEC + "notes: &n [a, *n]\n").encode(), "an alias refers to the node that contains it"),
    ("pytag", b"table: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
])
def test_spec_files_that_are_not_yaml_text(capsys, monkeypatch, toy_root, tmp_path, name, data, needle):
    monkeypatch.setenv("REPRO_PAPERS", str(toy_root))
    check_one_line_error(capsys, [*RUN, _bytes_table(toy_root, name, data), "--preset", "test", "--store", str(tmp_path)],
                         needle, store=tmp_path)


def test_spec_that_is_a_directory(capsys, monkeypatch, toy_root, tmp_path):
    monkeypatch.setenv("REPRO_PAPERS", str(toy_root))
    (toy_root / "toypaper" / "adir.yaml").mkdir(exist_ok=True)
    try:
        check_one_line_error(capsys, [*RUN, "papers/toypaper/adir", "--preset", "test", "--store", str(tmp_path)],
                             "adir.yaml: is a directory, not a YAML file", store=tmp_path)
    finally:
        (toy_root / "toypaper" / "adir.yaml").rmdir()  # other tests list the folder's tables


@pytest.mark.parametrize("name,text,needle", [
    ("inputsmall", GOOD_SPEC.replace("{id: r1,", "{id: r1, input_size: 8,"), "rows.0.input_size: Input should be greater than or equal to 16"),
    ("inputhuge", GOOD_SPEC.replace("{id: r1,", "{id: r1, input_size: 100000,"), "rows.0.input_size: Input should be less than or equal to 4096"),
    ("inputscaled", GOOD_SPEC.replace("{id: r1,", "{id: r1, input_size: 16,") + "complexity: {input_size: 4096}\n",
     "row 'r1': input_size 16 scales this preset's 32 px to 0 px"),
    ("cxnegative", GOOD_SPEC + "complexity: {input_size: -224}\n", "complexity.input_size: Input should be greater than or equal to 16"),
    ("tolinf", GOOD_SPEC + "tolerance: .inf\n", "tolerance: Input should be a finite number"),
    ("initself", GOOD_SPEC + "cells: [{row: r1, column: a, init_from: 'toypaper/initself:r1|a'}]\n",
     "init_from cycle: toypaper/initself:r1|a -> toypaper/initself:r1|a"),
    ("initcycle", GOOD_SPEC + "cells: [{row: r1, column: a, init_from: 'toypaper/initcycle:r2|b'},"
                              " {row: r2, column: b, init_from: 'toypaper/initcycle:r1|a'}]\n", "init_from cycle"),
    ("initbad", GOOD_SPEC + "cells: [{row: r1, column: a, init_from: 'toypaper-initbad'}]\n", "expected <paper>/<table>:<row>|<column>"),
])
def test_specs_whose_values_are_out_of_range(capsys, monkeypatch, toy_root, tmp_path, name, text, needle):
    monkeypatch.setenv("REPRO_PAPERS", str(toy_root))
    check_one_line_error(capsys, [*RUN, toy_table(toy_root, name, text), "--preset", "test", "--store", str(tmp_path)],
                         needle, store=tmp_path)


# ----------------------------------------------------------------- which spec a table ref means
def test_alias_to_a_missing_preset_says_so(capsys, monkeypatch, toy_root, tmp_path):
    monkeypatch.setenv("REPRO_PAPERS", str(toy_root))
    ref = toy_table(toy_root, "badalias", GOOD_SPEC + "presets: {test: test_missing}\n")
    check_one_line_error(capsys, [*RUN, ref, "--preset", "test", "--store", str(tmp_path)],
                         "preset 'test': this table's `presets:` maps it to 'test_missing', which is not in "
                         "toypaper/presets.yaml", store=tmp_path)


@pytest.mark.parametrize("argv,needle", [
    (["published", "papers/nope"], "unknown paper 'nope'; known papers:"),
    (["published", "nope"], "unknown paper 'nope'; known papers:"),
    (["published", "papers/nope/table2"], "unknown paper 'nope'; known papers:"),
    (["published", "papers/shufflenet/table99"], "unknown table 'table99' in shufflenet"),
    (["run", "papers/shufflenet", "--dry-run"], "'papers/shufflenet' is a paper, not a table; its tables: papers/shufflenet/table2"),
    (["run", "papers/nope", "--dry-run"], "unknown paper 'nope'"),
    (["complexity", "papers/shufflenet"], "is a paper, not a table"),
    (["status", "papers/nope/table2"], "unknown paper 'nope'"),
])
def test_paper_and_table_names(capsys, argv, needle):
    check_one_line_error(capsys, argv, needle)


@pytest.mark.parametrize("suffix", ["", ".yaml"])
def test_a_path_to_another_copy_of_a_spec_is_not_the_installed_spec(capsys, tmp_path, suffix):
    copy = tmp_path / "elsewhere" / "shufflenet"
    copy.mkdir(parents=True)
    (copy / "table2.yaml").write_text((REPO / "papers/shufflenet/table2.yaml").read_text())
    for argv in ([*RUN, str(copy / "table2") + suffix, "--preset", "test", "--dry-run"],
                 ["published", str(copy / "table2") + suffix], ["complexity", str(copy / "table2") + suffix]):
        check_one_line_error(capsys, argv, f"is the file {copy / 'table2.yaml'}, not the installed spec")


def test_the_installed_spec_by_its_own_path_still_runs(capsys):
    for ref in (str(REPO / "papers/shufflenet/table2"), str(REPO / "papers/shufflenet/table2.yaml"), "papers/shufflenet/table2"):
        assert main([*RUN, ref, "--preset", "test", "--dry-run"]) == 0
    assert "15 cells" in capsys.readouterr().out


def test_a_broken_paper_folder_is_skipped_with_one_warning(tmp_path):
    extra = tmp_path / "extra"
    broken = extra / "brokenpaper"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "published.yaml").write_text(TOY_PUBLISHED)
    (broken / "presets.yaml").write_text("test: [\n")
    good = extra / "goodpaper"
    good.mkdir()
    for name in ("__init__.py", "models.py", "published.yaml", "presets.yaml", "good.yaml"):
        (good / name).write_text({"__init__.py": "", "models.py": TOY_MODELS, "published.yaml": TOY_PUBLISHED,
                                  "presets.yaml": (REPO / "papers/shufflenet/presets.yaml").read_text(),
                                  "good.yaml": GOOD_SPEC}[name])
    env = {"REPRO_PAPERS": str(extra)}

    out = run_cli("list", env=env)
    warnings = out.stderr.strip().splitlines()
    assert out.returncode == 0 and "papers/shufflenet/table2" in out.stdout and "papers/goodpaper/good" in out.stdout
    assert len(warnings) == 1 and "warning: skipping paper folder" in warnings[0] and "brokenpaper" in warnings[0]
    assert "brokenpaper" not in out.stdout

    out = run_cli("published", "papers/shufflenet/table2", env=env)
    assert out.returncode == 0 and out.stderr == "" and "ShuffleNet 1x" in out.stdout

    out = run_cli("report", "--store", str(REPO / "results/runs"), "--out", str(tmp_path / "r" / "REPORT.md"), env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "brokenpaper" in out.stderr
    assert "shufflenet/table2" in (tmp_path / "r" / "REPORT.md").read_text()

    out = run_cli("run", "papers/brokenpaper/t", "--dry-run", env=env)  # named directly: its own error, once
    (line,) = out.stderr.strip().splitlines()
    # The parser's own words differ between libyaml ("did not find expected node content") and PyYAML.
    assert out.returncode == 2 and line.startswith(f"repro: {broken / 'presets.yaml'}: line 2: not valid YAML (")


# ----------------------------------------------------------------- report
def test_report_of_a_store_that_is_a_file(capsys, tmp_path):
    (tmp_path / "a-file").write_text("x")
    check_one_line_error(capsys, ["report", "--store", str(tmp_path / "a-file"), "--out", str(tmp_path / "R.md")],
                         "a-file is not a directory")
    assert not (tmp_path / "R.md").exists()


def test_report_of_a_store_that_does_not_exist(capsys, tmp_path):
    check_one_line_error(capsys, ["report", "--store", str(tmp_path / "nope"), "--out", str(tmp_path / "R.md")],
                         "nope does not exist")
    assert not (tmp_path / "R.md").exists() and not (tmp_path / "nope").exists()


def test_report_of_dev_null_as_the_store(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_STORE", "/dev/null")
    check_one_line_error(capsys, ["report", "--out", str(tmp_path / "R.md")], "results store /dev/null is not a directory")


@pytest.mark.parametrize("out,needle", [
    ("a-dir", "it is a directory; pass --out FILE"),
    ("a-file/REPORT.md", "Not a directory; pass --out FILE in a writable folder"),
])
def test_report_to_an_unwritable_place(capsys, tmp_path, out, needle):
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    check_one_line_error(capsys, ["report", "--store", str(REPO / "results/runs"), "--tables", "shufflenet/table2",
                                  "--out", str(tmp_path / out)], "cannot write the report", needle)


def test_unwritable_report_after_a_run_keeps_the_results(capsys, tmp_path):
    (tmp_path / "a-file").write_text("x")
    store = tmp_path / "s"
    line = check_one_line_error(capsys, ["run", "--no-progress", "papers/shufflenet/table2", "--preset", "test",
                                         "--only", "0.25x|g=1", "--store", str(store), "--wandb", "off",
                                         "--report", str(tmp_path / "a-file" / "REPORT.md")],
                                "cannot write the report", "the results are kept in", "repro report --store")
    assert len(list(store.glob("*/result.json"))) == 1, line


# ----------------------------------------------------------------- a reader that leaves early
@pytest.mark.parametrize("argv", [["list"], ["published", "papers/shufflenet"], ["published", "papers/fasternet", "--json"],
                                  ["complexity", "papers/shufflenet/table2", "--json"]])
def test_a_closed_pipe_is_not_a_traceback(argv):
    import subprocess
    import sys

    # The reader is gone before repro writes its first line: every write hits a closed pipe.
    proc = subprocess.Popen([sys.executable, "-m", "repro", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0 and err == "", err
    # and `| head -1` as a shell runs it
    out = subprocess.run(f"{sys.executable} -m repro {' '.join(argv)} | head -1", shell=True, capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert len(out.stdout.splitlines()) == 1 and out.stderr == "", out.stderr


# ----------------------------------------------------------------- security
class _RunsAShellCommand:
    """Unpickling this calls os.system: what a crafted data file can do to plain pickle.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _cifar_batches(root: Path, blob: bytes, meta: bytes | None = None) -> Path:
    batches = root / "cifar10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(blob)
    if meta is not None:
        (batches / "batches.meta").write_bytes(meta)
    return batches


def _real_format_batch(n: int = 4) -> dict:
    """A batch shaped as cifar-10-python.tar.gz's: bytes keys, an (N, 3072) uint8 array, int labels."""
    import numpy as np

    return {b"batch_label": b"training batch 1 of 5", b"labels": list(range(n)),
            b"data": np.arange(n * 3072, dtype=np.uint8).reshape(n, 3072),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


@pytest.mark.parametrize("where", ["data", "meta", "nested"])
def test_a_cifar_pickle_that_runs_code_is_refused(tmp_path, where):
    from repro.data import cifar
    from repro.errors import DataError

    marker = tmp_path / "pwned"
    evil = _RunsAShellCommand(marker)
    good = _real_format_batch()
    blob = {"data": pickle.dumps(evil, protocol=2), "meta": pickle.dumps(good, protocol=2),
            "nested": pickle.dumps({**good, b"labels": [0, 1, evil]}, protocol=2)}[where]
    meta = pickle.dumps({b"label_names": evil} if where == "meta" else {b"label_names": [b"a"] * 10}, protocol=2)
    batches = _cifar_batches(tmp_path, blob, meta)
    with pytest.raises(DataError) as info:
        cifar.build({"name": "cifar10", "image_size": 32}, "train", tmp_path / "cifar10")
    message = str(info.value)
    assert "\n" not in message and "asks to call posix.system while loading" in message and "refused" in message
    assert str(batches) in message
    assert not marker.exists(), "the pickle's command ran"


def test_a_cifar_pickle_that_runs_code_is_one_line_from_the_cli(capsys, tmp_path):
    marker = tmp_path / "pwned"
    _cifar_batches(tmp_path / "data", pickle.dumps(_RunsAShellCommand(marker), protocol=2))
    check_one_line_error(capsys, [*RUN, "papers/ghostnet/cifar10", "--only", "*|*", "--wandb", "off",
                                  "--data-root", str(tmp_path / "data"), "--store", str(tmp_path / "s")],
                         "data_batch_1 asks to call posix.system while loading", "refused")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_real_format_cifar_batch_still_loads(tmp_path, protocol):
    from repro.data import cifar

    meta = {b"label_names": [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")],
            b"num_cases_per_batch": 4, b"num_vis": 3072}
    _cifar_batches(tmp_path, pickle.dumps(_real_format_batch(), protocol=protocol), pickle.dumps(meta, protocol=protocol))
    train = cifar.build({"name": "cifar10", "image_size": 32}, "train", tmp_path / "cifar10")
    val = cifar.build({"name": "cifar10", "image_size": 32}, "val", tmp_path / "cifar10")
    assert len(train) == 20 and len(val) == 4 and train.classes[1] == "car" and train.targets[:4] == [0, 1, 2, 3]
    image, label = val[1]
    assert tuple(image.shape) == (3, 32, 32) and label == 1
    # The first pixel of image 1 is its R plane's first byte: 3072 % 256 = 0.
    assert int(train.images[1, 0, 0, 0]) == 3072 % 256 and int(train.images[1, 0, 1, 0]) == 3073 % 256


WANDB_ARGV_SCRIPT = """
import sys
from pathlib import Path
from repro.spec import expand_cells, load_table
from repro.track.wandb_mirror import make_logger
cell = expand_cells(load_table("papers/shufflenet/table2"), "test")[0]
logger = make_logger(cell, Path(sys.argv[1]), "offline")
assert logger is not None, "W&B did not start"
logger.log_metrics({"val/top1_err": 50.0}, step=1)
import wandb
wandb.finish()
"""


def test_wandb_does_not_record_the_command_line(tmp_path):
    import subprocess
    import sys

    secret = "hunter2-7f3a9c-not-for-wandb"
    script = tmp_path / "start_wandb.py"
    script.write_text(WANDB_ARGV_SCRIPT)
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script), str(run_dir), "--set", f"data.api_token={secret}"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files), files  # the offline run exists...
    for p in files:  # ...and no file of it holds the argv: neither the secret nor the script's path
        data = p.read_bytes()
        assert secret.encode() not in data, p
        assert b"start_wandb.py" not in data, p


# ----------------------------------------------------------------- one failed cell, not a failed table
def test_a_cell_that_fails_in_training_does_not_stop_the_table(capsys, tmp_path, monkeypatch):
    """run_local notes a RunFailed cell as it fails (a line of its own) and goes on; the command ends
    with one line naming the count and the first failure."""
    import repro.launch.local as local
    from repro.errors import RunFailed

    trained = []

    def fake_run_cell(table, cell, opts):
        trained.append((cell.row, cell.column))
        if cell.column == "g=1":
            raise RunFailed("loss is NaN at step 3")
        return {"cell_id": cell.id}

    monkeypatch.setattr(local, "run_cell", fake_run_cell)
    rc = main([*RUN, "papers/shufflenet/table2", "--preset", "test", "--only", "0.25x|*", "--wandb", "off",
               "--store", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "Traceback" not in "".join(err)
    assert err == ["repro: cell (0.25x, g=1) seed 0 failed: loss is NaN at step 3",
                   "repro: 1 of 5 cells failed, first (0.25x, g=1): loss is NaN at step 3; finished cells are kept "
                   "(see `repro status shufflenet/table2`)"]
    assert trained == [("0.25x", c) for c in ("g=1", "g=2", "g=3", "g=4", "g=8")]
