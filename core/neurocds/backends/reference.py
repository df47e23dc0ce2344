"""Pure-Python reference evaluator of the compiled rules.

It evaluates every rule once, in dependency order, with three-valued logic, so
that afterwards the state (true / false / unknown) of every node of every rule
is known. That serves three purposes: it explains (why a rule fired, why one did
not, which unknown facts would decide it), it checks durable_rules' answers in
``verify`` mode, and it is the whole backend where durable_rules cannot run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from neurocds.errors import PackLoadError, RuleEvaluationError
from neurocds.rules.conditions import Condition, Tri
from neurocds.rules.plan import Plan
from neurocds.rules.ruleset import Rule

Key = tuple[str, str, Any]
# Called when a rule fires; may raise (a pack hook). Returns extra detail text or None.
FireCallback = Callable[[Rule, Mapping[str, Any]], str | None]


@dataclass
class Run:
    """What one backend concluded for one evaluation."""

    backend: str
    fired: list[int] = field(default_factory=list)  # rule indices, in firing order
    derived: dict[str, Any] = field(default_factory=dict)  # derived-fact name -> value
    details: dict[int, str] = field(default_factory=dict)  # rule index -> extra detail
    errors: list[RuleEvaluationError] = field(default_factory=list)

    def fired_set(self) -> set[int]:
        return set(self.fired)


def fire_rule(rule: Rule, index: int, run: Run, derived_view: Mapping[str, Any], on_fire: FireCallback | None) -> None:
    """Record a firing the same way on every backend (so their answers compare)."""
    run.fired.append(index)
    if rule.kind == "derive":
        run.derived.setdefault(rule.key, rule.value)
    elif on_fire is not None:
        try:
            extra = on_fire(rule, derived_view)
        except Exception as exc:  # a pack's hook: isolate it, name the rule
            run.errors.append(
                RuleEvaluationError(
                    f"action of rule {rule.id} raised {type(exc).__name__}: {exc}",
                    rule=rule.id,
                    pack=rule.pack,
                    kind="action",
                )
            )
        else:
            if extra:
                run.details[index] = extra


def concluders_of(rules: Sequence[Rule]) -> dict[Key, list[int]]:
    """Conclusion key -> indices of the rules that conclude it."""
    concluders: dict[Key, list[int]] = {}
    for i, rule in enumerate(rules):
        concluders.setdefault(_as_ref(rule), []).append(i)
    return concluders


def dependency_order(rules: Sequence[Rule], concluders: Mapping[Key, list[int]]) -> list[int]:
    """Rules ordered so that every rule comes after the rules whose conclusions it uses."""
    deps = {
        i: sorted({j for key in rule.references() for j in concluders.get(key, [])}) for i, rule in enumerate(rules)
    }
    waiting = {i: len(d) for i, d in deps.items()}
    users: dict[int, list[int]] = {}
    for i, d in deps.items():
        for j in d:
            users.setdefault(j, []).append(i)
    ready = [i for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for user in users.get(i, []):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(rules):
        stuck = sorted(rules[i].id for i, n in waiting.items() if n > 0)
        raise PackLoadError("rules depend on each other in a cycle: " + ", ".join(stuck), pack=rules[0].pack)
    return order


def _as_ref(rule: Rule) -> Key:
    return ("derived", rule.key, rule.value) if rule.kind == "derive" else ("finding", rule.key, True)


class ReferenceEvaluator:
    """Evaluates all rules in dependency order; keeps every node's state for explanations."""

    name = "reference"

    def __init__(self, rules: Sequence[Rule]):
        self.rules = list(rules)
        self.concluders = concluders_of(self.rules)
        self.order = dependency_order(self.rules, self.concluders)
        self.plan = Plan([rule.when for rule in self.rules])
        # Most conclusions have one concluding rule: their state is that rule's, read directly.
        self.sole_concluder = {key: rules[0] for key, rules in self.concluders.items() if len(rules) == 1}
        # Each rule's closure paired with its index in evaluation order: one tuple unpack per rule.
        self.ordered_fns = [(index, self.plan.rule_fns[index]) for index in self.order]

    def run(
        self,
        facts: Mapping[str, Any],
        computed: Mapping[str, Any],
        on_fire: FireCallback | None = None,
        disabled: frozenset[str] = frozenset(),
    ) -> tuple[Run, Evaluation]:
        """Evaluate every rule; rules of ``disabled`` packs do not run and count as undecided."""
        evaluation = Evaluation(self, facts, computed)
        run = Run(backend=self.name)
        derived_view: dict[str, Any] = dict(computed)
        rules, rule_state = self.rules, evaluation.rule_state
        states, masks = evaluation.states, evaluation.unknown_masks
        ordered = self.ordered_fns
        if disabled:
            # A failed pack's conclusions are unknown, so what depends on them stays undecided.
            ordered = [(index, fn) for index, fn in ordered if rules[index].pack not in disabled]
        for index, rule_fn in ordered:
            state = rule_state[index] = rule_fn(facts, states, masks, evaluation)
            if state is True:
                rule = rules[index]
                fire_rule(rule, index, run, derived_view, on_fire)
                if rule.kind == "derive":
                    derived_view.setdefault(rule.key, rule.value)
        return run, evaluation


class Evaluation:
    """The states of all rules and nodes for one facts document.

    ``rule_state[i]`` is rule ``i``'s state (``None`` also for rules of disabled packs);
    ``states[plan slot]`` each node's state, or :data:`neurocds.rules.plan.UNSET` where
    evaluation never reached the node; ``unknown_masks[plan slot]`` the unrecorded
    facts that leave an undecided node undecided (see :mod:`neurocds.rules.plan`).
    """

    __slots__ = (
        "because_cache",
        "completed",
        "computed",
        "concluders",
        "evaluator",
        "facts",
        "rule_state",
        "sole_concluder",
        "states",
        "unknown_masks",
    )

    def __init__(self, evaluator: ReferenceEvaluator, facts: Mapping[str, Any], computed: Mapping[str, Any]):
        self.evaluator = evaluator
        self.facts = facts
        self.computed = computed
        self.concluders = evaluator.concluders  # read by every reference node: one attribute, not two
        self.sole_concluder = evaluator.sole_concluder
        self.rule_state: list[Tri] = [None] * len(evaluator.rules)
        self.states: list[Any] = evaluator.plan.new_states()
        self.unknown_masks: list[int] = evaluator.plan.new_masks()
        self.because_cache: dict[int, list[dict[str, Any]]] = {}
        # States and masks with unreached nodes evaluated on demand, for explanations only.
        self.completed: tuple[list[Any], list[int]] | None = None

    def state(self, node: Condition) -> Any:
        """The state of one node of one of the evaluator's rules (``UNSET`` if never reached)."""
        return self.states[self.evaluator.plan.slot(node)]

    def rule_unknowns(self, index: int) -> int:
        """Mask of the unrecorded facts that leave rule ``index`` undecided (0 if decided or not run)."""
        return self.unknown_masks[self.evaluator.plan.root_slots[index]] if self.rule_state[index] is None else 0

    def ref_unknowns(self, key: Key) -> int:
        # rule_unknowns() over the concluders, inlined: asked once per undecided reference node.
        rule_state, masks, root_slots = self.rule_state, self.unknown_masks, self.evaluator.plan.root_slots
        sole = self.sole_concluder.get(key)
        if sole is not None:
            return masks[root_slots[sole]] if rule_state[sole] is None else 0
        mask = 0
        for index in self.concluders.get(key, ()):
            if rule_state[index] is None:
                mask |= masks[root_slots[index]]
        return mask

    def ref_state(self, key: Key) -> Tri:
        computed = self.computed
        if computed and key[0] == "derived" and key[1] in computed:
            return bool(computed[key[1]] == key[2])
        sole = self.sole_concluder.get(key)
        if sole is not None:  # dependency order guarantees the concluding rule was evaluated first
            return self.rule_state[sole]
        concluders = self.concluders.get(key)
        if not concluders:
            # A computed fact its pack did not supply is unknown; a finding no rule concludes is false.
            return None if key[0] == "derived" else False
        rule_state = self.rule_state
        state: Tri = False
        for index in concluders:
            # Dependency order guarantees the concluding rule was evaluated first.
            found = rule_state[index]
            if found is True:
                return True
            if found is None:
                state = None
        return state
