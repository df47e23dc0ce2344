"""Which unrecorded facts leave a rule undecided is derived from the states when first asked.

The evaluation records node states only; the masks behind missing data and the
why-not trace are derived afterwards, in evaluation order, and must equal the
definition (tests/core/test_plan.py checks every node against an oracle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neurocds import Engine
from neurocds.backends.reference import ReferenceEvaluator
from neurocds.resources import load_schema
from neurocds.rules.ruleset import FactsIndex, RuleBuilder
from neurocds.testing import rule
from neurocds_packs import BUILTIN_PACKS

EXAMPLE = json.loads((Path(__file__).resolve().parents[2] / "examples" / "crossed-stroke.json").read_text())
LABS = ["labs.ck_u_l", "labs.crp_mg_l", "labs.tsh_mu_l", "labs.potassium_mmol_l"]


def build(rules: list[dict[str, Any]]) -> list[Any]:
    doc = {"format": "neurocds-ruleset/1", "pack": "ch", "namespace": "ch", "rules": rules}
    return RuleBuilder(FactsIndex(load_schema("facts.schema.json"))).build(doc, "inline.json")


def test_evaluating_derives_no_masks_until_an_explanation_asks():
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    facts = engine.validate(EXAMPLE)
    run, ev = engine.reference.run(facts, {})
    assert ev._rule_masks is None and ev._found == {}
    missing = engine.explainer.missing_data(run, ev, {})
    assert missing and ev._rule_masks is not None
    undecided = [i for i, state in enumerate(ev.rule_state) if state is None]
    assert undecided and all(ev.rule_unknowns(i) for i in undecided)
    assert not any(ev.rule_unknowns(i) for i, state in enumerate(ev.rule_state) if state is not None)


def test_a_long_chain_of_undecided_conclusions_is_explained_without_deep_recursion():
    # Rule i needs lab i % 4 and rule i-1's conclusion: with no labs recorded every rule is
    # undecided, and the last one's unknowns gather the facts of the whole chain.
    count = 3000
    rules = [rule("ch.r0", {"fact": LABS[0], "gt": 1}, derive="ch.d0")]
    rules += [
        rule(f"ch.r{i}", {"all": [{"fact": LABS[i % 4], "gt": 1}, {"derived": f"ch.d{i - 1}"}]}, derive=f"ch.d{i}")
        for i in range(1, count)
    ]
    evaluator = ReferenceEvaluator(build(rules))
    _, ev = evaluator.run({"labs": {}}, {})
    assert ev.rule_state == [None] * count
    pointers = evaluator.plan.pointers_of(ev.rule_unknowns(count - 1))
    assert pointers == tuple(sorted("/" + lab.replace(".", "/") for lab in LABS))
    assert evaluator.plan.pointers_of(ev.rule_unknowns(0)) == ("/labs/ck_u_l",)
    # Recording the first lab decides the chain's first rule; the rest still wait on the others.
    _, ev = evaluator.run({"labs": {"ck_u_l": 0}}, {})
    assert ev.rule_state[0] is False and ev.rule_unknowns(0) == 0
    assert ev.rule_state[1:] == [False] * (count - 1)  # each needs its predecessor, now false


def test_a_computed_fact_still_decides_a_conclusion_that_one_rule_also_concludes():
    # References to a conclusion of one rule read that rule's state directly, unless a
    # pack computed a fact of that name: then the computed value decides, as ever.
    rules = [
        rule("ch.derive", {"fact": LABS[0], "gt": 1}, derive="ch.d"),
        rule("ch.alone", {"derived": "ch.d"}),
        rule("ch.grouped", {"all": [{"derived": "ch.d"}, {"fact": LABS[1], "known": False}]}),
    ]
    evaluator = ReferenceEvaluator(build(rules))
    assert evaluator.run({"labs": {}}, {})[1].rule_state == [None, None, None]
    assert evaluator.run({"labs": {"ck_u_l": 2}}, {})[1].rule_state == [True, True, True]
    for computed, expected in (({"ch.d": True}, True), ({"ch.d": False}, False)):
        run, ev = evaluator.run({"labs": {}}, computed)
        assert ev.rule_state == [None, expected, expected]
        assert run.fired == ([1, 2] if expected else [])
    # A computed fact of another name leaves the direct reading on.
    assert evaluator.run({"labs": {"ck_u_l": 2}}, {"ch.other": True})[1].rule_state == [True, True, True]
