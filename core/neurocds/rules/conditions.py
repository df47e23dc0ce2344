"""Condition trees of declarative rules, and their three-valued (Kleene) meaning.

A condition evaluates to ``True``, ``False`` or ``None`` (unknown). A fact that is
absent from the document is unknown, never false: ``{fact: a.b, eq: true}`` is
``None`` when ``a.b`` is absent and ``False`` only when it is recorded as something
else. ``all``/``any``/``not`` follow Kleene's strong logic, which obeys De Morgan's
laws; that is what lets the compiler push negations down to the leaves for
durable_rules and still agree with the reference evaluator (a rule fires only on
``True``). The nodes here are data; :mod:`neurocds.rules.plan` compiles them for evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Tri = bool | None

MISSING: Any = object()

# Operators a fact leaf may use; the ruleset schema, the plan and the wording use exactly these (tested).
COMPARISONS = ("eq", "ne", "lt", "lte", "gt", "gte", "in")
FACT_OPS = (*COMPARISONS, "known", "is_not")
NUMERIC_OPS = ("lt", "lte", "gt", "gte")

# Negation of each comparison under Kleene logic (both sides unknown on a missing fact).
NEGATED_OP = {"eq": "ne", "ne": "eq", "lt": "gte", "lte": "gt", "gt": "lte", "gte": "lt"}

OP_SYMBOL = {"eq": "=", "ne": "≠", "lt": "<", "lte": "≤", "gt": ">", "gte": "≥", "in": "in"}


def lookup(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """Return the value at ``path`` or :data:`MISSING`."""
    node: Any = doc
    for part in path:
        # Validated facts are plain dicts; isinstance against the Mapping ABC is slow on this hot path.
        if type(node) is not dict and not isinstance(node, Mapping):
            return MISSING
        node = node.get(part, MISSING)
        if node is MISSING:
            return MISSING
    return node


def to_pointer(path: tuple[str, ...]) -> str:
    """RFC 6901 JSON pointer of a dotted fact path."""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)



class Condition:
    """Base of every node."""

    __slots__ = ()

    def children(self) -> tuple[Condition, ...]:
        return ()

    def walk(self) -> Iterator[Condition]:
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class FactTest(Condition):
    """A test of one input fact: ``{fact: path, <op>: value}``."""

    path: tuple[str, ...]
    op: str
    value: Any
    pointer: str = field(default="", compare=False)
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Computed once: explanations ask for these on every evaluation.
        object.__setattr__(self, "pointer", to_pointer(self.path))
        object.__setattr__(self, "text", self._describe())

    def describe(self) -> str:
        return self.text

    def _describe(self) -> str:
        dotted = ".".join(self.path)
        if self.op == "known":
            return f"{dotted} is {'recorded' if self.value else 'not recorded'}"
        if self.op == "is_not":
            return f"{dotted} is not recorded as {_show(self.value)}"
        return f"{dotted} {OP_SYMBOL[self.op]} {_show(self.value)}"


@dataclass(frozen=True, slots=True)
class ItemTest(Condition):
    """Some item of an array fact satisfies a test: ``{any_item: path, where: {field, op}}``."""

    path: tuple[str, ...]
    field: str
    op: str
    value: Any
    # dataclasses.field by its full name: the member ``field`` above shadows it in this class body.
    pointer: str = dataclasses.field(default="", compare=False)
    text: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pointer", to_pointer(self.path))
        dotted = ".".join(self.path)
        test = f"{self.field} {OP_SYMBOL[self.op]} {_show(self.value)}"
        object.__setattr__(self, "text", f"some {dotted} item has {test}")

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class DerivedRef(Condition):
    """A derived fact concluded by another rule (or computed by a pack): ``{derived: name}``."""

    name: str
    value: Any = True

    @property
    def key(self) -> tuple[str, str, Any]:
        return ("derived", self.name, self.value)

    def describe(self) -> str:
        return self.name if self.value is True else f"{self.name} = {_show(self.value)}"


@dataclass(frozen=True, slots=True)
class FindingRef(Condition):
    """A finding concluded by another rule: ``{finding: id}``."""

    finding: str

    @property
    def key(self) -> tuple[str, str, Any]:
        return ("finding", self.finding, True)

    def describe(self) -> str:
        return f"finding {self.finding}"


@dataclass(frozen=True, slots=True)
class All(Condition):
    items: tuple[Condition, ...]

    def children(self) -> tuple[Condition, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    items: tuple[Condition, ...]

    def children(self) -> tuple[Condition, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class Not(Condition):
    item: Condition

    def children(self) -> tuple[Condition, ...]:
        return (self.item,)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)
