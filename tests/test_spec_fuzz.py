"""Property-based: whatever a spec file holds, the loader answers with a SpecError or a valid spec."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.errors import SpecError
from repro.spec.load import validate
from repro.spec.schema import PublishedPaper, TableSpec

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=12)
keys = st.sampled_from(["table", "title", "metric", "rows", "columns", "cells", "args", "model", "tolerance", "trend", "x"])
spec_like = st.dictionaries(keys, values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_like)
def test_table_spec_validation_never_crashes(data):
    try:
        validate(TableSpec, data, path="fuzz.yaml")
    except SpecError as exc:
        assert "fuzz.yaml" in str(exc) and "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_rejected_or_parsed_safely(text):
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    try:
        validate(PublishedPaper, data, path="fuzz.yaml")
    except SpecError:
        pass


def test_python_object_tags_are_refused(tmp_path):
    from repro.spec.load import read_yaml

    evil = tmp_path / "evil.yaml"
    evil.write_text("table: !!python/object/apply:os.system ['echo pwned']\n")
    try:
        read_yaml(evil)
    except SpecError as exc:
        assert "not valid YAML" in str(exc)
    else:
        raise AssertionError("a python tag must not be constructed")
