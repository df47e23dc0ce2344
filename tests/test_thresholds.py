"""Numeric thresholds: every one is tested at its edge, and every text around it says the same edge.

1. Boundary cases. For every numeric comparison in a loaded rule (``lt``, ``lte``,
   ``gt``, ``gte``, numeric ``eq``) the case library must hold a case whose value
   equals the threshold, one just below and one just above it, and in each the rule
   must be decided (fired or false): a boundary value beside an unrecorded fact the
   rule also needs proves nothing. "Just" means within one unit of the threshold's
   last written digit (47 and 49 around 48, 21.9 and 22.1 around 22, 0.09 and 0.11
   around 0.1). A side the facts schema rules out (above MRC grade 5) is not required.
2. Wording. A rule's title, detail and rationale may not describe its own threshold
   with the other kind of edge: "6.5 or more" on a rule that is ``gt: 6.5`` tells the
   reader that 6.5 itself fires it, and it does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from case_library import load_cases

from neurocds import Engine
from neurocds.resources import load_schema
from neurocds.rules.conditions import FactTest
from neurocds_packs import BUILTIN_PACKS

ORDER_OPS = ("lt", "lte", "gt", "gte")
SIDES = ("just below", "at", "just above")


def numeric_comparisons(rules: Iterable[Any]) -> Iterator[tuple[str, tuple[str, ...], str, float]]:
    """(rule id, fact path, op, threshold) for every numeric test of a fact in the rules."""
    for rule in rules:
        for node in rule.when.walk():
            if not isinstance(node, FactTest) or isinstance(node.value, bool):
                continue
            if isinstance(node.value, int | float) and (node.op in ORDER_OPS or node.op == "eq"):
                yield rule.id, node.path, node.op, node.value


def schema_bounds(path: tuple[str, ...]) -> tuple[float | None, float | None]:
    """(minimum, maximum) the facts schema allows at ``path``; None where it sets none."""
    node: Mapping[str, Any] = load_schema("facts.schema.json")
    for part in path:
        node = node["properties"][part]
    return node.get("minimum"), node.get("maximum")


def side_of(value: float, threshold: float) -> str | None:
    """'at', 'just below' or 'just above' the threshold, or None when further than one last-digit unit away."""
    step = Decimal(1).scaleb(Decimal(str(threshold)).as_tuple().exponent)  # type: ignore[arg-type]
    difference = Decimal(str(value)) - Decimal(str(threshold))
    if difference == 0:
        return "at"
    if abs(difference) > step:
        return None
    return "just below" if difference < 0 else "just above"


def possible_sides(path: tuple[str, ...], threshold: float) -> list[str]:
    low, high = schema_bounds(path)
    sides = ["at"]
    if low is None or low < threshold:
        sides.insert(0, "just below")
    if high is None or high > threshold:
        sides.append("just above")
    return sides


def value_at(facts: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = facts
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def boundary_gaps(
    comparisons: Iterable[tuple[str, tuple[str, ...], str, float]],
    cases: Mapping[str, Mapping[str, Any]],
    decided: Mapping[str, set[str]],
) -> list[str]:
    """'rule: path op threshold lacks ...' for every comparison without a deciding case on each side.

    ``decided`` maps a case id to the rules that fired or were decided false in it.
    """
    gaps = []
    for rule_id, path, op, threshold in comparisons:
        seen = set()
        for case_id, case in cases.items():
            value = value_at(case["facts"], path)
            if isinstance(value, bool) or not isinstance(value, int | float) or rule_id not in decided[case_id]:
                continue
            side = side_of(value, threshold)
            if side is not None:
                seen.add(side)
        lacking = [side for side in possible_sides(path, threshold) if side not in seen]
        if lacking:
            gaps.append(f"{rule_id}: {'.'.join(path)} {op} {threshold:g} lacks a deciding case {', '.join(lacking)}")
    return gaps


def _number(threshold: float) -> str:
    written = {str(threshold), f"{threshold:g}"}  # 4.0 is written "4.0" or "4"
    return r"(?<![\d.])(?:" + "|".join(re.escape(w) for w in sorted(written, key=len, reverse=True)) + r")(?![\d]|\.\d)"


def edge_phrases(threshold: float) -> dict[str, re.Pattern[str]]:
    """op -> the phrases that describe the threshold as that kind of edge."""
    n = _number(threshold)
    unit = r"(?:\s+[\w/%]+)?"  # "48 mmol/mol or more", "3 or weaker"
    phrases = {
        "lt": [rf"below {n}", rf"less than {n}", rf"under {n}"],
        "gt": [rf"above {n}", rf"(?<!no )more than {n}", rf"greater than {n}", rf"over {n}"],
        "gte": [rf"{n}{unit} or (?:more|above|higher)", rf"from {n}", rf"at least {n}"],
        "lte": [rf"{n}{unit} or (?:less|below|weaker|lower)", rf"no more than {n}", rf"up to {n}", rf"within {n}"],
    }
    return {op: re.compile("|".join(p), flags=re.IGNORECASE) for op, p in phrases.items()}


def wording_mismatches(rule_id: str, texts: Iterable[str], op: str, threshold: float) -> list[str]:
    """Phrases in the texts that give the threshold a different edge from the rule's own op."""
    out = []
    for other_op, pattern in edge_phrases(threshold).items():
        if other_op == op:
            continue
        for text in texts:
            for match in pattern.finditer(text):
                out.append(f"{rule_id} is {op} {threshold:g} but says {match.group(0)!r} ({other_op})")
    return out


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS)


def test_side_of_uses_the_thresholds_last_digit() -> None:
    assert [side_of(v, 22) for v in (21, 21.9, 22, 22.1, 23, 20.9)] == [
        "just below", "just below", "at", "just above", "just above", None,
    ]  # fmt: skip
    assert [side_of(v, 0.1) for v in (0.09, 0.1, 0.11, 0.2, 0.21)] == [
        "just below",
        "at",
        "just above",
        "just above",
        None,
    ]
    assert side_of(3.9, 4.0) == "just below" and side_of(3.8, 4.0) is None
    assert possible_sides(("strength", "left_leg"), 5) == ["just below", "at"]  # MRC grade 6 does not exist
    assert possible_sides(("labs", "free_t4_pmol_l"), 22) == list(SIDES)


def test_boundary_check_names_the_rule_and_the_missing_side() -> None:
    comparisons = [("r.t4", ("labs", "free_t4_pmol_l"), "gt", 22)]

    def case(value: float) -> dict[str, Any]:
        return {"facts": {"labs": {"free_t4_pmol_l": value}}}

    cases = {"a": case(22), "b": case(22.1), "c": case(21.9), "far": case(15)}
    decided = {"a": {"r.t4"}, "b": {"r.t4"}, "c": set(), "far": {"r.t4"}}  # c: the rule stayed undecided
    assert boundary_gaps(comparisons, cases, decided) == [
        "r.t4: labs.free_t4_pmol_l gt 22 lacks a deciding case just below"
    ]
    decided["c"] = {"r.t4"}
    assert boundary_gaps(comparisons, cases, decided) == []


def test_wording_check_catches_the_other_edge() -> None:
    old = "Potassium of 6.5 mmol/L or more is classed as severe hyperkalaemia."
    assert wording_mismatches("k", [old], "gt", 6.5) == ["k is gt 6.5 but says '6.5 mmol/L or more' (gte)"]
    fine = "Potassium is above 6.5 mmol/L; 6.0 mmol/L or more is another rule's edge."
    assert wording_mismatches("k", [fine], "gt", 6.5) == []
    assert wording_mismatches("w", ["no more than 24 hours ago"], "lte", 24) == []
    assert wording_mismatches("g", ["glucose below 4.0 mmol/L"], "lte", 4.0) == ["g is lte 4 but says 'below 4.0' (lt)"]


def test_every_numeric_threshold_has_deciding_cases_at_and_either_side(engine: Engine) -> None:
    cases = load_cases()
    decided = {}
    for case_id, case in cases.items():
        trace = engine.evaluate(case["facts"]).to_dict()["trace"]
        decided[case_id] = {e["rule"] for e in trace["fired"]} | {
            e["rule"] for e in trace["not_fired"] if e["state"] == "false"
        }
    comparisons = sorted(set(numeric_comparisons(engine.rules)))
    assert len(comparisons) > 40  # the packs' thresholds were found at all
    gaps = boundary_gaps(comparisons, cases, decided)
    assert not gaps, "add boundary cases:\n" + "\n".join(gaps)


def test_rule_texts_describe_each_threshold_with_its_own_edge(engine: Engine) -> None:
    problems = []
    for rule_id, _, op, threshold in sorted(set(numeric_comparisons(engine.rules))):
        if op not in ORDER_OPS:
            continue
        rule = next(r for r in engine.rules if r.id == rule_id)
        problems += wording_mismatches(rule_id, [rule.title, rule.detail, rule.rationale], op, threshold)
    assert not problems, "\n".join(problems)
