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
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

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

UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET", "__slots__": ()})()

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda found, wanted: found in wanted,
}


class RefSource(Protocol):
    """What a reference node asks of the running evaluation: the state of a conclusion."""

    def ref_state(self, key: tuple[str, str, Any]) -> Tri: ...


NodeFn = Callable[[Mapping[str, Any], list[Any], RefSource], Tri]


class Plan:
    """Slot numbers and closures for every node of a list of rule conditions.

    :param roots: the ``when`` tree of each rule, in rule order.
    """

    def __init__(self, roots: Sequence[Condition]):
        self._slots: dict[int, int] = {}
        self.nodes: list[Condition] = []
        self.rule_fns: list[NodeFn] = [self._compile(root) for root in roots]
        self.root_slots: list[int] = [self.slot(root) for root in roots]

    @property
    def size(self) -> int:
        return len(self.nodes)

    def slot(self, node: Condition) -> int:
        return self._slots[id(node)]

    def new_states(self) -> list[Any]:
        return [UNSET] * len(self.nodes)

    # ------------------------------------------------------------ compiling
    def _compile(self, node: Condition) -> NodeFn:
        if id(node) in self._slots:  # a node shared by two parents keeps one slot
            slot = self._slots[id(node)]
        else:
            slot = self._slots[id(node)] = len(self.nodes)
            self.nodes.append(node)
        if isinstance(node, FactTest):
            return _fact_fn(node, slot)
        if isinstance(node, ItemTest):
            return _item_fn(node, slot)
        if isinstance(node, DerivedRef | FindingRef):
            return _ref_fn(node.key, slot)
        if isinstance(node, Not):
            return _not_fn(self._compile(node.item), slot)
        if isinstance(node, All | AnyOf):
            return _group_fn(tuple(self._compile(c) for c in node.items), slot, stop=isinstance(node, AnyOf))
        raise TypeError(f"no evaluation for condition node {type(node).__name__}")


def _fact_fn(node: FactTest, slot: int) -> NodeFn:
    path, op, wanted = node.path, node.op, node.value
    two = len(path) == 2
    first, second = (path[0], path[1]) if two else ("", "")
    compare = _COMPARE.get(op)

    def fact(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        # Most fact paths are section.field: read those inline, everything else through lookup().
        if two:
            section = facts.get(first, MISSING)
            found = section.get(second, MISSING) if type(section) is dict else lookup(facts, path)
        else:
            found = lookup(facts, path)
        if compare is not None:
            state: Tri = None if found is MISSING else bool(compare(found, wanted))
        elif op == "known":
            state = (found is not MISSING) == wanted
        else:  # is_not: "not known to be V" is true when unknown, so it is never itself unknown
            state = found is MISSING or found != wanted
        st[slot] = state
        return state

    return fact


def _item_fn(node: ItemTest, slot: int) -> NodeFn:
    path, name, wanted = node.path, node.field, node.value
    compare = _COMPARE[node.op]

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


def _ref_fn(key: tuple[str, str, Any], slot: int) -> NodeFn:
    def ref(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        state = st[slot] = refs.ref_state(key)
        return state

    return ref


def _not_fn(child: NodeFn, slot: int) -> NodeFn:
    def negation(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        value = child(facts, st, refs)
        state = st[slot] = None if value is None else not value
        return state

    return negation


def _group_fn(children: tuple[NodeFn, ...], slot: int, stop: bool) -> NodeFn:
    """``all`` (stops at the first false child) or ``any`` (stops at the first true one)."""

    def group(facts: Mapping[str, Any], st: list[Any], refs: RefSource) -> Tri:
        state: Tri = not stop
        for child in children:
            value = child(facts, st, refs)
            if value is stop:
                state = stop
                break
            if value is None:
                state = None
        st[slot] = state
        return state

    return group
