"""FactsValidator: every violation at once, pointers, extensions, date-time, fast path."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from jsonschema.exceptions import SchemaError
from schema_fixtures import PACK_SCHEMA, REF_PACK_SCHEMA

from neurocds.errors import FactsValidationError, PackLoadError
from neurocds.facts.strictjson import ParseLimits, sha256_canonical
from neurocds.facts.validation import FactsValidator
from neurocds.resources import load_schema

BASE = load_schema("facts.schema.json")


def minimal(**extra: Any) -> dict[str, Any]:
    return {"facts_version": "1", "patient": {"id": "p-1"}, **extra}


@pytest.fixture(scope="module")
def validator() -> FactsValidator:
    return FactsValidator(BASE)


@pytest.fixture(scope="module")
def with_packs() -> FactsValidator:
    return FactsValidator(BASE, {"my-pack": PACK_SCHEMA, "ref-pack": REF_PACK_SCHEMA})


def pairs(v: FactsValidator, doc: Any) -> list[tuple[str, str]]:
    return [(x.pointer, x.code) for x in v.violations(doc)]


# --- every violation at once ----------------------------------------------------------

MANY_PROBLEMS = {
    "facts_version": "2",
    "patient": {"age_years": 200, "sex": "F"},
    "strength": {"left_leg": 6, "right_leg": True},
    "labs": {"potassium_mmol_l": "4.1", "sodium_mmol_l": -1},
    "medications": [
        {"name": "a", "class": "statin"},
        {"name": "b", "class": "antibiotic"},
        {"class": "other", "dose": "5mg"},
    ],
    "symptoms": {"back_pain": "yes"},
    "recorded_at": "yesterday",
    "bogus": 1,
}


def test_reports_every_problem_with_pointer_sorted(validator: FactsValidator) -> None:
    assert pairs(validator, MANY_PROBLEMS) == [
        ("/bogus", "additional_property"),
        ("/facts_version", "const"),
        ("/labs/potassium_mmol_l", "type"),
        ("/labs/sodium_mmol_l", "range"),
        ("/medications/1/class", "enum"),
        ("/medications/2/dose", "additional_property"),
        ("/medications/2/name", "required"),
        ("/patient/age_years", "range"),
        ("/patient/id", "required"),
        ("/patient/sex", "enum"),
        ("/recorded_at", "format"),
        ("/strength/left_leg", "range"),
        ("/strength/right_leg", "type"),
        ("/symptoms/back_pain", "type"),
    ]


def test_violation_details(validator: FactsValidator) -> None:
    by_pointer = {v.pointer: v for v in validator.violations(MANY_PROBLEMS)}
    assert (by_pointer["/strength/left_leg"].expected, by_pointer["/strength/left_leg"].found) == (
        "integer 0..5",
        "integer 6",
    )
    assert by_pointer["/strength/right_leg"].found == "boolean true"
    assert by_pointer["/labs/sodium_mmol_l"].expected == "number 60..260"
    assert by_pointer["/labs/potassium_mmol_l"].found == 'string "4.1"'
    assert by_pointer["/patient/sex"].expected == "one of: female, male, other, unknown"
    assert by_pointer["/patient/id"].expected == "string 1..128 characters"
    assert by_pointer["/patient/id"].found == "absent"
    assert by_pointer["/facts_version"].expected == 'exactly "1"'
    assert "RFC 3339" in (by_pointer["/recorded_at"].expected or "")


def test_messages_never_contain_document_values(validator: FactsValidator) -> None:
    for v in validator.violations(MANY_PROBLEMS):
        for secret in ("antibiotic", "5mg", "yesterday", "4.1", "200"):
            assert secret not in v.message, v


def test_found_is_truncated(validator: FactsValidator) -> None:
    (v,) = validator.violations(minimal(face_weakness="x" * 500))
    assert v.found is not None and v.found.startswith('string "xxx') and len(v.found) <= len("string ") + 60


def test_booleans_are_not_numbers(validator: FactsValidator) -> None:
    doc = minimal(patient={"id": "p", "age_years": True}, onset={"hours_since_onset": False})
    assert pairs(validator, doc) == [("/onset/hours_since_onset", "type"), ("/patient/age_years", "type")]


def test_pointer_tokens_are_escaped(validator: FactsValidator) -> None:
    doc = minimal(symptoms={"a/b": True, "m~n": True})
    assert pairs(validator, doc) == [
        ("/symptoms/a~1b", "additional_property"),
        ("/symptoms/m~0n", "additional_property"),
    ]


def test_array_indexes_sort_numerically(validator: FactsValidator) -> None:
    meds = [{"name": "x", "class": "other"} for _ in range(12)]
    meds[2]["class"] = meds[10]["class"] = "nope"
    assert pairs(validator, minimal(medications=meds)) == [
        ("/medications/2/class", "enum"),
        ("/medications/10/class", "enum"),
    ]


def test_non_object_document(validator: FactsValidator) -> None:
    assert pairs(validator, ["not", "an", "object"]) == [("", "type")]


# --- Python documents that are not plain JSON ----------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (minimal(labs={"ck_u_l": float("nan")}), [("/labs/ck_u_l", "non_finite")]),
        (minimal(labs={"ck_u_l": float("inf")}), [("/labs/ck_u_l", "non_finite")]),
        (minimal(labs={"ck_u_l": Decimal("1.5")}), [("/labs/ck_u_l", "type")]),
        (minimal(medications=({"name": "x", "class": "other"},)), [("/medications", "type")]),
        # What JSON cannot carry is reported alone, as the JSON path's parse problems are.
        (minimal(symptoms={1: True}), [("/symptoms/1", "type")]),
    ],
)
def test_rejects_python_values_that_are_not_json(
    validator: FactsValidator, doc: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert sorted(pairs(validator, doc)) == sorted(expected)


def test_nan_in_untyped_extension_field_is_rejected() -> None:
    v = FactsValidator(BASE, {"open": {}})
    assert pairs(v, minimal(extensions={"open": {"x": [float("nan")], "y": {1, 2}}})) == [
        ("/extensions/open/x/0", "non_finite"),
        ("/extensions/open/y", "type"),
    ]


def test_deep_python_document_is_rejected_without_recursion_error() -> None:
    v = FactsValidator(BASE, {"open": {}}, limits=ParseLimits(max_depth=64))
    deep: list[Any] = []
    for _ in range(20_000):
        deep = [deep]
    found = pairs(v, minimal(extensions={"open": deep}))
    assert len(found) == 1 and found[0][1] == "depth"
    assert found[0][0].startswith("/extensions/open/0/0")


# --- validate / parse_and_validate ---------------------------------------------------


def test_validate_returns_the_document(validator: FactsValidator) -> None:
    doc = minimal(recorded_at="2026-11-24T10:00:00+01:00")
    assert validator.validate(doc) is doc


def test_validate_raises_with_hash_when_canonicalisable(validator: FactsValidator) -> None:
    with pytest.raises(FactsValidationError) as info:
        validator.validate(MANY_PROBLEMS)
    assert info.value.facts_sha256 == sha256_canonical(MANY_PROBLEMS)
    assert len(info.value.violations) == 14
    with pytest.raises(FactsValidationError) as info:
        validator.validate(minimal(labs={"ck_u_l": float("nan")}))
    assert info.value.facts_sha256 is None


def test_parse_and_validate_inputs(validator: FactsValidator) -> None:
    doc = minimal(strength={"left_leg": 4})
    text = json.dumps(doc)
    assert validator.parse_and_validate(text) == doc
    assert validator.parse_and_validate(text.encode()) == doc
    assert validator.parse_and_validate(MappingProxyType(doc)) == doc
    # Not a mapping: judged as a document, as the JSON text "42" would be.
    with pytest.raises(FactsValidationError) as info:
        validator.parse_and_validate(42)  # type: ignore[arg-type]
    assert [(v.pointer, v.code) for v in info.value.violations] == [("", "type")]


def test_parse_and_validate_rejects_parse_problems_first(validator: FactsValidator) -> None:
    text = '{"facts_version": "1", "patient": {"id": "a", "id": "b"}, "labs": {"ck_u_l": NaN}}'
    with pytest.raises(FactsValidationError) as info:
        validator.parse_and_validate(text)
    assert [(v.pointer, v.code) for v in info.value.violations] == [
        ("/labs/ck_u_l", "non_finite"),
        ("/patient/id", "duplicate_key"),
    ]
    assert info.value.facts_sha256 is None


def test_parse_and_validate_reports_schema_problems(validator: FactsValidator) -> None:
    with pytest.raises(FactsValidationError) as info:
        validator.parse_and_validate(b'{"facts_version": "1", "patient": {}}')
    assert [(v.pointer, v.code) for v in info.value.violations] == [("/patient/id", "required")]


# --- recorded_at: date-time really checked -------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2026-11-24T10:00:00+01:00", True),
        ("2026-11-24T10:00:00Z", True),
        ("2026-11-24t10:00:00.5z", True),
        ("2024-02-29T00:00:00-12:00", True),
        ("2000-02-29T00:00:00Z", True),
        ("2016-12-31T23:59:60Z", True),
        ("2017-01-01T00:59:60+01:00", True),
        ("2026-02-30T10:00:00Z", False),
        ("2100-02-29T00:00:00Z", False),
        ("2026-04-31T00:00:00Z", False),
        ("2026-13-01T00:00:00Z", False),
        ("2026-11-24T24:00:00Z", False),
        ("2026-11-24T10:60:00Z", False),
        ("2016-12-31T12:00:60Z", False),
        ("2026-11-24T10:00:00+24:00", False),
        ("2026-11-24T10:00:00", False),
        ("2026-11-24 10:00:00Z", False),
        ("2026-11-24T10:00:00Z\n", False),
        ("2026-11-24", False),
        ("yesterday", False),
        ("\uff12\uff10\uff12\uff16-11-24T10:00:00Z", False),  # fullwidth digits
        ("2026-11-24T10:00:0\u0660Z", False),
    ],
)
def test_recorded_at_date_time(validator: FactsValidator, value: str, ok: bool) -> None:
    assert pairs(validator, minimal(recorded_at=value)) == ([] if ok else [("/recorded_at", "format")])


# --- extensions -------------------------------------------------------------------


def test_extension_sub_schemas_accepted_under_their_pack(with_packs: FactsValidator) -> None:
    doc = minimal(extensions={"my-pack": {"score": 3}, "ref-pack": {"grade": 2, "either": True}})
    assert with_packs.violations(doc) == []


def test_extension_sub_schemas_reject_bad_values(with_packs: FactsValidator) -> None:
    doc = minimal(extensions={"my-pack": {"score": -1, "x": 1}, "ref-pack": {"grade": 4, "either": 1}})
    assert pairs(with_packs, doc) == [
        ("/extensions/my-pack/score", "range"),
        ("/extensions/my-pack/x", "additional_property"),
        ("/extensions/ref-pack/either", "any_of"),
        ("/extensions/ref-pack/grade", "range"),
    ]


def test_unknown_extension_key_rejected(with_packs: FactsValidator, validator: FactsValidator) -> None:
    assert pairs(with_packs, minimal(extensions={"other-pack": {}})) == [
        ("/extensions/other-pack", "additional_property")
    ]
    assert pairs(validator, minimal(extensions={"my-pack": {"score": 3}})) == [
        ("/extensions/my-pack", "additional_property")
    ]


def test_pack_schema_may_declare_the_2020_12_dialect() -> None:
    for dialect in ("https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2020-12/schema#"):
        v = FactsValidator(BASE, {"p": {**PACK_SCHEMA, "$schema": dialect}})
        assert pairs(v, minimal(extensions={"p": {"score": "x"}})) == [("/extensions/p/score", "type")]


def test_composition_never_mutates_inputs() -> None:
    base, pack = copy.deepcopy(BASE), copy.deepcopy(REF_PACK_SCHEMA)
    v = FactsValidator(base, {"ref-pack": pack})
    assert base == BASE and pack == REF_PACK_SCHEMA
    composed = v.schema
    assert composed["properties"]["extensions"]["properties"]["ref-pack"]["$defs"] == pack["$defs"]
    composed["properties"].clear()
    assert v.schema["properties"], "schema must be a copy"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "nonsense"},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        {"properties": {"x": {"minimum": "zero"}}},
    ],
)
def test_invalid_pack_schema_is_a_pack_load_error(bad: dict[str, Any]) -> None:
    with pytest.raises(PackLoadError) as info:
        FactsValidator(BASE, {"bad-pack": bad})
    assert info.value.pack == "bad-pack"


def test_invalid_base_schema_raises_schema_error() -> None:
    with pytest.raises(SchemaError):
        FactsValidator({**BASE, "type": "nonsense"})
