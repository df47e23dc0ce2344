"""The orjson canonical form is byte-identical to the json.dumps definition, so no hash changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from example_docs import examples_with_unknowns
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from neurocds.facts.canonical import canonical_json_fast
from neurocds.facts.strictjson import canonical_json, parse_strict


def definition(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def test_the_600_benchmark_documents_hash_byte_identically():
    for doc in examples_with_unknowns(600, seed=7, drop=0.3):
        parsed = parse_strict(json.dumps(doc).encode())
        assert canonical_json(parsed) == definition(parsed)


@pytest.mark.parametrize(
    "value",
    [1e-05, 5e-05, 0.0001, 1e16, 1.5e300, -0.0, 5e-324, 2**64, -(2**63) - 1, {"null": None}, "1e5 null", "\u2028\x7f"],
)
def test_values_orjson_writes_differently_take_the_exact_path(value):
    assert canonical_json_fast(value) == definition(value)
    assert canonical_json_fast({"k": [value]}) == definition({"k": [value]})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1: "a", "b": 2}, "\ud800"])
def test_what_the_definition_refuses_is_still_refused(value):
    with pytest.raises((ValueError, TypeError)) as expected:
        definition(value)
    with pytest.raises(expected.type):
        canonical_json_fast(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@seed(13)
@settings(max_examples=1500, deadline=None)
@given(json_values)
def test_any_json_value_gets_the_definition_bytes(value):
    assert canonical_json_fast(value) == definition(value)
