"""Markdown for the report's performance section, read from `<store>/bench/*.json`."""

from __future__ import annotations

import json
from pathlib import Path


def bench_files(store) -> list[Path]:
    # A Store has .root; a path is the store folder itself (careful: pathlib paths have a .root too).
    root = Path(store) if isinstance(store, (str, Path)) else Path(store.root)
    return sorted((root / "bench").glob("*.json"))


def render_bench_markdown(store) -> str:
    parts, records = [], []
    for path in bench_files(store):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or not str(rec.get("schema", "")).startswith("repro.bench/"):
            continue
        render = {"models": _models, "data": _data, "overhead": _overhead}.get(rec.get("kind"))
        if render:
            parts.append(render(rec, path.name))
            records.append((path.name, rec))
    if not parts:
        return ""
    head = ("## Performance\n\nMeasured by `repro bench` (see docs/bench.md). Medians of repeated timings; "
            "on a shared machine they are noisy. A benchmark reports, it is not a pass/fail check.\n")
    summary = _vs_timm_summary(records)
    return "\n".join([head, *([summary] if summary else []), *parts])


def _path_label(fast: bool, dtype: str) -> str:
    return "default" if not fast else "fast" + (f" ({dtype})" if dtype != "fp32" else "")


def _vs_timm_summary(records: list[tuple[str, dict]]) -> str:
    """Every ours/timm ratio of every file in one table: one row per model and path."""
    rows = []
    for name, rec in records:
        proto = rec.get("protocol", {})
        dtype = proto.get("dtype", "fp32")
        for c in rec.get("vs_timm") or []:
            rows.append((c["timm"], c["ours_fast"], dtype, c, proto, name))
    if not rows:
        return ""
    lines = ["### Ours vs timm, every file", "",
             "Ratios are ours / timm speed in the same process (> 1: ours faster); timm runs its default "
             "path (fp32, NCHW). Each row's protocol is in its file's section below.", "",
             "| timm twin | ours path | train | infer | latency (b=1) | device | torch | load (1 min) | file |",
             "|---|---|---:|---:|---:|---|---|---:|---|"]
    for twin, fast, dtype, c, proto, name in sorted(rows, key=lambda r: (r[0], r[1], r[2] != "fp32")):
        lines.append(f"| `{twin}` | {_path_label(fast, dtype)} | {c['train_ratio']:.2f}x | {c['infer_ratio']:.2f}x | "
                     f"{c['latency_ratio']:.2f}x | {proto.get('device_name', proto.get('device', ''))} | "
                     f"{proto.get('torch', '')} | {proto.get('load_average_1min', '')} | {name} |")
    return "\n".join(lines) + "\n"


def _protocol_line(p: dict) -> str:
    keys = ("device", "device_name", "threads", "batch", "image_size", "warmup", "repeats", "fast", "compile", "dtype", "torch", "timm",
            "load_average_1min")
    return "Protocol: " + ", ".join(f"{k} {p[k]}" for k in keys if k in p)


def _models(rec: dict, name: str) -> str:
    lines = [f"### `{rec['target']}` ({name})", "", _protocol_line(rec["protocol"]), "",
             "| model | impl | params (M) | px | batch | dtype / format / fused | train img/s | infer img/s | latency ms (b=1) |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for e in rec.get("models", []):
        p = e["protocol"]
        how = f"{p['dtype']} / {'NHWC' if p['memory_format'].startswith('channels_last') else 'NCHW'} / " \
              f"{'fused' if p['fused_bn'] else '-'}{' / compiled' if p['compile'] else ''}"
        lines.append(f"| `{e['name']}` | {e['impl']} | {e['params'] / 1e6:.2f} | {e['image_size']} | {e['batch']} | {how} | "
                     f"{e['train']['images_per_s']:.1f} | {e['infer']['images_per_s']:.1f} | {e['latency']['median_ms']:.1f} |")
    if rec.get("vs_timm"):
        lines += ["", "| ours | timm | ours path | train ratio | infer ratio | latency ratio |", "|---|---|---|---:|---:|---:|"]
        dtype = rec["protocol"].get("dtype", "fp32")
        for c in rec["vs_timm"]:
            lines.append(f"| `{c['ours']}` | `{c['timm']}` | {_path_label(c['ours_fast'], dtype)} | "
                         f"{c['train_ratio']:.2f}x | {c['infer_ratio']:.2f}x | {c['latency_ratio']:.2f}x |")
        lines.append("\nRatios are ours / timm speed (> 1: ours faster), same process, same protocol; "
                     "timm runs its default path (fp32, NCHW).")
    return "\n".join(lines) + "\n"


def _data(rec: dict, name: str) -> str:
    lines = [f"### Input pipeline ({name})", "", _protocol_line(rec["protocol"]) + f", {rec.get('pipeline', '')}", "",
             "| workers | images/s | startup s |", "|---:|---:|---:|"]
    for r in rec.get("settings", []):
        lines.append(f"| {r['workers']} | {r['images_per_s']:.1f} | {r['startup_s']:.2f} |")
    v = rec.get("verdict", {})
    if v:
        lines += ["", f"Per worker: {rec.get('per_worker_images_per_s', 0):.1f} images/s. {v.get('text', '')}"]
    return "\n".join(lines) + "\n"


def _overhead(rec: dict, name: str) -> str:
    lines = [f"### Orchestration overhead per cell ({name})", "", f"Cell: {rec.get('cell', '')}", "",
             "| phase | seconds |", "|---|---:|"]
    for phase, sec in rec.get("phases_s", {}).items():
        lines.append(f"| {phase} | {sec:.3f} |")
    lines += ["", f"Overhead (run_cell wall time minus optimizer steps): **{rec.get('overhead_s', float('nan')):.2f} s** "
              f"(target < {rec.get('target_s', 1.0)} s); excluding validation: {rec.get('overhead_excl_val_s', float('nan')):.2f} s. "
              f"Fresh-process import cost (not part of run_cell): {rec.get('import_s', float('nan')):.2f} s."]
    by_run = rec.get("overhead_by_run_s") or {}
    if by_run:
        lines += ["", "| run | overhead (s) |", "|---|---:|"]
        lines += [f"| {label} | {sec:.2f} |" for label, sec in by_run.items()]
    return "\n".join(lines) + "\n"
