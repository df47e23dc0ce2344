"""durable_rules' alpha-node limits are counted per test node, as rete.c builds them.

The compiler used to count each whole condition chain as a child of one node and
refused rule sets of ~500 varied rules that durable_rules loads and runs; it also
missed the forward node each ``any`` adds to the 128-entry list, which does overflow.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds.resources import load_schema
from neurocds.rules.compiler import CompileError, compile_rules, encode
from neurocds.rules.ruleset import FactsIndex, RuleBuilder
from neurocds.testing import inline_pack, rule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
from synthetic_rules import synthetic_rules

durable_rules_engine = pytest.importorskip("durable_rules_engine")


def build(rules: list[dict[str, Any]], namespace: str = "hz") -> list[Any]:
    doc = {"format": "neurocds-ruleset/1", "pack": namespace, "namespace": namespace, "rules": rules}
    return RuleBuilder(FactsIndex(load_schema("facts.schema.json"))).build(doc, "inline.json")


def varied_chains(n: int) -> list[dict[str, Any]]:
    # 30 distinct first tests, each followed by up to n/30 distinct second tests: n chains, no crowded node.
    return [
        rule(f"hz.r{i}", {"all": [{"fact": "labs.ck_u_l", "gte": i % 30}, {"fact": "labs.crp_mg_l", "lt": i + 1}]})
        for i in range(n)
    ]


def shared_alternative(n: int) -> list[dict[str, Any]]:
    # Every "any" ends one alternative on the same node, which gets one forward node per rule.
    return [
        rule(
            f"hz.r{i}",
            {
                "all": [
                    {"fact": "labs.ck_u_l", "gte": 1},
                    {"any": [{"fact": "labs.crp_mg_l", "gt": 5}, {"fact": "labs.tsh_mu_l", "gt": i}]},
                ]
            },
        )
        for i in range(n)
    ]


def test_many_distinct_chains_under_one_prefix_load_on_durable_and_agree_with_reference(tmp_path):
    rules = varied_chains(900)  # 900 chains after the type test: refused as "900 distinct conditions" before
    engines = [
        Engine(plugins=[("hz", inline_pack(tmp_path / b, "hz", "hz", rules))], entry_points=False, backend=b)
        for b in ("durable", "reference")
    ]
    for ck, crp in ((0, 0), (12, 400), (29, 899), (100, 5)):
        doc = {"facts_version": "1", "patient": {"id": "p"}, "labs": {"ck_u_l": ck, "crp_mg_l": crp}}
        durable, reference = (e.evaluate(doc, trace=False) for e in engines)
        assert durable.complete and durable.errors == []
        assert durable.finding_ids == reference.finding_ids
        expected = sum(1 for i in range(900) if ck >= i % 30 and crp < i + 1)
        assert len(durable.finding_ids) == expected


def test_forward_nodes_of_any_count_against_the_128_entry_list_as_durable_rules_does():
    within = compile_rules(build(shared_alternative(127)))
    durable_rules_engine.create_ruleset("hz_fwd_127", encode(within.definition))
    over = build(shared_alternative(129))
    with pytest.raises(CompileError, match="alternatives; cap 127") as info:
        compile_rules(over)
    assert info.value.pointer == "/rules/127"  # the rule that overflows the list is named
    # The model is not just cautious: durable_rules itself refuses this rule set (error 107).
    unchecked = compile_rules(over, durable_caps=False)
    with pytest.raises(Exception, match="107"):
        durable_rules_engine.create_ruleset("hz_fwd_129", encode(unchecked.definition))


def test_the_reference_backend_has_no_durable_cap(tmp_path):
    rules = [rule(f"hz.ck{i}", {"fact": "labs.ck_u_l", "gt": i}) for i in range(600)]
    with pytest.raises(CompileError, match=r"512 distinct conditions follow one condition path"):
        compile_rules(build(rules))
    engine = Engine(plugins=[("hz", inline_pack(tmp_path, "hz", "hz", rules))], entry_points=False, backend="reference")
    result = engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "labs": {"ck_u_l": 300}}, trace=False)
    assert len(result.finding_ids) == 300


def test_four_thousand_synthetic_rules_compile_within_every_durable_limit():
    compiled = compile_rules(build(synthetic_rules(4000), "syn"))
    assert len(compiled.definition) == 4001
