"""The builders' parameters and defaults, which cell identity needs, without importing torch each time.

A cell's id hashes its model arguments with the builder's defaults filled in, so expanding a table
needs every builder's signature, and importing a paper's models imports torch and torchvision:
about 3 of the 4-5 seconds `repro status` and `repro run --dry-run` took. The signatures are cached
per paper, keyed by the content of every Python file the models can depend on (the paper folder and
repro/nn/), so an edited default is seen at once and a stale entry is never used.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

from repro.spec.load import PaperDir

NN_DIR = Path(__file__).resolve().parents[1] / "nn"
NO_DEFAULT = {"__no_default__": True}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "repro" / "signatures"


# Per process, reused while no source file changes: every cell of a table asks.
_MEMO: dict[Path, tuple[tuple, dict]] = {}


def _sources(paper: PaperDir) -> list[Path]:
    return sorted([*paper.path.rglob("*.py"), *NN_DIR.rglob("*.py")])


def _source_key(paper: PaperDir) -> str:
    digest = hashlib.sha256(paper.name.encode())
    for path in _sources(paper):
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _encode(value):
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _from_builders(builders: dict) -> dict[str, dict]:
    out = {}
    for name, builder in builders.items():
        params = {}
        for key, p in inspect.signature(builder).parameters.items():
            params[key] = NO_DEFAULT if p.default is inspect.Parameter.empty else _encode(p.default)
        out[name] = params
    return out


def model_signatures(paper: PaperDir, builders) -> dict[str, dict]:
    """{model: {param: default or NO_DEFAULT}}; `builders()` imports and returns the paper's builders
    (called only when the cache has no entry for these sources)."""
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in _sources(paper))
    memo = _MEMO.get(paper.path)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    signatures = _load_or_build(paper, builders)
    _MEMO[paper.path] = (stamp, signatures)
    return signatures


def _load_or_build(paper: PaperDir, builders) -> dict[str, dict]:
    path = _cache_dir() / f"{paper.name}-{_source_key(paper)}.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = None
    if not isinstance(cached, dict):
        cached = _from_builders(builders())
        try:
            json.dumps(cached)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached))
            os.replace(tmp, path)
        except (OSError, TypeError, ValueError):
            pass  # an unwritable cache or a default JSON cannot hold: no cache, same answer
    return {model: {k: (v if v == NO_DEFAULT else _decode(v)) for k, v in params.items()} for model, params in cached.items()}
