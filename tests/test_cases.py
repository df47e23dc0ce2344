"""The clinical case library's own rules (tests/cases/<pack>/*.yaml); the cases themselves run as plugin items.

Every case file is collected by the neurocds pytest plugin (``neurocds_case_globs`` in
pyproject.toml) and checked against the built-in packs (``neurocds_packs``): one item
per case, named ``tests/cases/<pack>/<file>.yaml::<case>``. Each case is a facts-v1
document with the findings that must and must not appear, and optionally their
urgencies, the missing-data pointers that must (or must not) be listed, derived facts
and text the finding detail must contain (or must not). The engine runs in its
default verify mode, so every case is also a differential test of durable_rules
against the reference evaluator: a disagreement is reported in ``result.errors``
and fails the case (a case expects a complete result unless it says otherwise).

This file holds what the plugin does not know: the library's conventions (name equals
file name, the patient id equals the name, every finding has positive and negative cases).
"""

from __future__ import annotations

from typing import Any

import pytest
from case_library import BUILTIN_PACKS, load_cases

from neurocds import Engine

REQUIRED_KEYS = {"name", "description", "facts", "expect_present", "expect_absent"}
OPTIONAL_KEYS = {
    "expect_urgency",
    "expect_missing",
    "expect_not_missing",
    "expect_derived",
    "expect_detail_contains",
    "expect_detail_excludes",
}


CASES = list(load_cases().items())


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS)


@pytest.fixture(scope="module")
def known_findings(engine: Engine) -> set[str]:
    return {rule.key for rule in engine.rules if rule.kind == "finding"}


def test_cases_run_differentially(engine: Engine) -> None:
    # Each case is a durable_rules-versus-reference comparison only where durable_rules imports.
    from neurocds.engine import durable_available

    ok, reason = durable_available()
    if not ok:
        pytest.skip(f"durable_rules unavailable, cases run on the reference evaluator only: {reason}")
    assert engine.engine_info()["backend"] == "durable"
    assert engine.engine_info()["verified"] is True


def test_case_library_is_not_empty() -> None:
    # Guards against a moved folder silently turning every parametrized test into zero tests.
    assert len(CASES) >= 100
    packs = {case_id.split("/")[0] for case_id, _ in CASES}
    assert {"spinal-compression", "neuromuscular", "cerebrovascular", "treatment-expectation"} <= packs


def test_every_finding_has_positive_and_negative_cases(known_findings: set[str]) -> None:
    # The library's bar: at least two cases that expect each finding and one that expects it absent.
    positive: dict[str, int] = dict.fromkeys(known_findings, 0)
    negative: dict[str, int] = dict.fromkeys(known_findings, 0)
    for _, case in CASES:
        for finding_id in set(case["expect_present"]) & known_findings:
            positive[finding_id] += 1
        for finding_id in set(case["expect_absent"]) & known_findings:
            negative[finding_id] += 1
    thin = sorted(f for f in known_findings if positive[f] < 2 or negative[f] < 1)
    assert not thin, f"findings with fewer than 2 positive or 1 negative case: {thin}"


@pytest.mark.parametrize(("case_id", "case"), CASES, ids=[c[0] for c in CASES])
def test_case_file_is_well_formed(case_id: str, case: dict[str, Any], known_findings: set[str]) -> None:
    keys = set(case)
    assert keys >= REQUIRED_KEYS, f"missing keys {REQUIRED_KEYS - keys}"
    assert keys <= REQUIRED_KEYS | OPTIONAL_KEYS, f"unknown keys {keys - REQUIRED_KEYS - OPTIONAL_KEYS}"
    assert case["name"] == case_id.split("/")[1], "name must equal the file name"
    assert case["facts"]["patient"]["id"] == case["name"]
    # A misspelt finding id in expect_absent would pass vacuously: every id must be a real finding.
    named = {*case["expect_present"], *case["expect_absent"], *case.get("expect_urgency", {})}
    named |= set(case.get("expect_detail_contains", {})) | set(case.get("expect_detail_excludes", {}))
    assert named <= known_findings, f"unknown finding ids {sorted(named - known_findings)}"
    assert not set(case["expect_present"]) & set(case["expect_absent"])
    assert set(case.get("expect_urgency", {})) <= set(case["expect_present"])
    assert case["expect_present"] or case["expect_absent"], "a case must expect something"
