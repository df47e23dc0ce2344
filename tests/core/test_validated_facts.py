"""A document parsed and validated once (FactsValidator.parse_valid) is evaluated without a second parse."""

from __future__ import annotations

import copy
import json
import pickle
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


def test_the_validator_takes_its_own_document_back_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = FactsValidator(BASE)
    checked = validator.parse_valid(json.dumps(DOC).encode())
    assert isinstance(checked, Mapping) and checked == DOC and checked["patient"]["id"] == "v-1"
    assert not hasattr(checked, "__setitem__")
    other = FactsValidator(BASE)

    def judged(*args: object, **kwargs: object) -> None:
        raise AssertionError("judged again")

    # Neither parsed nor validated again by its own validator; judged afresh by any other.
    monkeypatch.setattr(FactsValidator, "_violations", judged)
    assert validator.parse_and_validate(checked) == DOC
    with pytest.raises(AssertionError, match="judged again"):
        other.parse_and_validate(checked)


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


LISTS = {
    **DOC,
    "medications": [{"name": "drug a", "class": "immune_checkpoint_inhibitor"}],
    "history": {"cancer": True},
}


def test_nobody_but_the_validator_can_make_one() -> None:
    validator = FactsValidator(BASE)
    with pytest.raises(TypeError, match="parse_valid"):
        ValidatedFacts({"facts_version": "1"}, validator)  # never validated: refused
    with pytest.raises(TypeError, match="subclassed"):

        class Forged(ValidatedFacts):  # type: ignore[misc]  # @final: the point is that it fails
            pass

    checked = validator.parse_valid(json.dumps(DOC))
    with pytest.raises(AttributeError):
        checked._document = {"facts_version": "1"}  # type: ignore[misc]  # swapping the document
    with pytest.raises(AttributeError):
        checked._validator = FactsValidator(BASE)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del checked._document


def test_its_members_are_read_only_all_the_way_down() -> None:
    checked = FactsValidator(BASE).parse_valid(json.dumps(LISTS))
    with pytest.raises(TypeError):
        checked["patient"]["id"] = "someone-else"
    with pytest.raises(TypeError):
        checked["medications"][0]["class"] = "other"
    with pytest.raises((TypeError, AttributeError)):
        checked["medications"].append({"name": "drug b"})
    with pytest.raises((TypeError, AttributeError)):
        checked.get("medications")[0]["class"] = "other"
    for _, value in checked.items():  # every way of reading a member gives a view
        with pytest.raises((TypeError, AttributeError)):
            value.clear()
    assert checked == LISTS and checked.to_dict() == LISTS and copy.deepcopy(checked) is checked
    mine = checked.to_dict()  # the caller's own copy: changing it changes nothing validated
    mine["patient"]["id"] = "x"
    mine["medications"].append({"name": "drug b"})
    assert checked == LISTS
    assert pickle.loads(pickle.dumps(checked)) == LISTS  # elsewhere a plain dict, judged afresh there
    assert type(pickle.loads(pickle.dumps(checked))) is dict


@pytest.mark.parametrize("backend", ["durable", "reference"])
def test_what_callers_are_handed_never_reaches_the_validated_document(backend: str) -> None:
    """The validated dict is the engine's to read, nobody's to change: what ``validate`` and a
    result hand out are copies, so a ValidatedFacts evaluated again is still what was validated."""
    engine = Engine(packs=BUILTIN_PACKS, backend=backend)
    doc = LISTS
    text = json.dumps(doc)
    checked = engine.validator.parse_valid(text)
    first = engine.evaluate(checked).to_dict()
    for handed in (engine.validate(checked), engine.validator.parse_and_validate(checked)):
        handed["medications"].clear()
        handed["patient"]["id"] = "someone-else"
    for finding in first["findings"]:  # a reason cites the medication list: a copy of it
        for item in finding["because"]:
            if isinstance(item.get("value"), list):
                for entry in item["value"]:
                    entry.clear()
                item["value"].clear()
    assert any(isinstance(i.get("value"), list) for f in first["findings"] for i in f["because"])
    again = engine.evaluate(checked).to_dict()
    fresh = engine.evaluate(text).to_dict()
    assert checked == doc and again["facts_sha256"] == fresh["facts_sha256"]
    assert {k: again[k] for k in again if k not in VOLATILE} == {k: fresh[k] for k in fresh if k not in VOLATILE}
