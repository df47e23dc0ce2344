"""The same facts give the same result document: twice, in two engines, in any key order.

Only ``evaluation_id`` and ``evaluated_at`` may differ. Reordering the members of the
facts document (or writing it as text with other whitespace) changes neither the
``facts_sha256`` nor anything else in the result.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

pytest.importorskip("durable_rules_engine")

from neurocds import Engine
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

VOLATILE = ("evaluation_id", "evaluated_at")

RULES = [
    rule("dt.weak", {"derived": "pattern.leg_weakness"}, urgency="urgent"),
    rule("dt.both", {"all": [{"derived": "pattern.paraparesis"}, {"fact": "symptoms.back_pain", "known": False}]}),
    rule(
        "dt.low_k", {"any": [{"fact": "labs.potassium_mmol_l", "lt": 3.0}, {"fact": "labs.sodium_mmol_l", "lt": 125}]}
    ),
    rule("dt.chain", {"all": [{"finding": "dt.low_k"}, {"finding": "dt.weak"}]}, urgency="emergency"),
    rule("dt.side", {"derived": "pattern.hemiparesis", "eq": "left"}, derive="dt.left"),
    rule("dt.statin", {"any_item": "medications", "where": {"field": "name", "in": ["Atorvastatin", "Ibuprofène"]}}),
    rule("dt.quiet", {"fact": "exam.muscle_wasting", "is_not": True}, urgency="info"),
]

DOCUMENTS: list[dict[str, Any]] = [
    {"facts_version": "1", "patient": {"id": "empty"}},
    {
        "facts_version": "1",
        "patient": {"id": "Zoë", "age_years": 71.5, "sex": "female"},
        "strength": {"left_leg": 3, "right_leg": 2, "left_arm": 5, "right_arm": 5},
        "symptoms": {"urinary_retention": True, "fever": False},
        "labs": {"potassium_mmol_l": 2.5, "sodium_mmol_l": 60.00001, "tsh_mu_l": 1e-05, "ck_u_l": 1234567.125},
        "medications": [{"name": "Ibuprofène", "class": "other"}, {"name": "Atorvastatin", "class": "statin"}],
        "exam": {"reflexes_legs": "brisk", "plantar_response": "extensor", "muscle_wasting": False},
    },
    {
        "facts_version": "1",
        "patient": {"id": "p2"},
        "strength": {"left_leg": 4, "left_arm": 4, "right_arm": 5, "right_leg": 5},
        "face_weakness": "right",
        "onset": {"tempo": "sudden", "hours_since_onset": 2.5e-07},
        "recorded_at": "2024-05-01T10:00:00+02:00",
    },
    {
        "facts_version": "1",
        "patient": {"id": "p3"},
        "strength": {"right_leg": 5},
        "labs": {"sodium_mmol_l": 124.99999999999999},
        "medications": [],
        "history": {"diabetes": True, "cancer": False},
    },
]


def stripped(result: Any) -> dict[str, Any]:
    data = json.loads(result.to_json())
    for key in VOLATILE:
        data.pop(key)
    return data


def reordered(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's members in a shuffled order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: reordered(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [reordered(v, rng) for v in value]
    return value


def make_engine(tmp_path, **kw: Any) -> Engine:
    plugin = inline_pack(tmp_path, "dt", "dt", RULES, depends_on=["weakness-pattern"])
    engine = Engine(plugins=[("dt", plugin)], packs=["weakness-pattern", "dt"], **kw)
    assert len(engine.rules) > len(RULES)
    return engine


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Engine]:
    return (make_engine(tmp_path_factory.mktemp("a")), make_engine(tmp_path_factory.mktemp("b")))


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[d["patient"]["id"] for d in DOCUMENTS])
def test_same_facts_twice_and_in_two_engines_give_identical_results(engines, doc):
    first, second = engines
    a, b, c = first.evaluate(doc), first.evaluate(doc), second.evaluate(doc)
    assert a.evaluation_id != b.evaluation_id
    assert stripped(a) == stripped(b) == stripped(c)
    assert json.dumps(stripped(a), ensure_ascii=False) == json.dumps(stripped(c), ensure_ascii=False)


def test_documents_exercise_findings_derived_facts_and_missing_data(engines):
    results = [engines[0].evaluate(doc) for doc in DOCUMENTS]
    assert any(r.findings for r in results) and any(r.derived for r in results)
    assert any(r.missing_data for r in results) and len({r.to_dict()["facts_sha256"] for r in results}) == len(
        DOCUMENTS
    )


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[d["patient"]["id"] for d in DOCUMENTS])
def test_key_order_and_whitespace_change_nothing(engines, doc):
    engine = engines[0]
    expected = stripped(engine.evaluate(doc))
    rng = random.Random(5)
    variants: list[Any] = [reordered(doc, rng) for _ in range(5)]
    variants += [json.dumps(reordered(doc, rng), indent=3), json.dumps(doc, separators=(",", ":")).encode("utf-8")]
    assert any(list(v) != list(doc) for v in variants if isinstance(v, dict)) or len(doc) < 3
    for variant in variants:
        got = stripped(engine.evaluate(variant))
        assert got["facts_sha256"] == expected["facts_sha256"]
        assert got["findings"] == expected["findings"]
        assert got == expected


def test_both_backends_write_the_same_result_document(tmp_path, engines):
    reference = make_engine(tmp_path, backend="reference")
    for doc in DOCUMENTS:
        durable_result, reference_result = stripped(engines[0].evaluate(doc)), stripped(reference.evaluate(doc))
        assert durable_result.pop("engine")["backend"] == "durable"
        assert reference_result.pop("engine")["backend"] == "reference"
        assert durable_result == reference_result


def test_installed_packs_are_deterministic_across_engines():
    first, second = Engine(packs=BUILTIN_PACKS), Engine(packs=BUILTIN_PACKS)
    for doc in DOCUMENTS:
        assert stripped(first.evaluate(doc)) == stripped(second.evaluate(doc)) == stripped(first.evaluate(doc))
