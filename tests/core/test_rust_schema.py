"""jsonschema-rs answers the yes/no facts check and agrees with jsonschema, formats included.

tests/test_fastschema.py checks FactsValidator.is_valid against jsonschema on generated
valid and mutated documents (with pack extensions); these tests make sure that path is
jsonschema-rs, and add what it is most likely to judge differently: formats, strings
near the patterns, numbers beyond 64 bits.
"""

from __future__ import annotations

import json
from typing import Any

from example_docs import examples_with_unknowns
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from neurocds.facts.validation import FactsValidator, make_format_checker
from neurocds.resources import load_schema

BASE = load_schema("facts.schema.json")
VALIDATOR = FactsValidator(BASE)
REFERENCE = Draft202012Validator(BASE, format_checker=make_format_checker())


def test_the_yes_no_check_is_jsonschema_rs():
    assert VALIDATOR._fast is not None and "compile_rust" in VALIDATOR._fast.__qualname__


def test_the_benchmark_documents_are_valid_for_both():
    for doc in examples_with_unknowns(600, seed=7, drop=0.3):
        doc = json.loads(json.dumps(doc))
        assert VALIDATOR.is_valid(doc) and REFERENCE.is_valid(doc)


_DATE_TIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})?\Z"
    ),
    st.text(max_size=30),
)


def _doc(**members: Any) -> dict[str, Any]:
    return {"facts_version": "1", "patient": {"id": "p-1"}, **members}


@seed(29)
@settings(max_examples=1500, deadline=None)
@given(_DATE_TIMES)
def test_date_time_formats_agree(value: str) -> None:
    doc = _doc(recorded_at=value)
    assert VALIDATOR.is_valid(doc) == REFERENCE.is_valid(doc)


@seed(31)
@settings(max_examples=800, deadline=None)
@given(
    st.one_of(
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.none(),
        st.booleans(),
    ),
    st.sampled_from(["age_years", "sex", "id"]),
)
def test_scalars_in_the_patient_object_agree(value: Any, member: str) -> None:
    doc = _doc(patient={"id": "p-1", member: value})
    assert VALIDATOR.is_valid(doc) == REFERENCE.is_valid(doc)
    assert (VALIDATOR.violations(doc) == []) == REFERENCE.is_valid(doc)
