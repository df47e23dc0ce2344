"""The reasons behind a node's state: which leaves of a condition tree made it true or false.

Condition trees are walked as *shapes* (tuples built once per engine), reading the
node states the reference evaluator's plan recorded; :func:`because_item` turns a
leaf into the result document's because-entry.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from neurocds.facts.readonly import plain_copy
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
    lookup,
)
from neurocds.rules.plan import COMPARE, UNSET, Plan

T = TypeVar("T")


# A rule's condition tree as tuples ``(slot, kind, payload)``, built once per engine: kind
# GROUP has the child shapes as payload, NOT the one child shape, LEAF the leaf node.
GROUP, NOT, LEAF = range(3)
Shape = tuple[int, int, Any]


def shape_of(node: Condition, plan: Plan) -> Shape:
    slot = plan.slot(node)
    if isinstance(node, All | AnyOf):
        return (slot, GROUP, tuple(shape_of(c, plan) for c in node.items))
    if isinstance(node, Not):
        return (slot, NOT, shape_of(node.item, plan))
    return (slot, LEAF, node)


def support(shape: Shape, want: bool, states: list[Any], out: list[Condition]) -> None:
    """Leaves that make the node evaluate to ``want`` (the 'because' of a state)."""
    slot, kind, payload = shape
    if states[slot] is not want:
        return
    if kind == GROUP:
        # Children are checked here, not in a call each: most do not match, most that do are leaves.
        for child in payload:
            if states[child[0]] is want:
                if child[1] == LEAF:
                    out.append(child[2])
                else:
                    support(child, want, states, out)
    elif kind == NOT:
        support(payload, not want, states, out)
    else:
        out.append(payload)


def support_complete(
    shape: Shape, want: bool, states: list[Any], fill: Callable[[int], Any], out: list[Condition]
) -> None:
    """Like :func:`support`, but children evaluation never reached count too.

    ``any`` stops at its first true child, so :func:`support` names one reason where
    several may hold (three red flags recorded, one shown). ``fill`` evaluates a node
    that ``states`` holds as unreached, so every child that makes the node ``want``
    is named. The caller knows the node of ``shape`` is ``want`` (a fired rule's root).
    """
    _slot, kind, payload = shape
    if kind == GROUP:
        for child in payload:
            state = states[child[0]]
            if state is UNSET:  # rare: only after an ``any`` stopped early
                state = fill(child[0])
            if state is want:
                if child[1] == LEAF:
                    out.append(child[2])
                else:
                    support_complete(child, want, states, fill, out)
    elif kind == NOT:
        support_complete(payload, not want, states, fill, out)
    else:
        out.append(payload)


def can_stop_early(root: Condition) -> bool:
    """Whether evaluation of ``root`` can leave a child unreached that would also explain it."""
    return any(isinstance(n, AnyOf | Not) for n in root.walk())


def leaf_key(node: Condition) -> tuple[str, ...]:
    """What makes two leaves explain the same thing (same fact and test, or same conclusion)."""
    if isinstance(node, DerivedRef):
        return ("derived", node.name, repr(node.value))
    if isinstance(node, FindingRef):
        return ("finding", node.finding)
    if isinstance(node, FactTest | ItemTest):
        return (type(node).__name__, node.describe())
    raise TypeError(f"leaf_key takes a leaf, not {type(node).__name__}")


def first_of_each(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """``items`` without those whose key an earlier item already had, in order."""
    seen: set[Hashable] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def because_item(node: Condition, facts: Mapping[str, Any]) -> dict[str, Any]:
    if type(node) is FactTest:  # most leaves: the exact type, tested first
        value = lookup(facts, node.path)
        if value is MISSING:
            return {"pointer": node.pointer, "recorded": False, "test": node.text}
        # A copy of a list or object: the result is the caller's to change, the facts document is not.
        return {"pointer": node.pointer, "recorded": True, "test": node.text, "value": plain_copy(value)}
    if isinstance(node, ItemTest):
        items = lookup(facts, node.path)
        with_field = [
            i for i in (items if items is not MISSING else []) if isinstance(i, Mapping) and node.field in i
        ]
        # The items that pass the test are the reason; when none does, all of them are.
        compare = COMPARE[node.op]
        passing = [i for i in with_field if compare(i[node.field], node.value)]
        return {
            "pointer": node.pointer,
            "recorded": items is not MISSING,
            "test": node.describe(),
            "value": plain_copy(passing or with_field),
        }
    if isinstance(node, DerivedRef):
        return {"derived": node.name, "value": node.value}
    assert isinstance(node, FindingRef)
    return {"finding": node.finding}
