"""The values a facts-schema field allows, enough of them to decide what a rule test can be.

Lint asks two questions of a test (or of several tests on one field): is it true,
or false, for every value the schema allows, and can the tests be true together?
For booleans, enums and bounded integers the allowed values are listed outright.
For numbers, a conjunction of comparisons is satisfied by an interval whose ends
are among the thresholds, so the thresholds, points just either side of them and
the schema's bounds are enough candidates to decide it. Free strings are not
enumerable: only the values the tests name are tried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from neurocds.rules.plan import COMPARE

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()
_NUMERIC = ("lt", "lte", "gt", "gte")
# Enumerate an integer range outright up to this many values.
_MAX_LISTED = 1000
# Points this close either side of a threshold stand for "just below" and "just above".
_EPSILON = 1e-6


def evaluate_leaf(op: str, wanted: Any, found: Any) -> bool | None:
    """A fact test's Kleene value for one recorded value, or for :data:`MISSING`."""
    if op == "known":
        return bool((found is not MISSING) == wanted)
    if op == "is_not":
        return found is MISSING or found != wanted
    if found is MISSING:
        return None
    if op == "in":
        return any(type(found) is type(w) and found == w for w in wanted)
    if op in ("eq", "ne"):
        same = type(found) is type(wanted) and found == wanted
        return same if op == "eq" else not same
    return bool(COMPARE[op](found, wanted))


@dataclass(frozen=True)
class Domain:
    kind: str  # boolean | enum | integer | number | string
    values: tuple[Any, ...]
    low: float | None = None
    high: float | None = None
    enum: tuple[Any, ...] = ()

    @property
    def finite_or_bounded(self) -> bool:
        """Whether :attr:`values` stand for every allowed value (a free string never does)."""
        return self.kind != "string"

    def describe(self) -> str:
        if self.kind in ("boolean", "enum"):
            return "one of " + ", ".join(map(str, self.values))
        if self.kind in ("integer", "number"):
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            return f"{self.kind} {low}..{high}"
        return self.kind

    def outside(self, op: str, value: Any) -> str:
        """Why ``op value`` does not fit the field ('' when it does)."""
        values: Sequence[Any] = value if op == "in" else [value]
        if op in _NUMERIC and self.kind not in ("integer", "number"):
            return f"{op} needs a number, the field is {self.describe()}"
        for item in values:
            if self.kind == "boolean" and not isinstance(item, bool):
                return f"{item!r} is not a boolean"
            if self.kind == "enum" and not any(type(item) is type(e) and item == e for e in self.enum):
                return f"{item!r} is not {self.describe()}"
            if self.kind in ("integer", "number"):
                if isinstance(item, bool) or not isinstance(item, int | float):
                    return f"{item!r} is not a number"
                if (self.low is not None and item < self.low) or (self.high is not None and item > self.high):
                    return f"{item!r} is outside the schema's range {self.describe()}"
            if self.kind == "string" and not isinstance(item, str):
                return f"{item!r} is not a string"
        return ""


def leaf_domain(schema: Mapping[str, Any], thresholds: Sequence[Any] = ()) -> Domain:
    """The candidate values of a field, given the values the tests on it name."""
    if "enum" in schema:
        return Domain("enum", tuple(schema["enum"]), enum=tuple(schema["enum"]))
    kind = schema.get("type")
    if kind == "boolean":
        return Domain("boolean", (True, False))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if kind == "integer" and low is not None and high is not None and high - low <= _MAX_LISTED:
            return Domain("integer", tuple(range(int(low), int(high) + 1)), low, high)
        points: set[float] = {p for p in (low, high) if p is not None}
        for t in thresholds:
            if isinstance(t, int | float) and not isinstance(t, bool):
                step = 1 if kind == "integer" else _EPSILON
                points |= {t, t - step, t + step, t - 1, t + 1}
        if not points:
            points = {0, 1}
        inside = sorted(p for p in points if (low is None or p >= low) and (high is None or p <= high))
        if kind == "integer":
            inside = sorted({int(p) for p in inside if float(p).is_integer()})
        return Domain(kind, tuple(inside), low, high)
    return Domain("string", tuple(t for t in thresholds if isinstance(t, str)))
