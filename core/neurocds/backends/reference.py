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
        # Most conclusions have one concluding rule: their state is that rule's, read directly.
        self.sole_concluder = {key: rules[0] for key, rules in self.concluders.items() if len(rules) == 1}
        # Unless a pack computes a fact of that name, whose value then decides (see ref_state).
        self.sole_derived_names = frozenset(key[1] for key in self.sole_concluder if key[0] == "derived")
        self.plan = Plan([rule.when for rule in self.rules], self.sole_concluder)
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
        rules, rule_state, states = self.rules, evaluation.rule_state, evaluation.states
        ordered = self.ordered_fns
        if disabled:
            # A failed pack's conclusions are unknown, so what depends on them stays undecided.
            ordered = [(index, fn) for index, fn in ordered if rules[index].pack not in disabled]
        for index, rule_fn in ordered:
            state = rule_state[index] = rule_fn(facts, states, evaluation)
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
    evaluation never reached the node. Which unrecorded facts leave an undecided node
    undecided (:meth:`rule_unknowns`, :attr:`unknown_masks`) is derived from these when
    an explanation first asks (see :mod:`neurocds.rules.plan`), not while evaluating.
    """

    __slots__ = (
        "_found",
        "_rule_masks",
        "because_cache",
        "completed",
        "computed",
        "concluders",
        "evaluator",
        "facts",
        "rule_state",
        "sole_concluder",
        "sole_states",
        "states",
    )

    def __init__(self, evaluator: ReferenceEvaluator, facts: Mapping[str, Any], computed: Mapping[str, Any]):
        self.evaluator = evaluator
        self.facts = facts
        self.computed = computed
        self.concluders = evaluator.concluders  # read by every reference node: one attribute, not two
        self.sole_concluder = evaluator.sole_concluder
        self.rule_state: list[Tri] = [None] * len(evaluator.rules)
        overridden = computed and not evaluator.sole_derived_names.isdisjoint(computed)
        self.sole_states: list[Tri] | None = None if overridden else self.rule_state
        self.states: list[Any] = evaluator.plan.new_states()
        self.because_cache: dict[int, list[dict[str, Any]]] = {}
        # States with unreached nodes evaluated on demand, for explanations only.
        self.completed: list[Any] | None = None
        self._rule_masks: list[int] | None = None
        self._found: dict[int, int] = {}  # slot -> mask, for the undecided nodes derived so far

    def state(self, node: Condition) -> Any:
        """The state of one node of one of the evaluator's rules (``UNSET`` if never reached)."""
        return self.states[self.evaluator.plan.slot(node)]

    def rule_masks(self) -> list[int]:
        """Per rule index, the mask of the unrecorded facts that leave it undecided (0 if decided or not run).

        Derived for every undecided rule at once, in evaluation order: a reference's
        concluding rules come first, so their masks are there when it asks, and a long
        chain of rules costs no deep recursion.
        """
        masks = self._rule_masks
        if masks is None:
            masks = self._rule_masks = [0] * len(self.rule_state)
            plan, states, found, rule_state = self.evaluator.plan, self.states, self._found, self.rule_state
            for index in self.evaluator.order:
                if rule_state[index] is None:
                    masks[index] = plan.unknowns(plan.root_slots[index], states, found, self.ref_unknowns)
        return masks

    def rule_unknowns(self, index: int) -> int:
        """Mask of the unrecorded facts that leave rule ``index`` undecided (0 if decided or not run)."""
        return self.rule_masks()[index]

    def ref_unknowns(self, key: Key) -> int:
        """Mask of an undecided conclusion: the union over its undecided concluding rules."""
        masks, rule_state = self._rule_masks, self.rule_state
        if masks is None:
            masks = self.rule_masks()
        mask = 0
        for index in self.concluders.get(key, ()):
            if rule_state[index] is None:
                mask |= masks[index]
        return mask

    @property
    def unknown_masks(self) -> list[int]:
        """Every node's mask by plan slot (0 where decided or never reached): for tools and tests."""
        plan, states, found = self.evaluator.plan, self.states, self._found
        self.rule_masks()
        return [plan.unknowns(slot, states, found, self.ref_unknowns) for slot in range(plan.size)]

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
