"""An independent Kleene evaluator of condition trees, written out in full, for tests to check
the engine's compiled plan and its explanations against (it shares no code with neurocds.rules.plan)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurocds.rules.conditions import MISSING, All, Condition, DerivedRef, FactTest, FindingRef, ItemTest, Not, lookup

Tri = bool | None


def oracle(node: Condition, facts: Mapping[str, Any], refs: Mapping[Any, Tri], seen: dict[int, Tri]) -> Tri:
    """Kleene's strong logic, short-circuiting left to right, recording each visited node."""
    if isinstance(node, FactTest):
        found = lookup(facts, node.path)
        if node.op == "known":
            state: Tri = (found is not MISSING) == node.value
        elif node.op == "is_not":
            state = found is MISSING or found != node.value
        elif found is MISSING:
            state = None
        else:
            state = _compare(node.op, found, node.value)
    elif isinstance(node, ItemTest):
        items = lookup(facts, node.path)
        if items is MISSING:
            state = None
        else:
            values = [i.get(node.field, MISSING) if isinstance(i, Mapping) else MISSING for i in items]
            if any(v is not MISSING and _compare(node.op, v, node.value) for v in values):
                state = True
            else:
                state = None if any(v is MISSING for v in values) else False
    elif isinstance(node, DerivedRef | FindingRef):
        state = refs.get(node.key)
    elif isinstance(node, Not):
        inner = oracle(node.item, facts, refs, seen)
        state = None if inner is None else not inner
    else:
        stop = not isinstance(node, All)  # the value that ends the scan
        state = not stop
        for child in node.children():
            value = oracle(child, facts, refs, seen)
            if value is stop:
                state = stop
                break
            if value is None:
                state = None
    seen[id(node)] = state
    return state


def _compare(op: str, found: Any, wanted: Any) -> bool:
    if op == "in":
        return found in wanted
    return {
        "eq": found == wanted,
        "ne": found != wanted,
        "lt": found < wanted,
        "lte": found <= wanted,
        "gt": found > wanted,
        "gte": found >= wanted,
    }[op]


