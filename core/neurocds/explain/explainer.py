"""Turn rule states into findings, derived facts, missing data and the trace.

Every explanation reads the node states (and unknown-fact masks) the reference
evaluator's plan recorded, so explaining costs no second evaluation. Tri-state wording is kept throughout: a
fact is either *recorded* (with its value) or *not recorded*.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from neurocds.backends.reference import Evaluation, Run
from neurocds.explain.reasons import (
    because_item,
    can_stop_early,
    first_of_each,
    leaf_key,
    shape_of,
    support,
    support_complete,
)
from neurocds.rules.conditions import All, AnyOf, Condition, Not
from neurocds.rules.plan import UNSET, Plan
from neurocds.rules.ruleset import URGENCY_RANK, Rule

URGENCY_NAME = {rank: name for name, rank in URGENCY_RANK.items()}


def _item_key(item: Mapping[str, Any]) -> tuple[Any, ...]:
    return (item.get("pointer"), item.get("test"), item.get("derived"), repr(item.get("value")), item.get("finding"))


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return first_of_each(items, _item_key)


def _states_getter(parts: Sequence[Condition], plan: Plan) -> tuple[Callable[[list[Any]], tuple[Any, ...]], int]:
    slots = [plan.slot(p) for p in parts]
    if len(slots) == 1:
        (slot,) = slots
        return (lambda states: (states[slot],)), 1
    return operator.itemgetter(*slots), len(slots)


def _has_twin_leaves(root: Condition) -> bool:
    keys = [leaf_key(n) for n in root.walk() if not isinstance(n, All | AnyOf | Not)]
    return len(set(keys)) < len(keys)


class Explainer:
    """Builds the explanatory parts of a result for one evaluation.

    Everything that depends only on the rules (shapes, conjunct slots, orderings,
    templates of trace entries) is computed here once, so that explaining one
    evaluation only reads node states.
    """

    def __init__(self, rules: Sequence[Rule], label_of: Callable[[str], str | None], plan: Plan):
        self.rules = rules
        self.label_of = label_of
        self.plan = plan
        self.shapes = [shape_of(rule.when, plan) for rule in rules]
        # Rules in which two leaves say the same thing (the same test in two branches): only their
        # explanations need de-duplicating.
        self.has_twin_leaves = [_has_twin_leaves(rule.when) for rule in rules]
        self.can_stop_early = [can_stop_early(rule.when) for rule in rules]
        self.rank = [URGENCY_RANK[rule.urgency or "info"] for rule in rules]
        self.is_finding = [rule.kind == "finding" for rule in rules]
        self.by_finding: dict[str, list[int]] = {}
        for i, rule in enumerate(rules):
            if rule.kind == "finding":
                self.by_finding.setdefault(rule.key, []).append(i)
        # The states of each rule's top-level conditions, read in one call, for "how much is already met".
        conjuncts = [
            _states_getter(rule.when.items if isinstance(rule.when, All) else (rule.when,), plan) for rule in rules
        ]
        # What missing_data and trace read per rule, gathered in one tuple each: they run on every
        # evaluation, over every rule. Finding rules go in rule-id order, so that the lists of rule
        # ids missing_data builds by walking them come out sorted.
        finding_rules = sorted((i for i, rule in enumerate(rules) if rule.kind == "finding"), key=lambda i: rules[i].id)
        self._finding_rows = [
            (i, self.rank[i], rules[i].id, rules[i].key, conjuncts[i][0]) for i in finding_rules
        ]
        self._trace_rows = [
            (
                rule.id,
                rule.pack,
                {"finding": rule.key} if rule.kind == "finding" else {"derive": rule.key, "value": rule.value},
                conjuncts[i],
                (rule.title, rule.urgency) if rule.kind == "finding" else None,
            )
            for i, rule in enumerate(rules)
        ]

    def highest_urgency(self, run: Run) -> str:
        """The urgency of the most urgent finding :meth:`findings` would list, without building them.

        A finding takes the urgency of its most urgent fired rule, so the most urgent fired
        finding rule decides; ``"none"`` when no finding rule fired.
        """
        best = -1
        for index in run.fired:
            if self.is_finding[index] and self.rank[index] > best:
                best = self.rank[index]
        return URGENCY_NAME[best] if best >= 0 else "none"

    def because(self, index: int, ev: Evaluation) -> list[dict[str, Any]]:
        """The leaves that made fired rule ``index`` true: every one, not only those evaluated."""
        cached = ev.because_cache.get(index)
        if cached is None:
            leaves: list[Condition] = []
            if self.can_stop_early[index]:
                support_complete(self.shapes[index], True, ev.states, self._filler(ev), leaves)
            else:
                support(self.shapes[index], True, ev.states, leaves)
            cached = ev.because_cache[index] = self.leaf_items(index, leaves, ev.facts)
        return cached

    def _filler(self, ev: Evaluation) -> Callable[[int], Any]:
        """Evaluates a node the evaluation never reached, into a copy of its states.

        A copy, so that the trace of the rules that did not fire reads exactly the states
        the evaluation left (a node can be shared between rules). Made on first use only.
        """
        fns, facts = self.plan.fns, ev.facts

        def fill(slot: int) -> Any:
            if ev.completed is None:
                ev.completed = ev.states.copy()
            states = ev.completed
            state = states[slot]
            if state is UNSET:
                state = fns[slot](facts, states, ev)
            return state

        return fill

    def unknowns(self, index: int, ev: Evaluation) -> tuple[str, ...]:
        """Pointers of the unrecorded facts that leave rule ``index`` undecided, sorted.

        Only undecided nodes count; a reference to an undecided conclusion adds the
        unknowns of the undecided rules that would conclude it. A node evaluation never
        reached (``UNSET``) is not undecided: it did not matter. The evaluation derives
        these as masks from its recorded states on first request.
        """
        return self.plan.pointers_of(ev.rule_unknowns(index))

    def leaf_items(self, index: int, leaves: list[Condition], facts: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self.has_twin_leaves[index]:
            leaves = first_of_each(leaves, leaf_key)
        return [because_item(n, facts) for n in leaves]

    def findings(
        self, run: Run, ev: Evaluation, evidence_of: Callable[[Rule], list[dict[str, str]]]
    ) -> list[dict[str, Any]]:
        by_id: dict[str, list[int]] = {}
        for index in sorted(run.fired_set()):
            rule = self.rules[index]
            if rule.kind == "finding":
                by_id.setdefault(rule.key, []).append(index)
        findings: list[dict[str, Any]] = []
        for finding_id, indices in by_id.items():
            primary = max(indices, key=lambda i: (self.rank[i], -i))
            rule = self.rules[primary]
            shown = self._worded(indices, ev)
            # Unknown facts that would change this finding: those that would raise its urgency
            # (another rule for it, undecided), and those it fired on *because* they are not
            # recorded ("not examined", "glucose unknown"): recording them could withdraw it.
            unknown = 0
            for i in self.by_finding[finding_id]:
                if i not in indices and self.rank[i] > self.rank[primary]:
                    unknown |= ev.rule_unknowns(i)
            because = [b for i in indices for b in self.because(i, ev)]
            unknown_pointers = set(self.plan.pointers_of(unknown))
            unknown_pointers.update(b["pointer"] for b in because if b.get("recorded") is False)
            if len(shown) == 1:  # most findings: one rule's words, as they are
                title, detail = rule.title, self._detail(primary, run)
                recommendations, evidence = list(rule.recommendations), evidence_of(rule)
            else:
                # Rules with the same detail are two routes to one statement: one title says it.
                titled = first_of_each(shown, lambda i: self.rules[i].detail)
                title = "; ".join(first_of_each((self.rules[i].title for i in titled), str))
                detail = " ".join(first_of_each((self._detail(i, run) for i in shown), str))
                recommendations = first_of_each((r for i in shown for r in self.rules[i].recommendations), str)
                evidence = first_of_each(
                    (e for i in shown for e in evidence_of(self.rules[i])), lambda e: (e["source"], e["citation"])
                )
            findings.append(
                {
                    "id": finding_id,
                    "pack": rule.pack,
                    "rule": rule.id,
                    "rules": [self.rules[i].id for i in indices],
                    "urgency": rule.urgency or "info",
                    "title": title,
                    "detail": detail,
                    "recommendations": recommendations,
                    "because": _dedupe(because) if len(indices) > 1 else list(because),
                    "unknown": sorted(unknown_pointers),
                    "evidence": evidence,
                }
            )
        findings.sort(key=lambda f: (-URGENCY_RANK[f["urgency"]], f["id"]))
        return findings

    def _detail(self, index: int, run: Run) -> str:
        """A rule's detail, followed by what its pack's detail hook added for this evaluation."""
        detail = self.rules[index].detail
        return f"{detail} {run.details[index]}" if index in run.details else detail

    def _worded(self, indices: list[int], ev: Evaluation) -> list[int]:
        """The fired rules of one finding whose words it shows, most urgent first.

        Several rules can fire one finding (one rule per abnormal value of a panel, say):
        each brings its own title, detail and steps. A rule resting on exactly the facts of
        a more urgent one (the same value past a milder and a severe threshold) would only
        repeat it in weaker words, so it is left out; its id stays in ``rules`` and its
        facts in ``because``.
        """
        if len(indices) == 1:
            return indices
        shown: list[tuple[int, frozenset[Any]]] = []
        for i in sorted(indices, key=lambda i: (-self.rank[i], i)):
            facts = frozenset((b.get("pointer"), b.get("derived"), b.get("finding")) for b in self.because(i, ev))
            if not any(self.rank[j] > self.rank[i] and facts == other for j, other in shown):
                shown.append((i, facts))
        return [i for i, _ in shown]

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
                        "title": rule.title,
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
        evidence already supports that rule (a question that completes a half-met
        emergency rule matters more than a test that would start a rule from nothing),
        then by how many findings they bear on.
        """
        # pointer -> [urgency rank, conditions met, rule ids, finding ids]; rule ids come out sorted
        # because _finding_rows is in rule-id order and a rule lists each pointer once.
        rows: dict[str, list[Any]] = {}
        masks, states, pointers_of = ev.rule_masks(), ev.states, self.plan.pointers_of
        for index, urgency, rule_id, finding_id, conjunct_states in self._finding_rows:
            if not masks[index]:  # decided, or nothing unrecorded would decide it
                continue
            already = fired_urgency.get(finding_id)
            if already is not None and URGENCY_RANK[already] >= urgency:
                continue  # knowing more would not change what is shown
            met = conjunct_states(states).count(True)
            for pointer in pointers_of(masks[index]):
                row = rows.get(pointer)
                if row is None:
                    rows[pointer] = [urgency, met, [rule_id], {finding_id}]
                    continue
                if row[0] < urgency or (row[0] == urgency and row[1] < met):
                    row[0], row[1] = urgency, met
                row[2].append(rule_id)
                row[3].add(finding_id)
        order = sorted([(-row[0], -row[1], -len(row[3]), pointer) for pointer, row in rows.items()])
        label_of = self.label_of
        out = []
        for _, _, _, pointer in order:
            urgency, _, rule_ids, finding_ids = rows[pointer]
            out.append(
                {
                    "pointer": pointer,
                    "label": label_of(pointer),
                    "urgency": URGENCY_NAME[urgency],
                    "rules": rule_ids,
                    "findings": sorted(finding_ids) if len(finding_ids) > 1 else list(finding_ids),
                }
            )
        return out

    def trace(self, run: Run, ev: Evaluation) -> dict[str, Any]:
        fired_set = run.fired_set()
        fired, not_fired = [], []
        rule_state, states, facts = ev.rule_state, ev.states, ev.facts
        masks, pointers_of = ev.rule_masks(), self.plan.pointers_of
        for index, (rule_id, pack, concludes, (conjunct_states, total), shown) in enumerate(self._trace_rows):
            if index in fired_set:
                because = self.because(index, ev)
                fired.append({"rule": rule_id, "pack": pack, "concludes": dict(concludes), "because": because})
                continue
            # Whole dict literals: allocated at their size instead of grown key by key.
            entry: dict[str, Any]
            if rule_state[index] is False:
                leaves: list[Condition] = []
                support(self.shapes[index], False, states, leaves)
                entry = {
                    "rule": rule_id,
                    "pack": pack,
                    "concludes": dict(concludes),
                    "state": "false",
                    "false_conditions": self.leaf_items(index, leaves, facts),
                }
            else:
                entry = {
                    "rule": rule_id,
                    "pack": pack,
                    "concludes": dict(concludes),
                    "state": "unknown",
                    "unknown_facts": list(pointers_of(masks[index])),
                    "conditions_met": conjunct_states(states).count(True),
                    "conditions_total": total,
                }
                if shown is not None:
                    entry["title"], entry["urgency"] = shown
            not_fired.append(entry)
        return {"fired": fired, "not_fired": not_fired}
