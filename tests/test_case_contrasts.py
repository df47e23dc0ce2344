"""Unknown versus explicit false: the case library shows, for every finding, that the two are told apart.

packs-v1: a finding must not fire when a fact its trigger needs is explicitly
false, and a fact that is absent is unknown, never false. So for every finding id
of the spec the library must hold negative cases (the finding expected absent) of
both kinds, classified from the engine's own trace rather than from a label:

- undecided: some rule for the finding waits on facts that were not recorded;
- decided false: every rule for the finding was made false by recorded facts.

And at least one such pair must differ in exactly one needed fact, left out in one
case and recorded in the other, with the undecided case listing that fact in its
missing data against the finding: the contrast is then the fact itself, not the
rest of the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from case_library import OWN_ID_POINTER, finding_state, leaf_facts, load_cases
from packs_spec import spec_finding_ids

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS

CASES = load_cases()


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    engine = Engine(packs=BUILTIN_PACKS)
    return {case_id: engine.evaluate(case["facts"]).to_dict() for case_id, case in CASES.items()}


def negative_kinds(
    finding_ids: Iterable[str], cases: Mapping[str, Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, list[str]]]:
    """finding id -> {"undecided": [case ids], "false": [case ids]} over the cases that expect it absent."""
    kinds: dict[str, dict[str, list[str]]] = {f: {"undecided": [], "false": []} for f in finding_ids}
    for case_id, case in cases.items():
        for finding_id in set(case["expect_absent"]) & set(kinds):
            state = finding_state(results[case_id]["trace"], finding_id)
            if state != "fired":  # a fired finding fails the case itself in test_cases.py
                kinds[finding_id][state].append(case_id)
    return kinds


def lacking_both_kinds(kinds: Mapping[str, Mapping[str, list[str]]]) -> list[str]:
    """'finding: what it lacks' for every finding without an undecided or a decided-false negative case."""
    out = []
    for finding_id in sorted(kinds):
        missing = [kind for kind in ("undecided", "false") if not kinds[finding_id][kind]]
        if missing:
            out.append(f"{finding_id}: no {' and no '.join(missing)} negative case")
    return out


def one_fact_contrast(
    finding_id: str,
    kinds: Mapping[str, Mapping[str, list[str]]],
    cases: Mapping[str, Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any]],
) -> tuple[str, str, str] | None:
    """(undecided case, decided case, pointer) differing only in that pointer, recorded in the decided one only.

    The undecided case must list the pointer in its missing data against the finding.
    """
    for unknown_id in kinds[finding_id]["undecided"]:
        unknown = leaf_facts(cases[unknown_id]["facts"])
        unknown.pop(OWN_ID_POINTER, None)
        for decided_id in kinds[finding_id]["false"]:
            decided = leaf_facts(cases[decided_id]["facts"])
            decided.pop(OWN_ID_POINTER, None)
            extra = set(decided) - set(unknown)
            if len(extra) != 1 or set(unknown) - set(decided):
                continue
            if any(unknown[p] != decided[p] for p in unknown):
                continue
            (pointer,) = extra
            listed = any(
                item["pointer"] == pointer and finding_id in item["findings"]
                for item in results[unknown_id]["missing_data"]
            )
            if listed:
                return unknown_id, decided_id, pointer
    return None


def test_helpers_name_findings_without_a_contrast() -> None:
    # The checks must be able to fail: a finding with only decided-false negatives is named,
    # and a pair that differs in a second fact is no contrast.
    def case(facts: dict[str, Any]) -> dict[str, Any]:
        return {"facts": facts, "expect_absent": ["x.f"]}

    def trace(state: str) -> dict[str, Any]:
        return {"fired": [], "not_fired": [{"concludes": {"finding": "x.f"}, "state": state}]}

    cases = {
        "u": case({"a": {"b": True}}),
        "d": case({"a": {"b": True, "c": False}}),
        "d2": case({"a": {"b": False, "c": False}}),
    }
    results = {
        "u": {"trace": trace("unknown"), "missing_data": [{"pointer": "/a/c", "findings": ["x.f"]}]},
        "d": {"trace": trace("false"), "missing_data": []},
        "d2": {"trace": trace("false"), "missing_data": []},
    }
    kinds = negative_kinds(["x.f"], cases, results)
    assert kinds == {"x.f": {"undecided": ["u"], "false": ["d", "d2"]}}
    assert lacking_both_kinds(kinds) == []
    assert one_fact_contrast("x.f", kinds, cases, results) == ("u", "d", "/a/c")

    only_false = negative_kinds(["x.f"], {"d2": cases["d2"]}, results)
    assert lacking_both_kinds(only_false) == ["x.f: no undecided negative case"]
    two_apart = negative_kinds(["x.f"], {"u": cases["u"], "d2": cases["d2"]}, results)
    assert one_fact_contrast("x.f", two_apart, cases, results) is None
    results["u"]["missing_data"] = []  # not listed as missing: the engine did not say it would decide
    assert one_fact_contrast("x.f", kinds, cases, results) is None


def test_every_spec_finding_has_undecided_and_decided_false_negative_cases(
    results: dict[str, dict[str, Any]],
) -> None:
    kinds = negative_kinds(spec_finding_ids(), CASES, results)
    lacking = lacking_both_kinds(kinds)
    assert not lacking, "add negative cases (finding expected absent):\n" + "\n".join(lacking)


def test_every_spec_finding_has_a_one_fact_contrast_pair(results: dict[str, dict[str, Any]]) -> None:
    kinds = negative_kinds(spec_finding_ids(), CASES, results)
    lacking = [f for f in sorted(kinds) if one_fact_contrast(f, kinds, CASES, results) is None]
    assert not lacking, (
        "findings without two negative cases that differ only in one needed fact "
        f"(not recorded -> undecided and listed as missing; recorded -> decided false): {lacking}"
    )
