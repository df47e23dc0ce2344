"""Result documents: schema, tri-state explanations, missing data, trace, hooks."""

from __future__ import annotations

import jsonschema
import pytest
from referencing import Registry, Resource

from neurocds import Engine
from neurocds.hookspecs import ComputedFacts
from neurocds.resources import load_schema
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

BASE = {"facts_version": "1", "patient": {"id": "p"}}
RET = {"fact": "symptoms.urinary_retention", "eq": True}


def result_validator() -> jsonschema.Draft202012Validator:
    trace = load_schema("trace.schema.json")
    registry = Registry().with_resource(trace["$id"], Resource.from_contents(trace))
    return jsonschema.Draft202012Validator(
        load_schema("result.schema.json"), registry=registry, format_checker=jsonschema.FormatChecker()
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packs")
    rules = [
        rule(
            "t.emergency", {"all": [{"derived": "pattern.leg_weakness"}, RET]}, finding="t.bladder", urgency="emergency"
        ),
        rule("t.urgent", {"derived": "pattern.leg_weakness"}, finding="t.bladder", urgency="urgent"),
        rule("t.chain", {"finding": "t.bladder"}, finding="t.follow_up", urgency="info"),
        rule("t.lowk", {"fact": "labs.potassium_mmol_l", "lt": 3.0}, finding="t.low_k", urgency="urgent"),
    ]
    plugin = inline_pack(tmp, "tpack", "t", rules, depends_on=["weakness-pattern"])
    return Engine(plugins=[("tpack", plugin)], packs=["weakness-pattern", "tpack"])


def test_result_validates_against_schema(engine):
    result = engine.evaluate({**BASE, "strength": {"left_leg": 3}, "labs": {"potassium_mmol_l": 2.9}})
    result_validator().validate(result.to_dict())
    assert result.highest_urgency == "urgent"
    assert "not a diagnosis" in result.to_dict()["disclaimer"]


def test_unknown_is_not_false_and_is_named_as_missing(engine):
    unknown = engine.evaluate({**BASE, "strength": {"left_leg": 3}})
    bladder = unknown.finding("t.bladder")
    assert bladder["urgency"] == "urgent"
    assert bladder["unknown"] == ["/symptoms/urinary_retention"]  # would make it an emergency
    absent = engine.evaluate({**BASE, "strength": {"left_leg": 3}, "symptoms": {"urinary_retention": False}})
    assert absent.finding("t.bladder")["unknown"] == []
    present = engine.evaluate({**BASE, "strength": {"left_leg": 3}, "symptoms": {"urinary_retention": True}})
    assert present.finding("t.bladder")["urgency"] == "emergency"
    assert {
        "pointer": "/symptoms/urinary_retention",
        "recorded": True,
        "value": True,
        "test": "symptoms.urinary_retention = true",
    } in present.finding("t.bladder")["because"]


def test_missing_data_lists_unknown_facts_most_urgent_first(engine):
    result = engine.evaluate(BASE)
    pointers = [m["pointer"] for m in result.missing_data]
    assert pointers[0] in ("/strength/left_leg", "/strength/right_leg")
    first = result.missing_data[0]
    assert first["urgency"] == "emergency" and "t.bladder" in first["findings"]
    assert "/labs/potassium_mmol_l" in pointers
    assert result.missing_data[0]["label"]  # the schema's description names the fact


def test_trace_why_not_distinguishes_false_from_unknown(engine):
    trace = engine.evaluate({**BASE, "strength": {"left_leg": 5, "right_leg": 5}}).to_dict()["trace"]
    not_fired = {e["rule"]: e for e in trace["not_fired"]}
    assert not_fired["t.lowk"]["state"] == "unknown"
    assert not_fired["t.lowk"]["unknown_facts"] == ["/labs/potassium_mmol_l"]
    assert not_fired["pattern.leg_weakness"]["state"] == "false"
    assert {c["pointer"] for c in not_fired["pattern.leg_weakness"]["false_conditions"]} == {
        "/strength/left_leg",
        "/strength/right_leg",
    }


def test_forward_chaining_across_findings_and_why_tree(engine):
    result = engine.evaluate({**BASE, "strength": {"right_leg": 4}})
    assert set(result.finding_ids) == {"t.bladder", "t.follow_up"}
    fired = {e["rule"]: e for e in result.to_dict()["trace"]["fired"]}
    assert fired["t.chain"]["because"] == [{"finding": "t.bladder"}]
    assert fired["t.urgent"]["because"] == [{"derived": "pattern.leg_weakness", "value": True}]
    assert fired["pattern.leg_weakness"]["because"][0]["pointer"] == "/strength/right_leg"


def test_computed_facts_hook_feeds_rules(tmp_path):
    def compute(facts):
        age = facts.get("patient", {}).get("age_years")
        if age is None:
            return None
        return ComputedFacts(pack="cf", values={"cf.older": age >= 65}, because={"cf.older": ["/patient/age_years"]})

    plugin = inline_pack(tmp_path, "cf", "cf", [rule("cf.f", {"derived": "cf.older"})], compute=compute)
    engine = Engine(plugins=[("cf", plugin)], entry_points=False)
    old = engine.evaluate({"facts_version": "1", "patient": {"id": "p", "age_years": 70}})
    assert old.finding_ids == ["cf.f"] and old.complete
    assert {
        "name": "cf.older",
        "value": True,
        "pack": "cf",
        "rule": None,
        "computed": True,
        "because": [{"pointer": "/patient/age_years", "recorded": True}],
    } in old.to_dict()["derived"]
    unknown = engine.evaluate({"facts_version": "1", "patient": {"id": "p"}})
    assert unknown.finding_ids == []
    assert unknown.to_dict()["trace"]["not_fired"][0]["state"] == "unknown"


def _evaluate_with_computed(tmp_path, computed: ComputedFacts):
    """BASE evaluated with a pack whose rule tests derived fact cf.k and whose hook returns ``computed``."""
    plugin = inline_pack(tmp_path, "cf", "cf", [rule("cf.f", {"derived": "cf.k"})], compute=lambda facts: computed)
    return Engine(plugins=[("cf", plugin)], entry_points=False).evaluate(BASE)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_computed_fact_fails_its_pack_loudly(tmp_path, value):
    result = _evaluate_with_computed(tmp_path, ComputedFacts(pack="cf", values={"cf.k": value}))
    assert not result.complete and result.finding_ids == []
    (error,) = result.errors
    assert error["pack"] == "cf" and error["stage"] == "compute_facts" and "finite JSON scalar" in error["message"]


def test_a_compute_hook_may_answer_only_for_its_own_packs(tmp_path):
    result = _evaluate_with_computed(tmp_path, ComputedFacts(pack="someone-else", values={"cf.k": True}))
    assert not result.complete and result.finding_ids == []
    assert "one of its own packs" in result.errors[0]["message"]


def test_finding_detail_hook_appends_text_on_both_backends(tmp_path):
    plugin = inline_pack(
        tmp_path,
        "fd",
        "fd",
        [rule("fd.f", {"fact": "onset.hours_since_onset", "lte": 24})],
        finding_detail=lambda fid, rid, facts, derived: f"{facts['onset']['hours_since_onset']} h.",
    )
    for backend in ("durable", "reference"):
        engine = Engine(plugins=[("fd", plugin)], entry_points=False, backend=backend)
        result = engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "onset": {"hours_since_onset": 3}})
        assert result.finding("fd.f")["detail"].endswith("3 h.")
        assert result.to_dict()["engine"]["backend"] == backend


def test_verify_mode_reports_disagreement_loudly(engine, monkeypatch):
    original = engine.durable.run

    def lying_run(*args, **kwargs):
        run = original(*args, **kwargs)
        run.fired = [i for i in run.fired if engine.rules[i].id != "t.lowk"]
        return run

    monkeypatch.setattr(engine.durable, "run", lying_run)
    result = engine.evaluate({**BASE, "labs": {"potassium_mmol_l": 2.0}})
    assert not result.complete
    assert any(e["kind"] == "disagreement" and "t.lowk" in e["message"] for e in result.errors)
    assert "t.low_k" in result.finding_ids  # fail safe: the union is shown, never silently dropped


def _oracle_unknowns(node, ev, rules_unknown):
    """The specification of Explainer.unknowns as a plain recursive walk (the code walks an explicit stack)."""
    from neurocds.rules.conditions import DerivedRef, FactTest, FindingRef, ItemTest

    if ev.state(node) is not None:  # decided, or never reached (UNSET)
        return set()
    if isinstance(node, FactTest | ItemTest):
        return {node.pointer}
    if isinstance(node, DerivedRef | FindingRef):
        out = set()
        for j in ev.evaluator.concluders.get(node.key, ()):
            if ev.rule_state[j] is None:
                out |= rules_unknown(j)
        return out
    out = set()
    for child in node.children():
        out |= _oracle_unknowns(child, ev, rules_unknown)
    return out


def test_flat_unknowns_match_the_recursive_definition_on_the_builtin_packs():
    from example_docs import examples_with_unknowns

    engine = Engine(packs=BUILTIN_PACKS)
    checked = 0
    for doc in examples_with_unknowns(200, seed=3):
        facts = engine.validate(doc)
        _, ev = engine.reference.run(facts, {})

        def oracle(j, ev=ev):
            return _oracle_unknowns(engine.rules[j].when, ev, oracle)

        for index in range(len(engine.rules)):
            assert set(engine.explainer.unknowns(index, ev)) == oracle(index), engine.rules[index].id
            checked += bool(oracle(index))
    assert checked > 1000  # the comparison really covered undecided rules


def test_node_states_runs_the_compute_hooks_as_evaluate_does(tmp_path):
    # One private step (Engine._computed_facts) serves both: computed facts feed the rules, and a
    # pack whose hook failed does not run, for coverage tools as for results.
    def compute(facts):
        age = facts["patient"]["age_years"]
        if age > 110:
            raise ValueError("implausible age")
        return ComputedFacts(pack="cf", values={"cf.older": age >= 65})

    rules = [rule("cf.f", {"derived": "cf.older"}), rule("cf.adult", {"fact": "patient.age_years", "gte": 18})]
    plugin = inline_pack(tmp_path, "cf", "cf", rules, compute=compute)
    engine = Engine(plugins=[("cf", plugin)], entry_points=False)
    order = [r.id for r in engine.rules]
    for age, expected in ((70, {"cf.f", "cf.adult"}), (40, {"cf.adult"}), (120, set())):
        doc = {"facts_version": "1", "patient": {"id": "p", "age_years": age}}
        states = engine.node_states(doc).rule_state
        assert {rid for rid, state in zip(order, states, strict=True) if state is True} == expected
        assert set(engine.evaluate(doc).finding_ids) == expected
    assert states == [None, None]  # the failed pack's rules are not decided, not false


def test_evaluation_ids_are_random_version_4_uuids():
    import uuid

    from neurocds.result import new_evaluation_id

    ids = [new_evaluation_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every other bit is random: each of the 122 takes both values across the sample.
    ors = ands = int(uuid.UUID(ids[0]))
    for text in ids:
        ors, ands = ors | int(uuid.UUID(text)), ands & int(uuid.UUID(text))
    fixed = (0xF << 76) | (0x3 << 62)
    assert (ors ^ ands) | fixed == (1 << 128) - 1


def test_evaluated_at_is_the_utc_time_in_milliseconds_as_datetime_writes_it():
    import time
    from datetime import UTC, datetime

    from neurocds.result import EvaluationClock

    def written(moment: datetime) -> str:  # what evaluate() wrote before the clock kept its second
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    clock = EvaluationClock()
    seconds = set()
    for _ in range(4000):  # across more than one second: the kept text must move on with the clock
        before = written(datetime.now(UTC))
        text = clock.now()
        after = written(datetime.now(UTC))
        assert len(text) == len(before) and before <= text <= after
        seconds.add(text[:19])
        time.sleep(0.0004)
    assert len(seconds) >= 2
