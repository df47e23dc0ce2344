"""Rule coverage of the case library: every loaded rule fires in some case and stays silent in another.

A rule that never fires in any case is untested; a rule that fires in every case
cannot be told apart from "always true". Both fail here, naming the rule. The
rules are those of the loaded engine (all installed packs, weakness-pattern too),
so a rule added without cases fails the suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from case_library import load_cases

from neurocds import Engine
from neurocds.authoring.coverage import CoverageCollector
from neurocds_packs import BUILTIN_PACKS


def coverage_gaps(rule_ids: Iterable[str], fired_by_case: Mapping[str, set[str]]) -> tuple[list[str], list[str]]:
    """(rules that fire in no case, rules that fire in every case)."""
    never, always = [], []
    for rule_id in rule_ids:
        hits = sum(1 for fired in fired_by_case.values() if rule_id in fired)
        if hits == 0:
            never.append(rule_id)
        elif hits == len(fired_by_case):
            always.append(rule_id)
    return never, always


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS)


@pytest.fixture(scope="module")
def fired_by_case(engine: Engine) -> dict[str, set[str]]:
    out = {}
    for case_id, case in load_cases().items():
        trace = engine.evaluate(case["facts"]).to_dict()["trace"]
        out[case_id] = {entry["rule"] for entry in trace["fired"]}
    return out


def test_coverage_helper_names_uncovered_rules() -> None:
    # The check itself must be able to fail: a never-firing and an always-firing rule are reported.
    fired = {"a": {"r.always", "r.some"}, "b": {"r.always"}}
    assert coverage_gaps(["r.always", "r.some", "r.never"], fired) == (["r.never"], ["r.always"])


def test_all_clinical_packs_are_loaded(engine: Engine) -> None:
    packs = {rule.pack for rule in engine.rules}
    assert {
        "weakness-pattern",
        "spinal-compression",
        "neuromuscular",
        "cerebrovascular",
        "treatment-expectation",
    } <= packs


def test_every_rule_fires_in_some_case(engine: Engine, fired_by_case: dict[str, set[str]]) -> None:
    never, _ = coverage_gaps([rule.id for rule in engine.rules], fired_by_case)
    assert not never, f"rules that fire in no case (add a positive case): {never}"


def test_every_rule_is_silent_in_some_case(engine: Engine, fired_by_case: dict[str, set[str]]) -> None:
    _, always = coverage_gaps([rule.id for rule in engine.rules], fired_by_case)
    assert not always, f"rules that fire in every case (add a negative case): {always}"


@pytest.fixture(scope="module")
def false_by_case(engine: Engine) -> dict[str, set[str]]:
    out = {}
    for case_id, case in load_cases().items():
        trace = engine.evaluate(case["facts"]).to_dict()["trace"]
        out[case_id] = {entry["rule"] for entry in trace["not_fired"] if entry["state"] == "false"}
    return out


def test_every_rule_is_decided_false_in_some_case(engine: Engine, false_by_case: dict[str, set[str]]) -> None:
    # Silent because facts were unknown proves little; some case must record facts that make the rule false.
    never_false, _ = coverage_gaps([rule.id for rule in engine.rules], false_by_case)
    assert not never_false, f"rules never decided false by recorded facts (add a negative case): {never_false}"


# Outcomes no facts document can produce, each with the proof. The test also fails if one is
# ever seen, so an entry cannot outlive the rule that made it unreachable.
UNREACHABLE = {
    # packs-v2: the decompression statement before imaging needs the spine MRI unrecorded; then the
    # compression finding's own MRI rule is undecided, so the finding is true or unknown, never false.
    f"treatment.decompression.after_{kind}: finding spinal.{finding} never false"
    for kind, finding in (
        ("cauda_equina", "cauda_equina_syndrome_suspected"),
        ("cord_compression", "cord_compression_suspected"),
        ("metastatic_compression", "metastatic_compression_suspected"),
    )
}


def test_case_library_covers_every_condition_outcome(engine: Engine) -> None:
    # Measured the way pack authors measure theirs (neurocds.authoring.coverage, the reference
    # evaluator's node states): every leaf seen true, false and (where it can be) unknown, every
    # rule fired, decided false and undecided, every any-alternative and all-child decisive.
    collector = CoverageCollector(engine, BUILTIN_PACKS)
    for case in load_cases().values():
        collector.record_facts(case["facts"])
    report = collector.to_dict()
    gaps = [
        f"{rule['id']}: {cond['test']} never {outcome}"
        for rule in report["rules"]
        for cond in rule["conditions"]
        for outcome, count in cond["outcomes"].items()
        if not count
    ]
    assert sorted(set(gaps) - UNREACHABLE) == [], "add cases for these outcomes"
    assert sorted(UNREACHABLE - set(gaps)) == [], "an outcome listed as unreachable was reached: remove it"
    assert report["totals"]["rule_outcomes"]["percent"] == 100.0
    decisions = report["totals"]["decisions"]
    # The same three: a finding that is never false never makes its rule's `all` false either.
    assert decisions["covered"] == decisions["total"] - len(UNREACHABLE), decisions
