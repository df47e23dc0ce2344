"""What a finding says: every reason behind it, the words of every rule that fired it, readable names."""

from __future__ import annotations

import pytest
from example_docs import examples_with_unknowns
from kleene_oracle import oracle

from neurocds import Engine
from neurocds.explain.reasons import because_item
from neurocds.explain.render import render_result
from neurocds.rules.conditions import All, AnyOf, Not
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

BASE = {"facts_version": "1", "patient": {"id": "p"}}
FLAGS = ("symptoms.urinary_retention", "symptoms.saddle_anaesthesia", "exam.reduced_anal_tone")
ANY_FLAG = {"any": [{"fact": f, "eq": True} for f in FLAGS]}
LOW_K = {"fact": "labs.potassium_mmol_l", "lt": 3.0}
VERY_LOW_K = {"fact": "labs.potassium_mmol_l", "lt": 2.5}
LOW_NA = {"fact": "labs.sodium_mmol_l", "lt": 125}


def _rule(rule_id: str, when: dict, finding: str, urgency: str, title: str, detail: str, step: str) -> dict:
    out = rule(rule_id, when, finding=finding, urgency=urgency)
    out.update(title=title, detail=detail, recommendations=[step])
    return out


@pytest.fixture(scope="module", params=["durable", "reference"])
def engine(request, tmp_path_factory):
    rules = [
        _rule("t.flags", ANY_FLAG, "t.flag", "urgent", "A red flag", "Some red flag is recorded.", "Act on it."),
        _rule("t.k_severe", VERY_LOW_K, "t.panel", "emergency", "K severe", "K is very low.", "Treat K now."),
        _rule("t.k_low", LOW_K, "t.panel", "urgent", "K low", "K is low.", "Treat K."),
        _rule("t.na_low", LOW_NA, "t.panel", "urgent", "Na low", "Na is low.", "Treat Na slowly."),
        _rule(
            "t.unless",
            {
                "all": [
                    {"fact": "symptoms.fasciculations", "eq": True},
                    {"fact": "exam.distal_sensory_loss", "is_not": True},
                ]
            },
            "t.unless",
            "urgent",
            "Unless",
            "Fires unless sensory loss is recorded.",
            "Examine sensation.",
        ),
        _rule("t.route_a", {"fact": "symptoms.ptosis", "eq": True}, "t.route", "info", "By A", "Same.", "Step A."),
        _rule("t.route_b", {"fact": "symptoms.diplopia", "eq": True}, "t.route", "info", "By B", "Same.", "Step B."),
        _rule(
            "t.not_any",
            {"not": {"any": [{"fact": "symptoms.fever", "eq": True}, {"fact": "symptoms.headache", "eq": True}]}},
            "t.neither",
            "info",
            "Neither",
            "Neither is present.",
            "Nothing.",
        ),
        _rule(
            "t.med",
            {"any_item": "medications", "where": {"field": "class", "ne": "other"}},
            "t.drug",
            "routine",
            "A drug",
            "A drug that can weaken.",
            "Review it.",
        ),
    ]
    plugin = inline_pack(tmp_path_factory.mktemp("packs"), "tpack", "t", rules)
    return Engine(plugins=[("tpack", plugin)], packs=["tpack"], backend=request.param, entry_points=False)


def _finding(result, finding_id):
    return next(f for f in result.to_dict()["findings"] if f["id"] == finding_id)


def test_every_true_alternative_of_an_any_is_named_not_only_the_first(engine):
    # `any` stops evaluating at its first true child; the explanation must not stop with it.
    result = engine.evaluate({**BASE, "symptoms": {"urinary_retention": True, "saddle_anaesthesia": True}})
    because = [b["pointer"] for b in _finding(result, "t.flag")["because"]]
    assert because == ["/symptoms/urinary_retention", "/symptoms/saddle_anaesthesia"]
    fired = next(f for f in result.to_dict()["trace"]["fired"] if f["rule"] == "t.flags")
    assert [b["pointer"] for b in fired["because"]] == because


def test_a_negated_any_names_each_false_alternative(engine):
    result = engine.evaluate({**BASE, "symptoms": {"fever": False, "headache": False}})
    because = _finding(result, "t.neither")["because"]
    assert [(b["pointer"], b["value"]) for b in because] == [("/symptoms/fever", False), ("/symptoms/headache", False)]


def test_completing_the_explanation_leaves_the_evaluation_states_alone(engine):
    facts = engine.validate({**BASE, "symptoms": {"urinary_retention": True, "saddle_anaesthesia": True}})
    _, ev = engine.reference.run(facts, {})
    before = list(ev.states)
    engine.explainer.because(engine.rules.index(next(r for r in engine.rules if r.id == "t.flags")), ev)
    assert ev.states == before  # the trace of the rules that did not fire reads these


def test_only_the_medicines_that_pass_the_test_are_the_reason(engine):
    meds = [{"name": "bisoprolol", "class": "other"}, {"name": "furosemide", "class": "loop_or_thiazide_diuretic"}]
    result = engine.evaluate({**BASE, "medications": meds})
    (item,) = _finding(result, "t.drug")["because"]
    assert item["value"] == [{"name": "furosemide", "class": "loop_or_thiazide_diuretic"}]


def test_a_finding_fired_by_several_rules_carries_the_words_of_each(engine):
    result = engine.evaluate({**BASE, "labs": {"potassium_mmol_l": 2.8, "sodium_mmol_l": 120}})
    panel = _finding(result, "t.panel")
    assert panel["title"] == "K low; Na low"
    assert panel["detail"] == "K is low. Na is low."
    assert panel["recommendations"] == ["Treat K.", "Treat Na slowly."]
    assert panel["urgency"] == "urgent" and sorted(panel["rules"]) == ["t.k_low", "t.na_low"]


def test_a_milder_rule_on_the_same_fact_as_a_severe_one_adds_no_words(engine):
    result = engine.evaluate({**BASE, "labs": {"potassium_mmol_l": 2.3, "sodium_mmol_l": 120}})
    panel = _finding(result, "t.panel")
    assert panel["urgency"] == "emergency" and panel["rule"] == "t.k_severe"
    assert panel["title"] == "K severe; Na low"  # K low repeats K severe in weaker words
    assert panel["recommendations"] == ["Treat K now.", "Treat Na slowly."]
    assert sorted(panel["rules"]) == ["t.k_low", "t.k_severe", "t.na_low"]  # still listed for the audit
    text = render_result(result.to_dict(), label_of=engine.label_of)
    # Both potassium tests read the same value: the clinician sees it once.
    assert text.count("Potassium (mmol/L): 2.3") == 1


def test_rules_saying_the_same_thing_by_two_routes_give_one_title(engine):
    result = engine.evaluate({**BASE, "symptoms": {"ptosis": True, "diplopia": True}})
    route = _finding(result, "t.route")
    assert (route["title"], route["detail"]) == ("By A", "Same.")
    assert route["recommendations"] == ["Step A.", "Step B."]  # each route's own steps are kept


def test_a_finding_that_rests_on_an_unrecorded_fact_names_it_as_what_would_change_it(engine):
    fired = _finding(engine.evaluate({**BASE, "symptoms": {"fasciculations": True}}), "t.unless")
    assert fired["unknown"] == ["/exam/distal_sensory_loss"]  # recording it could withdraw the finding
    examined = {**BASE, "symptoms": {"fasciculations": True}, "exam": {"distal_sensory_loss": False}}
    assert _finding(engine.evaluate(examined), "t.unless")["unknown"] == []


def test_an_enumerated_value_reads_as_words():
    from neurocds.explain.render import value_words

    assert value_words("nerve_root_compression") == "nerve root compression"
    # Only lower-case codes with underscores: a side, or free text such as a name, stays as it is.
    assert value_words("left") == "left" and value_words("Bryan_B") == "Bryan_B"


def test_facts_are_named_by_the_schema_titles_in_text(engine):
    result = engine.evaluate({**BASE, "symptoms": {"urinary_retention": True}})
    text = render_result(result.to_dict(), label_of=engine.label_of)
    assert "Because: Urinary retention: yes" in text
    # Without a label source the pointer is still readable.
    assert "Because: symptoms: urinary retention: yes" in render_result(result.to_dict())


class _Conclusions:
    """The evaluation's conclusions, read as the oracle reads its reference states."""

    def __init__(self, ev):
        self.ev = ev

    def get(self, key):
        return self.ev.ref_state(key)


def _state(node, facts, ev):
    """Kleene state without short-circuits: every child is looked at (leaves by the oracle)."""
    if isinstance(node, Not):
        inner = _state(node.item, facts, ev)
        return None if inner is None else not inner
    if isinstance(node, All | AnyOf):
        states = [_state(c, facts, ev) for c in node.items]
        stop = isinstance(node, AnyOf)
        if stop in states:
            return stop
        return None if None in states else not stop
    return oracle(node, facts, _Conclusions(ev), {})


def _all_support(node, want, facts, ev):
    """Every leaf that makes ``node`` evaluate to ``want``."""
    if _state(node, facts, ev) is not want:
        return []
    if isinstance(node, Not):
        return _all_support(node.item, not want, facts, ev)
    if isinstance(node, All | AnyOf):
        return [leaf for c in node.items for leaf in _all_support(c, want, facts, ev)]
    return [node]


def _key(item):
    return repr([item.get(k) for k in ("pointer", "test", "derived", "value", "finding")])


def test_explanations_name_every_supporting_leaf_on_the_builtin_packs():
    engine = Engine(packs=BUILTIN_PACKS, verify=False)
    checked = 0
    for doc in examples_with_unknowns(150, seed=11):
        facts = engine.validate(doc)
        run, ev = engine.reference.run(facts, {})
        for index in sorted(run.fired_set()):
            expected = [because_item(n, facts) for n in _all_support(engine.rules[index].when, True, facts, ev)]
            got = engine.explainer.because(index, ev)
            assert sorted(map(_key, got)) == sorted(set(map(_key, expected))), engine.rules[index].id
            checked += 1
    assert checked > 500
