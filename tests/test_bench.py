"""repro bench: result files and protocol, fast-path equivalence, timm pairing, clear errors.

Nothing here asserts a speed: on a shared CI machine that would only measure the neighbours.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from repro.bench import check_device, fastpath, render_bench_markdown, run_bench
from repro.bench.models import check_same_architecture, timm_counterpart
from repro.bench.targets import resolve_target
from repro.errors import ConfigError, ReproError

TINY = 'shufflenet:shufflenet_v1:{"scale": 0.25, "groups": 3}'
PROTOCOL_FIELDS = {"device", "device_name", "cpu", "threads", "torch", "python", "timer", "batch", "latency_batch",
                   "image_size", "warmup", "repeats", "fast", "compile", "train_step"}


def _args(**kw) -> argparse.Namespace:
    base = dict(target=TINY, device="cpu", batch=2, threads=1, vs=None, fast=False, out=None, store=None,
                image_size=32, warmup=0, repeats=1, latency_repeats=1, compile=None, dtype=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("fast", [False, True], ids=["default", "fast"])
def test_bench_writes_json_with_protocol(tmp_path, fast):
    out = tmp_path / "bench" / "tiny.json"
    # compile=False keeps this test quick; the compiled fast path has its own test below.
    assert run_bench(_args(out=str(out), fast=fast, compile=False)) == 0
    rec = json.loads(out.read_text())
    assert rec["schema"] == "repro.bench/1" and rec["kind"] == "models"
    assert PROTOCOL_FIELDS <= set(rec["protocol"])
    (entry,) = rec["models"]
    assert entry["params"] > 0 and entry["image_size"] == 32 and entry["batch"] == 2
    assert {"dtype", "memory_format", "compile", "fused_bn"} <= set(entry["protocol"])
    assert entry["protocol"]["fused_bn"] is fast
    for phase in ("train", "infer"):
        assert entry[phase]["images_per_s"] > 0 and entry[phase]["median_s"] > 0
    assert entry["latency"]["median_ms"] > 0
    assert "tiny.json" in render_bench_markdown(tmp_path)


def test_default_output_goes_to_store(tmp_path):
    run_bench(_args(store=str(tmp_path)))
    (path,) = (tmp_path / "bench").glob("*.json")
    assert path.name.endswith("-cpu.json")


def _randomize_bn(model):
    """Non-trivial BN statistics, so folding them is actually tested."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize("target", [
    TINY,
    'fasternet:fasternet:{"variant": "t0"}',
    'ghostnet:ghostnet:{"width": 0.5}',
    "efficientnet:efficientnet_b0",
])
def test_fused_model_matches_unfused(target):
    torch.manual_seed(0)
    (bm,) = resolve_target(target)
    model = _randomize_bn(bm.build())
    x = torch.randn(2, 3, 64, 64)
    fused = fastpath.fuse_conv_bn(model)
    assert fastpath.count_batchnorms(fused) < fastpath.count_batchnorms(model)  # something was folded
    fast = fastpath.prepare_for_inference(model, channels_last=True)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(fused(x), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast(fastpath.to_input_format(x, True)), ref, rtol=1e-4, atol=1e-4)
    assert model.training is False and fastpath.count_batchnorms(model) > 0  # the input is left untouched


def test_compiled_frozen_inference_matches_eager():
    """The CPU fast path's compile + weight freezing computes what the eager model does (PConv
    switches to its split/concat forward while compiling, which freezing can trace)."""
    from papers.fasternet.models import MODELS

    assert fastpath.default_compile("cpu", fast=True) and not fastpath.default_compile("cpu", fast=False)
    torch.manual_seed(0)
    model = _randomize_bn(MODELS["fasternet"](embed_dim=8, depths=(1, 1, 1, 1), num_classes=5))
    x = torch.randn(2, 3, 64, 64)
    fast = fastpath.prepare_for_inference(model, channels_last=True, compile=True)
    with torch.inference_mode():
        ref, got = model(x), fast(fastpath.to_input_format(x, True))
    assert torch.allclose(ref, got, atol=1e-4, rtol=1e-4), (ref - got).abs().max()


@pytest.mark.skipif(not fastpath.native_bf16("cpu"), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_cpu_bf16_fast_path_runs_in_bf16_and_stays_close(tmp_path):
    """`--dtype bf16` on a CPU with native bf16: the file says bf16, the outputs stay near fp32's."""
    out = tmp_path / "bench" / "bf16.json"
    run_bench(_args(out=str(out), fast=True, compile=False, dtype="bf16"))
    rec = json.loads(out.read_text())
    assert rec["protocol"]["dtype"] == "bf16" and rec["models"][0]["protocol"]["dtype"].startswith("bf16 autocast")
    rec["vs_timm"] = [{"ours": "a", "timm": "b", "params": 1, "ours_fast": True,
                       "train_ratio": 2.0, "infer_ratio": 2.0, "latency_ratio": 1.5}]
    out.write_text(json.dumps(rec))
    report = render_bench_markdown(tmp_path)
    assert "| fast (bf16) | 2.00x |" in report  # a ratio never hides its dtype
    summary = report.split("### Ours vs timm, every file")[1].split("###")[0]
    assert "| `b` | fast (bf16) | 2.00x | 2.00x | 1.50x |" in summary and "bf16.json" in summary
    torch.manual_seed(0)
    (bm,) = resolve_target('fasternet:fasternet:{"variant": "t0"}')
    model = fastpath.prepare_for_inference(_randomize_bn(bm.build()), channels_last=True)
    x = fastpath.to_input_format(torch.randn(2, 3, 64, 64), True)
    with torch.inference_mode():
        ref = model(x)
        with fastpath.autocast("cpu", "bf16"):
            got = model(x)
    assert got.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa (2-3 significant digits); the error must not grow through the net.
    assert ((got.float() - ref).norm() / ref.norm()).item() < 0.05


def test_cpu_bf16_training_keeps_depthwise_convs_fp32():
    """Under bf16 autocast on CPU, depthwise convs compute in fp32 (oneDNN's bf16 depthwise backward
    is slow) and everything else in bf16; the parameters, their keys and the gradients stay intact."""
    (bm,) = resolve_target('ghostnet:ghostnet:{"width": 0.5}')
    model = bm.build()
    keys = list(model.state_dict())
    fastpath.prepare_for_training(model, "cpu", channels_last=True, dtype="bf16")
    assert list(model.state_dict()) == keys
    depthwise = [m for m in model.modules() if isinstance(m, fastpath.Float32Conv2d)]
    assert depthwise and all(m.groups == m.in_channels > 1 for m in depthwise)
    seen = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, i, out: seen.setdefault(type(mod).__name__, set()).add(out.dtype))
    with fastpath.autocast("cpu", "bf16"):
        loss = model(torch.randn(2, 3, 64, 64)).float().sum()
    loss.backward()
    assert seen == {"Float32Conv2d": {torch.float32}, "Conv2d": {torch.bfloat16}}
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("fast, native, message", [(False, True, "add --fast"), (True, False, "no native bf16")])
def test_bf16_refused_where_it_would_mislead(monkeypatch, fast, native, message):
    monkeypatch.setattr(fastpath, "native_bf16", lambda device: native)
    with pytest.raises(ConfigError, match=message):
        run_bench(_args(fast=fast, dtype="bf16", out="unused.json"))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_fast_path_is_bf16_exactly_where_it_is_native(monkeypatch, device):
    monkeypatch.setattr(fastpath, "native_bf16", lambda device: False)
    assert fastpath.fast_dtype(device, fast=True) == "fp32"
    monkeypatch.setattr(fastpath, "native_bf16", lambda device: True)
    assert fastpath.fast_dtype(device, fast=True) == "bf16" and fastpath.fast_dtype(device, fast=False) == "fp32"
    assert fastpath.fast_dtype(device, fast=True, requested="fp32") == "fp32"


def test_channel_shuffle_channels_last_matches_and_keeps_format():
    from repro.nn.blocks import channel_shuffle

    x = torch.randn(2, 12, 5, 7)
    ref = channel_shuffle(x, 3)
    y = channel_shuffle(x.contiguous(memory_format=torch.channels_last), 3)
    assert torch.equal(y, ref) and y.is_contiguous(memory_format=torch.channels_last)


def test_timm_pairs_by_architecture():
    names = {t: timm_counterpart(resolve_target(t)[0]) for t in
             ["efficientnet:efficientnet_b0", "ghostnet:ghostnet", 'fasternet:fasternet:{"variant": "t0"}',
              'fasternet:fasternet:{"variant": "t0", "partial_ratio": 0.5}', TINY]}
    assert list(names.values()) == ["efficientnet_b0", "ghostnet_100", "fasternet_t0", None, None]


def test_vs_timm_refuses_mismatched_pair():
    timm = pytest.importorskip("timm")
    (bm,) = resolve_target('ghostnet:ghostnet:{"width": 0.5}')
    with torch.device("meta"):
        theirs = timm.create_model("ghostnet_100", pretrained=False)
        ours = bm.build()
    with pytest.raises(ConfigError, match="refusing to compare"):
        check_same_architecture(ours, theirs, bm.name, "ghostnet_100")


@pytest.mark.parametrize("target", ["bogus", "nopaper:model", "shufflenet:nomodel", "shufflenet:shufflenet_v1:{oops",
                                    "papers/shufflenet/nosuchtable"])
def test_bad_target_is_one_line_repro_error(target):
    with pytest.raises(ReproError) as info:
        resolve_target(target)
    assert "\n" not in str(info.value)


def test_cli_bad_target_prints_one_line(capsys):
    from repro.cli import main

    assert main(["bench", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("repro: bench target") and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_refused_without_gpu():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        check_device("cuda")


def test_data_bench_small(tmp_path):
    out = tmp_path / "data.json"
    run_bench(argparse.Namespace(target="data", device="cpu", threads=1, out=str(out), workers=[0], images=8,
                                 batch=4, image_size=32, gpu_images_per_s=1000.0))
    rec = json.loads(out.read_text())
    assert rec["kind"] == "data" and rec["settings"][0]["images_per_s"] > 0
    assert isinstance(rec["verdict"]["input_bound"], bool) and rec["gpu"]["source"]
