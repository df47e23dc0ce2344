"""Condition trees compiled once into closures that record every node's state in a slot.

The reference evaluator runs on every evaluation (it explains, and it checks
durable_rules), so its per-node cost decides throughput. At engine start each
node of each rule gets a slot number and a closure; an evaluation is then one
call per node writing into a flat list, instead of a recursive walk that memoised
states in a dict keyed by ``id(node)``. No source text is generated or ``exec``-ed:
the closures are ordinary nested functions parameterised by the node's data.

States are Kleene values: ``True``, ``False`` or ``None`` (unknown). A slot the
evaluation never reached, because ``all`` stopped at a false child or ``any`` at
a true one, holds :data:`UNSET`, which is neither: explanations treat it as
"not part of the reason" and "not unknown".

Which unrecorded facts leave an undecided node undecided is a bitmask over the
plan's fact pointers (bit ``i`` is ``pointers[i]``, pointers in sorted order): a
leaf its own bit, ``all``/``any``/``not`` the union of their undecided children, a
reference the union over the undecided rules that would conclude it. Only the
explanation (missing data, the why-not trace) reads these, so they are not made
while evaluating: :meth:`Plan.unknowns` derives them from the recorded states when
first asked. That is exact because an undecided ``all``/``any`` never stopped early
(only a false or a true child stops one), so every child it has was evaluated and
recorded; and a reference's concluding rules were final before it was evaluated.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from neurocds.rules.conditions import (
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

UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET", "__slots__": ()})()

COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda found, wanted: found in wanted,
}


# Masks are turned into pointer tuples through a cache; real documents repeat a few hundred masks,
# and the bound keeps a stream of unusual ones from growing it without end. One document can
# produce a distinct mask per node, so the bound grows with the plan: a fixed 4,096 was cleared
# over and over by a 4,000-rule set (1,564 misses per evaluation), making cost superlinear.
POINTER_CACHE_SIZE = 4096
POINTER_CACHE_PER_NODE = 4


class RefSource(Protocol):
    """What a reference node asks of the running evaluation: the state of a conclusion."""

    # The state of each rule so far, by rule index, when a conclusion with a sole concluding
    # rule is that rule's state (no computed fact of that name overrides it); else None.
    sole_states: list[Tri] | None

    def ref_state(self, key: tuple[str, str, Any]) -> Tri: ...


# A node's closure: (facts, states, the running evaluation) -> its state.
NodeFn = Callable[[Mapping[str, Any], list[Any], RefSource], Tri]
# The mask of an undecided conclusion (the union over its undecided concluding rules).
RefUnknowns = Callable[[tuple[str, str, Any]], int]

# How a group runs each child, chosen at compile time. A Python call per child was most of
# the reference evaluation's cost (about 320 node calls per document, over half of them
# fact leaves), so the commonest leaf shapes run inline in the group's loop. A step is
# (kind, slot, section or key, field, wanted, closure); the closure is the child's own,
# used for CALL and wherever the inline path does not apply.
FACT_EQ, FACT_LTE, FACT_LT, FACT_GT, FACT_GTE, FACT_NE, FACT_IN = range(7)  # section.field <op> wanted
FACT_KNOWN, FACT_IS_NOT = 7, 8  # never unknown: an unrecorded fact decides them too
FACT_KINDS = {"eq": FACT_EQ, "lte": FACT_LTE, "lt": FACT_LT, "gt": FACT_GT, "gte": FACT_GTE, "ne": FACT_NE}
FACT_KINDS.update({"in": FACT_IN, "is_not": FACT_IS_NOT})
SOLE_REF = 9  # a reference to a conclusion of one rule: that rule's state, read directly
REF = 10  # any other derived or finding reference, asked of the running evaluation
CALL = 11  # anything else
NO_SECTION: Mapping[str, Any] = {}  # what an absent section reads as: every field in it is absent
Step = tuple[int, int, Any, str, Any, NodeFn]


class Plan:
    """Slot numbers and closures for every node of a list of rule conditions.

    :param roots: the ``when`` tree of each rule, in rule order.
    :param sole: reference key -> index of the one rule that concludes it, where only one does.
    """

    def __init__(self, roots: Sequence[Condition], sole: Mapping[tuple[str, str, Any], int] | None = None):
        self._sole = sole or {}
        self._slots: dict[int, int] = {}
        self.nodes: list[Condition] = []
        leaves = (n for root in roots for n in root.walk() if isinstance(n, FactTest | ItemTest))
        self.pointers: tuple[str, ...] = tuple(sorted({n.pointer for n in leaves}))
        self._bit = {pointer: 1 << i for i, pointer in enumerate(self.pointers)}
        self._pointer_cache: dict[int, tuple[str, ...]] = {}
        # What an undecided node's mask is made of, by slot: a leaf's bit, a reference's key,
        # or the slots of the children whose masks it unites (see unknowns()).
        self._leaf_bit: list[int] = []
        self._ref_key: list[tuple[str, str, Any] | None] = []
        self._children: list[tuple[int, ...]] = []
        # Every node's closure by slot, so that one node can be evaluated on its own: explanations
        # complete an ``any`` that stopped at its first true child (see neurocds.explain.explainer.support).
        self.fns: dict[int, NodeFn] = {}
        self.rule_fns: list[NodeFn] = [self._compile(root) for root in roots]
        self.root_slots: list[int] = [self.slot(root) for root in roots]
        self._pointer_cache_limit = max(POINTER_CACHE_SIZE, POINTER_CACHE_PER_NODE * len(self.nodes))

    @property
    def size(self) -> int:
        return len(self.nodes)

    def slot(self, node: Condition) -> int:
        return self._slots[id(node)]

    def new_states(self) -> list[Any]:
        return [UNSET] * len(self.nodes)

    def unknowns(self, slot: int, states: list[Any], found: dict[int, int], ref_unknowns: RefUnknowns) -> int:
        """Mask of the unrecorded facts that leave node ``slot`` undecided (0 if decided or unreached).

        Derived from ``states`` as the module docstring says; ``found`` keeps the masks
        already derived (slot -> mask) for the evaluation whose states these are.
        """
        if states[slot] is not None:
            return 0
        mask = found.get(slot)
        if mask is None:
            mask = self._leaf_bit[slot]
            if not mask:
                key = self._ref_key[slot]
                if key is not None:
                    mask = ref_unknowns(key)
                else:
                    for child in self._children[slot]:
                        if states[child] is None:
                            mask |= self.unknowns(child, states, found, ref_unknowns)
            found[slot] = mask
        return mask

    def pointers_of(self, mask: int) -> tuple[str, ...]:
        """The pointers of a mask, in sorted order."""
        found = self._pointer_cache.get(mask)
        if found is None:
            pointers, rest, out = self.pointers, mask, []
            while rest:  # set bits only, lowest first: the pointers' sorted order
                lowest = rest & -rest
                out.append(pointers[lowest.bit_length() - 1])
                rest ^= lowest
            found = tuple(out)
            if len(self._pointer_cache) >= self._pointer_cache_limit:
                self._pointer_cache.clear()
            self._pointer_cache[mask] = found
        return found

    # ------------------------------------------------------------ compiling
    def _compile(self, node: Condition) -> NodeFn:
        fn = self._compile_node(node)
        self.fns.setdefault(self.slot(node), fn)
        return fn

    def _step(self, child: Condition) -> Step:
        """How a group evaluates one child: inline where the child's shape allows, else by its closure."""
        fn = self._compile(child)
        slot = self.slot(child)
        if isinstance(child, FactTest) and len(child.path) == 2:
            section, name = child.path
            if child.op in FACT_KINDS:
                return (FACT_KINDS[child.op], slot, section, name, child.value, fn)
            if child.op == "known" and type(child.value) is bool:  # the schema's type: inline "not wanted"
                return (FACT_KNOWN, slot, section, name, child.value, fn)
        if isinstance(child, DerivedRef | FindingRef):
            index = self._sole.get(child.key)
            return (REF, slot, child.key, "", None, fn) if index is None else (SOLE_REF, slot, child.key, "", index, fn)
        return (CALL, slot, "", "", None, fn)

    def _compile_node(self, node: Condition) -> NodeFn:
        if id(node) in self._slots:  # a node shared by two parents keeps one slot
            slot = self._slots[id(node)]
        else:
            slot = self._slots[id(node)] = len(self.nodes)
            self.nodes.append(node)
            self._leaf_bit.append(self._bit[node.pointer] if isinstance(node, FactTest | ItemTest) else 0)
            self._ref_key.append(node.key if isinstance(node, DerivedRef | FindingRef) else None)
            self._children.append(())  # a group's or negation's, once its children have slots
        if isinstance(node, FactTest):
            return _fact_fn(node, slot)
        if isinstance(node, ItemTest):
            return _item_fn(node, slot)
        if isinstance(node, DerivedRef | FindingRef):
            return _ref_fn(node.key, slot, self._sole.get(node.key))
        if isinstance(node, Not):
            child = self._compile(node.item)
            self._children[slot] = (self.slot(node.item),)
            return _not_fn(child, slot)
        if isinstance(node, All | AnyOf):
            steps = tuple(self._step(child) for child in node.items)
            self._children[slot] = tuple(step[1] for step in steps)
            return _group_fn(steps, slot, stop=isinstance(node, AnyOf))
        raise TypeError(f"no evaluation for condition node {type(node).__name__}")


def _fact_fn(node: FactTest, slot: int) -> NodeFn:
    path, op, wanted = node.path, node.op, node.value
    two = len(path) == 2
    compare = COMPARE.get(op)
    if two and compare is not None:
        return _section_compare_fn(node, slot, compare)
    first, second = (path[0], path[1]) if two else ("", "")

    def fact(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        # Most fact paths are section.field: read those inline, everything else through lookup().
        if two:
            section = facts.get(first, MISSING)
            if type(section) is dict:
                found = section.get(second, MISSING)
            else:
                found = MISSING if section is MISSING else lookup(facts, path)
        else:
            found = lookup(facts, path)
        if compare is not None:
            if found is MISSING:
                st[slot] = None
                return None
            # Validated facts are JSON scalars, whose comparisons give bool (no rich-comparison objects).
            state: Tri = compare(found, wanted)
        elif op == "known":
            state = (found is not MISSING) == wanted
        else:  # is_not: "not known to be V" is true when unknown, so it is never itself unknown
            state = found is MISSING or found != wanted
        st[slot] = state
        return state

    return fact


def _section_compare_fn(node: FactTest, slot: int, compare: Callable[[Any, Any], Any]) -> NodeFn:
    """The commonest leaf, ``section.field <op> value``, with no shape tests on its path."""
    path, (first, second), wanted = node.path, node.path, node.value

    def section_compare(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        try:
            found = facts.get(first, NO_SECTION).get(second, MISSING)
        except AttributeError:  # a section that is not an object
            found = lookup(facts, path)
        if found is MISSING:
            st[slot] = None
            return None
        # Validated facts are JSON scalars, whose comparisons give bool (no rich-comparison objects).
        state: Tri = compare(found, wanted)
        st[slot] = state
        return state

    return section_compare


def _item_fn(node: ItemTest, slot: int) -> NodeFn:
    path, name, wanted = node.path, node.field, node.value
    compare = COMPARE[node.op]

    def item_test(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        items = lookup(facts, path)
        state: Tri
        if items is MISSING:
            state = None
        else:
            state = False
            for item in items:
                found = item.get(name, MISSING) if isinstance(item, Mapping) else MISSING
                if found is MISSING:
                    state = None
                elif compare(found, wanted):
                    state = True
                    break
        st[slot] = state
        return state

    return item_test


def _ref_fn(key: tuple[str, str, Any], slot: int, index: int | None) -> NodeFn:
    def ref(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        sole = refs.sole_states
        state = st[slot] = sole[index] if sole is not None and index is not None else refs.ref_state(key)
        return state

    return ref


def _not_fn(child: NodeFn, slot: int) -> NodeFn:
    def negation(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        value = child(facts, st, refs)
        state = st[slot] = None if value is None else not value
        return state

    return negation


def _group_fn(steps: tuple[Step, ...], slot: int, stop: bool) -> NodeFn:
    """``all`` (stops at the first false child) or ``any`` (stops at the first true one).

    Each child records its state exactly as its own closure would, so an inline child
    leaves the same slots behind as a called one.
    """
    unstopped = not stop

    def group(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        state: Tri = unstopped
        value: Tri
        for kind, child_slot, first, second, wanted, fn in steps:
            if kind < SOLE_REF:
                try:
                    found = facts.get(first, NO_SECTION).get(second, MISSING)
                except AttributeError:  # a section that is not an object: the closure's general lookup
                    value = fn(facts, st, refs)
                else:
                    if found is MISSING:
                        if kind < FACT_KNOWN:  # unknown: never the stopping value, so go on
                            st[child_slot] = state = None
                            continue
                        # "known: V" is V when recorded, so not V when not; "is_not" holds when not recorded.
                        value = kind == FACT_IS_NOT or not wanted
                    # Inline comparisons, commonest first (as the built-in packs' evaluations run them);
                    # validated facts are JSON scalars, whose comparisons give bool, exactly as the
                    # COMPARE functions the closures call.
                    elif kind == FACT_EQ:
                        value = found == wanted
                    elif kind == FACT_LTE:
                        value = found <= wanted
                    elif kind == FACT_IS_NOT:  # recorded, so: not the value
                        value = found != wanted
                    elif kind == FACT_IN:
                        value = found in wanted
                    elif kind == FACT_KNOWN:
                        value = wanted
                    elif kind == FACT_LT:
                        value = found < wanted
                    elif kind == FACT_GT:
                        value = found > wanted
                    elif kind == FACT_GTE:
                        value = found >= wanted
                    else:  # FACT_NE
                        value = found != wanted
                    st[child_slot] = value
                    if value is stop:
                        st[slot] = stop
                        return stop
                    continue
            elif kind == SOLE_REF:
                sole = refs.sole_states
                st[child_slot] = value = sole[wanted] if sole is not None else refs.ref_state(first)
            elif kind == REF:
                st[child_slot] = value = refs.ref_state(first)
            else:
                value = fn(facts, st, refs)
            if value is stop:
                st[slot] = stop
                return stop
            if value is None:
                state = None
        st[slot] = state
        return state

    return group
