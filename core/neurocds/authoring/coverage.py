"""Rule and condition coverage of a set of case runs, read from the reference evaluator's node states.

Nothing is evaluated again here: :meth:`neurocds.engine.Engine.node_states` returns
the Kleene state of every node of every rule (``UNSET`` where ``all``/``any``
stopped early), and each case's states are tallied:

- per rule: how often it fired, was decided false, stayed undecided;
- per condition leaf (fact test, item test, derived or finding reference): how often
  it was true, false or unknown. A ``known``/``is_not`` test is never unknown, so it
  has two outcomes to cover, every other leaf three;
- per ``any``: which alternative made it true; per ``all``: which child made it false.

*Condition coverage* is the share of possible leaf outcomes seen at least once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from neurocds.backends.reference import Evaluation
from neurocds.engine import Engine
from neurocds.rules.conditions import All, AnyOf, Condition, DerivedRef, FactTest, FindingRef, ItemTest
from neurocds.rules.plan import UNSET
from neurocds.rules.ruleset import Rule

from .sources import line_of, node_pointers, rule_line

COVERAGE_FORMAT = "neurocds-coverage/1"
RULE_OUTCOMES = ("fired", "false", "undecided")
LEAF_OUTCOMES = ("true", "false", "unknown")
_STATE_NAME = {True: "true", False: "false", None: "unknown"}
_RULE_NAME = {True: "fired", False: "false", None: "undecided"}


def possible_outcomes(node: Condition) -> tuple[str, ...]:
    """The outcomes a leaf can have: a ``known`` or ``is_not`` test is never unknown."""
    if isinstance(node, FactTest) and node.op in ("known", "is_not"):
        return ("true", "false")
    return LEAF_OUTCOMES


def describe(node: Condition) -> str:
    if isinstance(node, FactTest | ItemTest):
        return node.text
    if isinstance(node, DerivedRef):
        return "derived " + node.describe()
    assert isinstance(node, FindingRef)
    return node.describe()


@dataclass
class _Leaf:
    slot: int
    pointer: str
    line: int
    test: str
    possible: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEAF_OUTCOMES, 0))


@dataclass
class _Group:
    slot: int
    kind: str  # "any" | "all"
    pointer: str
    line: int
    child_slots: tuple[int, ...]
    decisive: list[int] = field(default_factory=list)  # per child: times it made an any true / an all false


@dataclass
class _RuleTally:
    index: int
    rule: Rule
    line: int
    leaves: list[_Leaf]
    groups: list[_Group]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULE_OUTCOMES, 0))


class CoverageCollector:
    """Tallies node states case by case for the rules of ``packs`` (``None``: every loaded pack)."""

    def __init__(self, engine: Engine, packs: Iterable[str] | None = None) -> None:
        self.engine = engine
        wanted = None if packs is None else set(packs)
        plan = engine.reference.plan
        self.cases = 0
        self.tallies: list[_RuleTally] = []
        for index, rule in enumerate(engine.rules):
            if wanted is not None and rule.pack not in wanted:
                continue
            leaves, groups = [], []
            for node, pointer in node_pointers(rule):
                slot, line = plan.slot(node), line_of(rule.file, pointer)
                if isinstance(node, All | AnyOf):
                    kind = "all" if isinstance(node, All) else "any"
                    children = tuple(plan.slot(c) for c in node.items)
                    groups.append(_Group(slot, kind, pointer, line, children, [0] * len(children)))
                elif not node.children():
                    leaves.append(_Leaf(slot, pointer, line, describe(node), possible_outcomes(node)))
            self.tallies.append(_RuleTally(index, rule, rule_line(rule), leaves, groups))

    def record(self, evaluation: Evaluation) -> None:
        """Add one case's states."""
        self.cases += 1
        states, rule_state = evaluation.states, evaluation.rule_state
        for tally in self.tallies:
            tally.counts[_RULE_NAME[rule_state[tally.index]]] += 1
            for leaf in tally.leaves:
                state = states[leaf.slot]
                if state is not UNSET:
                    leaf.counts[_STATE_NAME[state]] += 1
            for group in tally.groups:
                stop = group.kind == "any"  # an any is made true, an all false, by the child that stopped it
                if states[group.slot] is stop:
                    for i, child in enumerate(group.child_slots):
                        if states[child] is stop:
                            group.decisive[i] += 1
                            break

    def record_facts(self, facts: Mapping[str, Any]) -> None:
        self.record(self.engine.node_states(facts))

    # ------------------------------------------------------------ reporting
    def to_dict(self) -> dict[str, Any]:
        """The JSON coverage report (format ``neurocds-coverage/1``)."""
        rules = [_rule_dict(t) for t in self.tallies]
        packs: dict[str, dict[str, Any]] = {}
        for tally, entry in zip(self.tallies, rules, strict=True):
            packs.setdefault(tally.rule.pack, {"rules": []})["rules"].append(entry)
        return {
            "format": COVERAGE_FORMAT,
            "cases": self.cases,
            "totals": totals(rules),
            "packs": {name: totals(p["rules"]) for name, p in sorted(packs.items())},
            "rules": rules,
        }


def _rule_dict(tally: _RuleTally) -> dict[str, Any]:
    rule = tally.rule
    return {
        "id": rule.id,
        "pack": rule.pack,
        "file": rule.file,
        "line": tally.line,
        "outcomes": dict(tally.counts),
        "conditions": [
            {
                "pointer": leaf.pointer,
                "line": leaf.line,
                "test": leaf.test,
                "possible": list(leaf.possible),
                "outcomes": {k: leaf.counts[k] for k in leaf.possible},
            }
            for leaf in tally.leaves
        ],
        "groups": [
            {
                "kind": group.kind,
                "pointer": group.pointer,
                "line": group.line,
                ("made_true_by" if group.kind == "any" else "made_false_by"): group.decisive,
            }
            for group in tally.groups
        ],
    }


def _share(covered: int, total: int) -> dict[str, Any]:
    return {"covered": covered, "total": total, "percent": round(100.0 * covered / total, 2) if total else 100.0}


def totals(rules: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Condition, rule-outcome and decision (any/all branch) coverage over report rule entries."""
    cond_cov = cond_all = rule_cov = rule_all = dec_cov = dec_all = 0
    for rule in rules:
        rule_all += len(RULE_OUTCOMES)
        rule_cov += sum(1 for n in rule["outcomes"].values() if n)
        for cond in rule["conditions"]:
            cond_all += len(cond["possible"])
            cond_cov += sum(1 for n in cond["outcomes"].values() if n)
        for group in rule["groups"]:
            counts = group.get("made_true_by", group.get("made_false_by", []))
            dec_all += len(counts)
            dec_cov += sum(1 for n in counts if n)
    return {
        "conditions": _share(cond_cov, cond_all),
        "rule_outcomes": _share(rule_cov, rule_all),
        "decisions": _share(dec_cov, dec_all),
    }
