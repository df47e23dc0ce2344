"""The validator's fast path agrees with jsonschema, on generated documents and every keyword.

:mod:`neurocds.facts.fastschema` answers "valid?" for the hot path; ``jsonschema`` is the
reference. These property tests generate valid facts documents from the schema,
mutate them, and require both to give the same answer every time.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schema_fixtures import PACK_SCHEMA, REF_PACK_SCHEMA

from neurocds.facts.fastschema import compile_schema
from neurocds.facts.validation import FactsValidator, make_format_checker
from neurocds.resources import load_schema

BASE = load_schema("facts.schema.json")

_OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_DATE_TIMES = st.builds(
    lambda dt, tz, z: (
        dt.replace(tzinfo=tz).isoformat().replace("+00:00", "Z") if z else dt.replace(tzinfo=tz).isoformat()
    ),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)),
    _OFFSETS,
    st.booleans(),
)


def from_schema(schema: Any) -> st.SearchStrategy[Any]:
    """Valid instances of the schema subset the facts schema uses."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        # Bounds need not be integral (potassium 0.5..15): the integers drawn stay inside them.
        whole = st.integers(None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi))
        return whole | floats
    if kind == "string":
        if schema.get("format") == "date-time":
            return _DATE_TIMES
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 20), 20))
    if kind == "array":
        return st.lists(from_schema(schema["items"]), max_size=4)
    props = schema.get("properties", {})
    required = set(schema.get("required", ()))
    return st.fixed_dictionaries(
        {k: from_schema(s) for k, s in props.items() if k in required},
        optional={k: from_schema(s) for k, s in props.items() if k not in required},
    )


VALID_DOCS = from_schema(BASE)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 200) | st.floats(-10, 1e4, allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    """A valid document with one member replaced, added or removed somewhere."""
    doc = draw(VALID_DOCS)
    objects: list[Any] = [doc]
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        containers = [c for c in children if isinstance(c, dict | list)]
        objects += containers
        stack += containers
    target = draw(st.sampled_from(objects))
    action = draw(st.sampled_from(["replace", "add", "remove"]))
    if isinstance(target, list):
        if target and action != "add":
            target[draw(st.integers(0, len(target) - 1))] = draw(ANY_JSON)
        else:
            target.append(draw(ANY_JSON))
    elif action == "remove" and target:
        del target[draw(st.sampled_from(sorted(target)))]
    elif action == "replace" and target:
        target[draw(st.sampled_from(sorted(target)))] = draw(ANY_JSON)
    else:
        target[draw(st.text(max_size=6))] = draw(ANY_JSON)
    return doc


# Built once: construction checks the schema (tens of milliseconds).
_CHECKER = make_format_checker()
_REFERENCE = Draft202012Validator(BASE, format_checker=_CHECKER)
_FAST = compile_schema(BASE, conforms=_CHECKER.conforms, delegate=lambda s: pytest.fail("no delegation expected"))
_VALIDATOR = FactsValidator(BASE)
_WITH_PACKS = FactsValidator(BASE, {"my-pack": PACK_SCHEMA, "ref-pack": REF_PACK_SCHEMA})
_WITH_PACKS_REFERENCE = Draft202012Validator(_WITH_PACKS.schema, format_checker=_CHECKER)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(VALID_DOCS)
def test_any_generated_valid_document_validates(doc: dict[str, Any]) -> None:
    assert _VALIDATOR.violations(doc) == []
    assert _VALIDATOR.parse_and_validate(json.dumps(doc)) == doc


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_docs())
def test_fast_path_agrees_with_jsonschema(doc: Any) -> None:
    expected = _REFERENCE.is_valid(doc)
    assert _FAST(doc) == expected
    assert _VALIDATOR.is_valid(doc) == expected
    found = _VALIDATOR.violations(doc)
    assert (found == []) == expected
    assert all(v.pointer == "" or v.pointer.startswith("/") for v in found)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "my-pack": st.fixed_dictionaries({}, optional={"score": ANY_JSON, "label": ANY_JSON}),
            "zz": ANY_JSON,
        },
    ),
    st.fixed_dictionaries({}, optional={"grade": ANY_JSON, "either": ANY_JSON, "q": ANY_JSON}),
)
def test_fast_path_with_extensions_agrees_with_jsonschema(ext: dict[str, Any], ref: dict[str, Any]) -> None:
    doc = {"facts_version": "1", "patient": {"id": "p-1"}, "extensions": {**ext, "ref-pack": ref}}
    expected = _WITH_PACKS_REFERENCE.is_valid(doc)
    assert _WITH_PACKS.is_valid(doc) == expected  # the fast path, with its jsonschema fallback
    assert (_WITH_PACKS.violations(doc) == []) == expected


# Every keyword the fast path compiles, in one schema, to check each against jsonschema.
ALL_KEYWORDS_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "minProperties": 1,
    "maxProperties": 4,
    "properties": {
        "n": {"type": ["integer", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 10},
        "s": {"type": "string", "pattern": "^a", "minLength": 1, "maxLength": 3},
        "l": {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1}, "minItems": 1, "maxItems": 2},
        "e": {"enum": ["a", "b"]},
        "c": {"const": "a"},
        "d": {"format": "date-time"},
        "t": True,
        "f": False,
    },
    "patternProperties": {"^x": {"type": "boolean"}, "y$": {"type": "string"}},
    "additionalProperties": {"type": "integer"},
}
_ALL_REFERENCE = Draft202012Validator(ALL_KEYWORDS_SCHEMA, format_checker=_CHECKER)
_ALL_FAST = compile_schema(ALL_KEYWORDS_SCHEMA, conforms=_CHECKER.conforms, delegate=lambda s: pytest.fail("delegated"))
_SMALL = (
    st.none() | st.booleans() | st.integers(-2, 12) | st.floats(-2, 12) | st.sampled_from(["", "a", "ab", "ba", "abcd"])
)
_MEMBER_VALUES = (
    _SMALL | st.lists(_SMALL, max_size=3) | st.sampled_from(["2026-11-24T10:00:00Z", "2026-02-30T10:00:00Z"])
)


@settings(max_examples=500)
@given(
    st.dictionaries(st.sampled_from(["n", "s", "l", "e", "c", "d", "t", "f", "x1", "ay", "xy", "z"]), _MEMBER_VALUES)
)
def test_fast_path_agrees_with_jsonschema_on_every_keyword(doc: dict[str, Any]) -> None:
    assert _ALL_FAST(doc) == _ALL_REFERENCE.is_valid(doc)


def test_fast_path_every_keyword_examples() -> None:
    # Boundary values, so the property test is not the only guard of each comparison.
    for doc, ok in [
        ({"n": 1}, True),
        ({"n": 0}, False),
        ({"n": 10}, False),
        ({"n": None}, True),
        ({"n": 1, "s": "ab"}, True),
        ({"n": 1, "s": "ba"}, False),
        ({"n": 1, "l": [1, -1]}, True),
        ({"n": 1, "l": []}, False),
        ({"n": 1, "xy": True}, False),
        ({"n": 1, "x1": True}, True),
        ({"n": 1, "ay": "s"}, True),
        ({"n": 1, "z": "s"}, False),
        ({"n": 1, "z": 1.0}, True),
        ({"n": 1, "f": None}, False),
    ]:
        assert _ALL_FAST(doc) is ok is _ALL_REFERENCE.is_valid(doc), doc


# ------------------------------------------------ references and combinators (the audit schema)
COMBINATOR_SCHEMA: dict[str, Any] = {
    "$id": "urn:test:combinators",
    "$defs": {
        "small": {"type": "integer", "maximum": 5},
        "tree": {  # recursive: a $ref must resolve lazily
            "type": "object",
            "properties": {
                "v": {"$ref": "#/$defs/small"},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}},
            },
            "additionalProperties": False,
        },
        "a~b/c": {"const": True},  # escaped JSON pointer tokens
    },
    "type": "object",
    "properties": {
        "all": {"allOf": [{"type": "integer"}, {"minimum": 2}]},
        "any": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/small"}]},
        "one": {"oneOf": [{"type": "integer"}, {"minimum": 3}]},
        "no": {"not": {"type": "string"}},
        "tree": {"$ref": "#/$defs/tree"},
        "flag": {"$ref": "#/$defs/a~0b~1c"},
        "opt": {"enum": ["a", None, False]},
        "kind": {"type": "string"},
    },
    "allOf": [
        {"if": {"properties": {"kind": {"const": "x"}}, "required": ["kind"]}, "then": {"required": ["all"]}},
        {"if": {"properties": {"kind": {"const": "y"}}}, "else": {"not": {"required": ["no"]}}},
    ],
}
_COMBINATOR_REFERENCE = Draft202012Validator(COMBINATOR_SCHEMA)
_COMBINATOR_FAST = compile_schema(
    COMBINATOR_SCHEMA, conforms=_CHECKER.conforms, delegate=lambda s: pytest.fail("delegated")
)
_TREES = st.recursive(
    st.fixed_dictionaries({}, optional={"v": _SMALL}),
    lambda kids: st.fixed_dictionaries({}, optional={"v": _SMALL, "kids": st.lists(kids, max_size=2)}),
    max_leaves=6,
)


@settings(max_examples=800)
@given(
    st.dictionaries(
        st.sampled_from(["all", "any", "one", "no", "flag", "opt", "kind", "extra"]),
        _SMALL | st.sampled_from(["x", "y"]),
    ),
    st.none() | _TREES,
)
def test_references_and_combinators_agree_with_jsonschema(doc: dict[str, Any], tree: Any) -> None:
    if tree is not None:
        doc = {**doc, "tree": tree}
    assert _COMBINATOR_FAST(doc) == _COMBINATOR_REFERENCE.is_valid(doc)


def test_a_constant_true_is_not_one_and_a_reference_elsewhere_is_not_compiled() -> None:
    from neurocds.facts.fastschema import Unsupported, _compile, _Resource

    assert _COMBINATOR_FAST({"flag": True}) and not _COMBINATOR_FAST({"flag": 1})
    assert not _COMBINATOR_FAST({"opt": 0}) and _COMBINATOR_FAST({"opt": None})
    for schema in ({"$ref": "other.json#/x"}, {"const": 1}, {"enum": [[1]]}):
        with pytest.raises(Unsupported):
            _compile(schema, _CHECKER.conforms, lambda s: pytest.fail("delegated"), _Resource(schema))
