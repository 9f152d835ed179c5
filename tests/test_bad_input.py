"""The bad-input catalogue: each case is one line on stderr naming the problem, a non-zero exit,
no traceback, and the store left as it was."""

from __future__ import annotations

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
    check_one_line_error(capsys, [*RUN, "papers/shufflenet/table2", "--preset", "test", "--set", override,
                                  "--store", str(tmp_path)], needle, store=tmp_path)


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
