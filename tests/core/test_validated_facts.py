"""A document parsed and validated once (FactsValidator.parse_valid) is evaluated without a second parse."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from schema_fixtures import PACK_SCHEMA

from neurocds import Engine
from neurocds.errors import FactsValidationError
from neurocds.facts.validation import FactsValidator, ValidatedFacts
from neurocds.resources import load_schema
from neurocds_packs import BUILTIN_PACKS

BASE = load_schema("facts.schema.json")
DOC = {"facts_version": "1", "patient": {"id": "v-1"}, "strength": {"left_leg": 3, "right_leg": 3}}
VOLATILE = ("evaluation_id", "evaluated_at")


def test_the_validator_takes_its_own_document_back_as_it_is() -> None:
    validator = FactsValidator(BASE)
    checked = validator.parse_valid(json.dumps(DOC).encode())
    assert isinstance(checked, Mapping) and dict(checked) == DOC and checked["patient"]["id"] == "v-1"
    assert not hasattr(checked, "__setitem__")
    # The same dict each time: neither copied (as any other Mapping is) nor walked again.
    assert validator.parse_and_validate(checked) is validator.parse_and_validate(checked)
    other = FactsValidator(BASE)
    assert other.parse_and_validate(checked) is not other.parse_and_validate(checked)
    assert other.parse_and_validate(checked) == DOC


def test_another_validator_judges_it_afresh() -> None:
    with_pack = FactsValidator(BASE, {"my-pack": PACK_SCHEMA})
    doc = {**DOC, "extensions": {"my-pack": {"score": 3}}}
    checked = with_pack.parse_valid(json.dumps(doc))
    assert with_pack.parse_and_validate(checked) == doc
    with pytest.raises(FactsValidationError) as info:
        FactsValidator(BASE).parse_and_validate(checked)  # no such pack here: its extension is refused
    assert [v.pointer for v in info.value.violations] == ["/extensions/my-pack"]


@pytest.mark.parametrize("text", [b"{not json", b'{"facts_version":"1"}', b'{"a":1,"a":2}'])
def test_parse_valid_refuses_what_the_engine_refuses(text: bytes) -> None:
    validator = FactsValidator(BASE)
    with pytest.raises(FactsValidationError) as refused:
        validator.parse_valid(text)
    with pytest.raises(FactsValidationError) as also:
        validator.parse_and_validate(text)
    assert refused.value.violations == also.value.violations


def test_the_engine_evaluates_it_as_it_would_the_text() -> None:
    engine = Engine(packs=BUILTIN_PACKS)
    text = json.dumps(DOC).encode()
    checked = engine.validator.parse_valid(text)
    assert isinstance(checked, ValidatedFacts)
    once, twice = engine.evaluate(checked).to_dict(), engine.evaluate(text).to_dict()
    assert {k: v for k, v in once.items() if k not in VOLATILE} == {k: v for k, v in twice.items() if k not in VOLATILE}
