"""The alpha network durable_rules builds for a compiled rule set, counted before it is built.

durable_rules 2.0.28 (``src/rules/rete.c``) gives every alpha node three fixed tables
for its children, and overflowing any of them hangs or crashes the C extension:

* a 512-bucket open-addressing hash table for ordinary tests (``=``, ``<``, ``$ex``,
  ``$iany`` ...). ``findAlpha`` probes it until it meets an empty bucket, so a full
  table (512 children) loops forever: at evaluation with 512, in ``create_ruleset``
  with 513. At most 511.
* a 128-entry list for ``$nex`` tests *and* for the forward node every ``$or`` creates
  (one per ``$or``, linked under the end of each alternative). The list is scanned
  until a zero entry, so a full list reads past its end. At most 127.
* a second hash table and list for the first test inside ``$iany`` (the "array" side),
  with the same limits; ``findAlpha`` never searches them, so each use adds a child.

A child is one *test* (property, operator, value), shared by every rule whose chain
passes through it, not a whole condition chain: 4,000 rules that each test one
threshold on a different fact add one child per fact, not 4,000. This module walks
the compiled JSON exactly as ``createAlpha`` does and reports the first node whose
table would overflow, naming the durable rule that overflows it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_HASH_CHILDREN = 511  # 512 buckets; a full table makes findAlpha / evaluation loop forever
MAX_LIST_CHILDREN = 127  # 128 entries; a full list is read past its end

_OPERATORS = {"$neq", "$lt", "$lte", "$gt", "$gte", "$ex", "$nex", "$mt", "$imt"}
_ITEM_OPERATORS = {"$iany", "$iall"}


@dataclass(eq=False)
class _Alpha:
    operator: str
    path: str  # condition path, for the error message
    tests: dict[tuple[str, str, str], _Alpha] = field(default_factory=dict)  # shared children (findAlpha)
    hash_children: int = 0
    list_children: int = 0
    array_hash_children: int = 0
    array_list_children: int = 0


@dataclass(frozen=True)
class Overflow:
    """A node whose child table would overflow; ``rule`` is the durable rule that overflows it."""

    rule: str
    path: str
    children: int
    limit: int
    kind: str  # "tests" or "'not recorded' tests and alternatives"


class _Full(Exception):
    def __init__(self, node: _Alpha, children: int, limit: int, kind: str):
        super().__init__(kind)
        self.node, self.children, self.limit, self.kind = node, children, limit, kind


class AlphaNetwork:
    """A count-only model of durable_rules' alpha network (no matching, just table sizes)."""

    def __init__(self) -> None:
        self.root = _Alpha("$root", "")

    def add_rule(self, name: str, body: Mapping[str, Any]) -> Overflow | None:
        try:
            for pattern in body["all"]:
                for condition in pattern.values():
                    self._create(condition, self.root, to_array=False)
        except _Full as full:
            return Overflow(name, full.node.path, full.children, full.limit, full.kind)
        return None

    # createAlpha: returns the node the next test of an "$and" chains under.
    def _create(self, condition: Any, parent: _Alpha, to_array: bool) -> _Alpha:
        if not isinstance(condition, dict) or len(condition) != 1:
            raise ValueError(f"not a single durable condition: {condition!r}")
        ((key, body),) = condition.items()
        if key == "$and":
            node = parent
            for index, item in enumerate(body):
                node = self._create(item, node, to_array and index == 0)
            return node
        if key == "$or":
            forward = _Alpha("$forward", f"{parent.path}|$or")
            for item in body:
                end = self._create(item, parent, to_array)
                self._link(end, forward, to_array=False)
            return forward
        if key in _ITEM_OPERATORS:
            ((prop, inner),) = body.items()
            item_node = _Alpha(key, f"{parent.path}|{key}:{prop}")  # findAlpha never shares these
            self._link(parent, item_node, to_array)
            self._create(inner, item_node, to_array=True)
            return item_node
        if key in _OPERATORS:
            ((prop, value),) = body.items()
            operator = key
        else:
            prop, value, operator = key, body, "$eq"
        return self._find(parent, operator, prop, value, to_array)

    def _find(self, parent: _Alpha, operator: str, prop: str, value: Any, to_array: bool) -> _Alpha:
        array_side = to_array and parent.operator in _ITEM_OPERATORS
        test = (prop, operator, json.dumps(value, sort_keys=True))
        if not array_side and test in parent.tests:
            return parent.tests[test]
        node = _Alpha(operator, f"{parent.path}|{_describe(test)}")
        if not array_side:
            parent.tests[test] = node
        self._link(parent, node, to_array)
        return node

    @staticmethod
    def _link(parent: _Alpha, child: _Alpha, to_array: bool) -> None:
        array_side = to_array and parent.operator in _ITEM_OPERATORS
        in_list = child.operator in ("$nex", "$forward")
        attr = f"{'array_' if array_side else ''}{'list' if in_list else 'hash'}_children"
        count = getattr(parent, attr) + 1
        limit = MAX_LIST_CHILDREN if in_list else MAX_HASH_CHILDREN
        if count > limit:
            kind = "'not recorded' tests and alternatives" if in_list else "tests"
            raise _Full(parent, count, limit, kind)
        setattr(parent, attr, count)


def _describe(test: tuple[str, str, str]) -> str:
    prop, operator, value = test
    return f"{prop} {operator} {value}"


def first_overflow(definition: Mapping[str, Mapping[str, Any]]) -> Overflow | None:
    """The first durable rule (in definition order) that would overflow a node of the network."""
    network = AlphaNetwork()
    for name, body in definition.items():
        overflow = network.add_rule(name, body)
        if overflow is not None:
            return overflow
    return None
