"""Turn rule states into findings, derived facts, missing data and the trace.

Every explanation reads the node states the reference evaluator memoised, so
explaining costs no second evaluation. Tri-state wording is kept throughout: a
fact is either *recorded* (with its value) or *not recorded*.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from neurocds.conditions import (
    MISSING,
    All,
    AnyOf,
    Condition,
    DerivedRef,
    FactTest,
    FindingRef,
    ItemTest,
    Not,
    Tri,
    lookup,
)
from neurocds.reference import Evaluation, Run
from neurocds.ruleset import URGENCY_RANK, Rule

URGENCY_NAME = {rank: name for name, rank in URGENCY_RANK.items()}


def support(node: Condition, want: bool, ev: Evaluation, out: list[Condition]) -> None:
    """Leaves that make ``node`` evaluate to ``want`` (the 'because' of a state)."""
    state = ev.ctx.states.get(id(node))
    if state is not want:
        return
    if isinstance(node, Not):
        support(node.item, not want, ev, out)
    elif isinstance(node, All | AnyOf):
        for child in node.items:
            support(child, want, ev, out)
    else:
        out.append(node)


LeafPath = tuple[int, tuple[int, ...], str | None, Any]


def _leaf_paths(node: Condition, ancestors: tuple[int, ...]) -> list[LeafPath]:
    """Every leaf with the ids of the nodes above it, its pointer (facts) or its key (references)."""
    if isinstance(node, FactTest | ItemTest):
        return [(id(node), ancestors, node.pointer, None)]
    if isinstance(node, DerivedRef | FindingRef):
        return [(id(node), ancestors, None, node.key)]
    return [p for child in node.children() for p in _leaf_paths(child, (*ancestors, id(node)))]


def because_item(node: Condition, facts: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(node, FactTest):
        value = lookup(facts, node.path)
        recorded = value is not MISSING
        item: dict[str, Any] = {"pointer": node.pointer, "recorded": recorded, "test": node.describe()}
        if recorded:
            item["value"] = value
        return item
    if isinstance(node, ItemTest):
        items = lookup(facts, node.path)
        matching = [i for i in (items if items is not MISSING else []) if isinstance(i, Mapping)]
        return {
            "pointer": node.pointer,
            "recorded": items is not MISSING,
            "test": node.describe(),
            "value": [i for i in matching if i.get(node.field, MISSING) is not MISSING],
        }
    if isinstance(node, DerivedRef):
        return {"derived": node.name, "value": node.value}
    assert isinstance(node, FindingRef)
    return {"finding": node.finding}


def _item_key(item: Mapping[str, Any]) -> tuple[Any, ...]:
    return (item.get("pointer"), item.get("test"), item.get("derived"), repr(item.get("value")), item.get("finding"))


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for item in items:
        key = _item_key(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


class Explainer:
    """Builds the explanatory parts of a result for one evaluation."""

    def __init__(self, rules: Sequence[Rule], label_of: Callable[[str], str | None]):
        self.rules = rules
        self.label_of = label_of
        self.finding_rules = [i for i, rule in enumerate(rules) if rule.kind == "finding"]
        self.leaf_paths = [tuple(_leaf_paths(rule.when, ())) for rule in rules]
        self.by_finding: dict[str, list[int]] = {}
        for i, rule in enumerate(rules):
            if rule.kind == "finding":
                self.by_finding.setdefault(rule.key, []).append(i)

    def because(self, index: int, ev: Evaluation) -> list[dict[str, Any]]:
        cached = ev.because_cache.get(index)
        if cached is None:
            leaves: list[Condition] = []
            support(self.rules[index].when, True, ev, leaves)
            unique = list({id(n): n for n in leaves}.values())
            cached = ev.because_cache[index] = _dedupe([because_item(n, ev.facts) for n in unique])
        return cached

    def unknowns(self, index: int, ev: Evaluation) -> frozenset[str]:
        """Pointers of the unrecorded facts that leave rule ``index`` undecided (cached per evaluation).

        Only undecided nodes are entered, through references, from the rule's precomputed leaf paths: a leaf
        counts when it and every node above it are undecided. A flat loop instead of a
        recursive walk, because this runs for every undecided rule of every evaluation.
        """
        cached = ev.unknown_cache.get(index)
        if cached is None:
            states = ev.ctx.states
            out: set[str] = set()
            for leaf_id, ancestor_ids, pointer, ref_key in self.leaf_paths[index]:
                if states.get(leaf_id, False) is not None:
                    continue
                if any(states.get(a, False) is not None for a in ancestor_ids):
                    continue
                if pointer is not None:
                    out.add(pointer)
                else:
                    for j in ev.evaluator.concluders.get(ref_key, ()):
                        if ev.rule_state.get(j) is None:
                            out |= self.unknowns(j, ev)
            cached = ev.unknown_cache[index] = frozenset(out)
        return cached

    def findings(
        self, run: Run, ev: Evaluation, evidence_of: Callable[[Rule], list[dict[str, str]]]
    ) -> list[dict[str, Any]]:
        by_id: dict[str, list[int]] = {}
        for index in sorted(run.fired_set()):
            rule = self.rules[index]
            if rule.kind == "finding":
                by_id.setdefault(rule.key, []).append(index)
        findings = []
        for finding_id, indices in by_id.items():
            primary = max(indices, key=lambda i: (URGENCY_RANK[self.rules[i].urgency or "info"], -i))
            rule = self.rules[primary]
            detail = rule.detail
            for i in indices:
                if i in run.details:
                    detail = f"{detail} {run.details[i]}"
            urgency = rule.urgency or "info"
            # Unknown facts that would raise this finding's urgency (another rule for it, undecided).
            unknown: set[str] = set()
            for i in self.by_finding[finding_id]:
                other = self.rules[i]
                if (
                    i not in indices
                    and ev.rule_state.get(i) is None
                    and URGENCY_RANK[other.urgency or "info"] > URGENCY_RANK[urgency]
                ):
                    unknown.update(self.unknowns(i, ev))
            because = _dedupe([b for i in indices for b in self.because(i, ev)])
            findings.append(
                {
                    "id": finding_id,
                    "pack": rule.pack,
                    "rule": rule.id,
                    "rules": [self.rules[i].id for i in indices],
                    "urgency": urgency,
                    "title": rule.title,
                    "detail": detail,
                    "recommendations": list(rule.recommendations),
                    "because": because,
                    "unknown": sorted(unknown),
                    "evidence": evidence_of(rule),
                }
            )
        findings.sort(key=lambda f: (-URGENCY_RANK[f["urgency"]], f["id"]))
        return findings

    def derived(
        self,
        run: Run,
        ev: Evaluation,
        computed: Mapping[str, Any],
        computed_because: Mapping[str, tuple[str, Sequence[str]]],
    ) -> list[dict[str, Any]]:
        out = []
        for index in sorted(run.fired_set()):
            rule = self.rules[index]
            if rule.kind == "derive":
                out.append(
                    {
                        "name": rule.key,
                        "value": rule.value,
                        "pack": rule.pack,
                        "rule": rule.id,
                        "because": self.because(index, ev),
                    }
                )
        for name in sorted(computed):
            pack, pointers = computed_because.get(name, ("", ()))
            out.append(
                {
                    "name": name,
                    "value": computed[name],
                    "pack": pack,
                    "rule": None,
                    "computed": True,
                    "because": [{"pointer": p, "recorded": True} for p in pointers],
                }
            )
        out.sort(key=lambda d: (d["name"], str(d["value"]), d["rule"] or ""))
        return out

    def missing_data(self, run: Run, ev: Evaluation, fired_urgency: Mapping[str, str]) -> list[dict[str, Any]]:
        """Unknown facts that would let an undecided finding rule fire.

        Ordered by the urgency of what they would decide, then by how much recorded
        evidence already supports that rule, then by how many findings they bear on.
        """
        rank: dict[str, int] = {}
        # How much recorded evidence already points at a rule the fact would decide: a
        # question that completes a half-met emergency rule matters more than a test that
        # would start a rule from nothing.
        support_of: dict[str, int] = {}
        rules: dict[str, set[str]] = {}
        findings: dict[str, set[str]] = {}
        for index in self.finding_rules:
            if ev.rule_state.get(index) is not None:
                continue
            rule = self.rules[index]
            urgency = URGENCY_RANK[rule.urgency or "info"]
            already = fired_urgency.get(rule.key)
            if already is not None and URGENCY_RANK[already] >= urgency:
                continue  # knowing more would not change what is shown
            support = self._conjuncts(index, ev)[0]
            for pointer in self.unknowns(index, ev):
                if rank.get(pointer, 0) < urgency:
                    rank[pointer] = urgency
                    support_of[pointer] = support
                elif rank[pointer] == urgency and support_of[pointer] < support:
                    support_of[pointer] = support
                rules.setdefault(pointer, set()).add(rule.id)
                findings.setdefault(pointer, set()).add(rule.key)
        order = sorted(rank, key=lambda p: (-rank[p], -support_of[p], -len(findings[p]), p))
        return [
            {
                "pointer": pointer,
                "label": self.label_of(pointer),
                "urgency": URGENCY_NAME[rank[pointer]],
                "rules": sorted(rules[pointer]),
                "findings": sorted(findings[pointer]),
            }
            for pointer in order
        ]

    def _conjuncts(self, index: int, ev: Evaluation) -> tuple[int, int]:
        """How many of the rule's top-level conditions already hold (a partly met rule)."""
        root = self.rules[index].when
        parts = root.items if isinstance(root, All) else (root,)
        return sum(1 for part in parts if ev.ctx.states.get(id(part)) is True), len(parts)

    def trace(self, run: Run, ev: Evaluation) -> dict[str, Any]:
        fired_set = run.fired_set()
        fired, not_fired = [], []
        for index, rule in enumerate(self.rules):
            concludes: dict[str, Any] = (
                {"finding": rule.key} if rule.kind == "finding" else {"derive": rule.key, "value": rule.value}
            )
            if index in fired_set:
                fired.append(
                    {"rule": rule.id, "pack": rule.pack, "concludes": concludes, "because": self.because(index, ev)}
                )
                continue
            state: Tri = ev.rule_state.get(index)
            entry: dict[str, Any] = {
                "rule": rule.id,
                "pack": rule.pack,
                "concludes": concludes,
                "state": "unknown" if state is None else "false",
            }
            if state is False:
                leaves: list[Condition] = []
                support(rule.when, False, ev, leaves)
                entry["false_conditions"] = _dedupe([because_item(n, ev.facts) for n in leaves])
            else:
                entry["unknown_facts"] = sorted(self.unknowns(index, ev))
                met, total = self._conjuncts(index, ev)
                entry["conditions_met"], entry["conditions_total"] = met, total
                if rule.kind == "finding":
                    entry["title"], entry["urgency"] = rule.title, rule.urgency
            not_fired.append(entry)
        return {"fired": fired, "not_fired": not_fired}
