"""A fast yes/no check for the subset of JSON Schema the facts contract uses.

``jsonschema`` builds a new validator object for every subschema it descends
into, which costs about 300 µs for a typical facts document: three times the
hot-path budget. This module compiles a schema once into nested closures that
answer only "valid or not" in a few tens of microseconds. ``FactsValidator``
trusts a "valid" answer and, on "invalid", runs ``jsonschema`` to explain every
violation, so the detailed reports always come from the reference implementation.

Agreement with ``jsonschema`` is kept by construction and checked by tests:

* the JSON types below are the *same* functions the ``jsonschema`` type checker
  is given (see :data:`JSON_TYPES`);
* formats go through the same ``FormatChecker`` instance;
* a keyword outside :data:`SUPPORTED` anywhere in a schema resource (a subschema
  with ``$id``, so its references resolve the same way standalone) makes that
  whole resource fall back to a ``jsonschema`` validator; outside any resource
  with ``$id`` it makes compilation fail (:class:`Unsupported`), and the caller
  then uses ``jsonschema`` for everything.

Nothing here knows any field of any contract.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Any], bool]

__all__ = [
    "ANNOTATIONS",
    "JSON_TYPES",
    "SUPPORTED",
    "Predicate",
    "Unsupported",
    "compile_schema",
    "is_rfc3339_date_time",
]


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    # An integral float is an integer in JSON Schema (5.0 == 5); inf and NaN are not integral.
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    # JSON has no NaN or infinity, so a Python float that holds one is not a JSON number.
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


#: JSON type name -> membership test, shared with the ``jsonschema`` type checker.
JSON_TYPES: dict[str, Predicate] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "integer": _is_integer,
    "number": _is_number,
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}

#: Keywords that only annotate: they never make an instance invalid.
ANNOTATIONS = frozenset(
    {
        "$schema", "$id", "$comment", "$anchor", "title", "description",
        "default", "examples", "deprecated", "readOnly", "writeOnly",
        # Definitions matter only where a $ref reaches them, and the $ref compiles them.
        "$defs", "definitions",
    }
)  # fmt: skip
#: Keywords this module evaluates itself.
SUPPORTED = frozenset(
    {
        "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "minLength", "maxLength", "pattern", "format",
        "properties", "required", "additionalProperties", "patternProperties",
        "minProperties", "maxProperties", "items", "minItems", "maxItems",
        "$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    }
)  # fmt: skip

# Each field's range is in the pattern itself (two zero-padded digits compare as text as they
# do as numbers), so a valid date-time needs no int() per field: converting six fields was
# most of the check's cost, and jsonschema-rs calls it for every date-time of every document.
_DATE_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
_THIRTY_DAYS = frozenset({"04", "06", "09", "11"})


def is_rfc3339_date_time(value: object) -> bool:
    """RFC 3339 ``date-time``: full date, ``T``, time, mandatory offset (``Z`` or ``±hh:mm``).

    The calendar date must exist (no 30 February). A leap second (``:60``) is accepted
    only where RFC 3339 allows one: at 23:59:60 UTC. Non-strings pass, as JSON Schema
    formats constrain strings only (``type`` rejects them separately).
    """
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second, sign, off_hour, off_minute = match.groups()
    if day > "28":  # the pattern allows up to 31 in every month
        if month == "02":
            number = int(year)
            if day == "30" or day == "31" or not (number % 4 == 0 and (number % 100 != 0 or number % 400 == 0)):
                return False
        elif day == "31" and month in _THIRTY_DAYS:
            return False
    if second == "60":
        offset = 0 if sign is None else (int(off_hour) * 60 + int(off_minute)) * (1 if sign == "+" else -1)
        return (int(hour) * 60 + int(minute) - offset) % 1440 == 23 * 60 + 59
    return True


class Unsupported(Exception):
    """The schema uses a keyword this module does not evaluate (and cannot delegate)."""


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _all(checks: list[Predicate]) -> Predicate:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def every(value: Any) -> bool:
        # An explicit loop: measurably faster than all() over a generator on this hot path.
        for check in checks:  # noqa: SIM110
            if not check(value):
                return False
        return True

    return every


def _plain_constants(values: Any, keyword: str) -> tuple[frozenset[str], tuple[Any, ...]]:
    """Strings, and ``true``/``false``/``null`` (compared by identity), of a const or enum.

    jsonschema compares with its own equality (``true`` is not 1, lists compare deeply);
    for strings that equality is plain ``==`` and for the three singletons it is
    identity, so only those are compiled here; numbers and containers are not.
    """
    strings = [v for v in values if isinstance(v, str)]
    singletons = tuple(v for v in values if v is True or v is False or v is None)
    if len(strings) + len(singletons) != len(values):
        raise Unsupported(f"{keyword} with values other than strings, true, false and null")
    return frozenset(strings), singletons


def _constant_check(values: Any, keyword: str) -> Predicate:
    strings, singletons = _plain_constants(values, keyword)
    if not singletons:
        return lambda v: isinstance(v, str) and v in strings
    return lambda v: (isinstance(v, str) and v in strings) or any(v is s for s in singletons)


def _number_check(schema: Mapping[str, Any]) -> Predicate | None:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if lo is None and hi is None and xlo is None and xhi is None:
        return None
    is_number = JSON_TYPES["number"]

    def in_range(value: Any) -> bool:
        if not is_number(value):
            return True
        return not (
            (lo is not None and value < lo)
            or (hi is not None and value > hi)
            or (xlo is not None and value <= xlo)
            or (xhi is not None and value >= xhi)
        )

    return in_range


def _string_check(schema: Mapping[str, Any]) -> Predicate | None:
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    if shortest is None and longest is None and pattern is None:
        return None

    def string_ok(value: Any) -> bool:
        if not isinstance(value, str):
            return True
        return not (
            (shortest is not None and len(value) < shortest)
            or (longest is not None and len(value) > longest)
            or (pattern is not None and pattern.search(value) is None)
        )

    return string_ok


def _object_check(schema: Mapping[str, Any], sub: Callable[[Any], Predicate]) -> Predicate | None:
    keys = ("properties", "required", "additionalProperties", "patternProperties")
    if not any(k in schema for k in (*keys, "minProperties", "maxProperties")):
        return None
    props = {name: sub(s) for name, s in schema.get("properties", {}).items()}
    patterns = [(re.compile(p), sub(s)) for p, s in schema.get("patternProperties", {}).items()]
    extra_schema = schema.get("additionalProperties", True)
    extra = None if extra_schema is True else sub(extra_schema)
    required = tuple(schema.get("required", ()))
    fewest, most = schema.get("minProperties"), schema.get("maxProperties")

    def object_ok(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in required:
            if name not in value:
                return False
        for key, member in value.items():
            check = props.get(key)
            known = check is not None
            if check is not None and not check(member):
                return False
            if patterns:
                if not isinstance(key, str):
                    return False  # let jsonschema report on keys JSON cannot have
                for regex, check_pattern in patterns:
                    if regex.search(key):
                        known = True
                        if not check_pattern(member):
                            return False
            if not known and extra is not None and not extra(member):
                return False
        return not ((fewest is not None and len(value) < fewest) or (most is not None and len(value) > most))

    return object_ok


def _array_check(schema: Mapping[str, Any], sub: Callable[[Any], Predicate]) -> Predicate | None:
    if not any(k in schema for k in ("items", "minItems", "maxItems")):
        return None
    item = sub(schema["items"]) if "items" in schema else _always
    fewest, most = schema.get("minItems"), schema.get("maxItems")

    def array_ok(value: Any) -> bool:
        if not isinstance(value, list):
            return True
        if (fewest is not None and len(value) < fewest) or (most is not None and len(value) > most):
            return False
        return all(item(element) for element in value)

    return array_ok


def compile_schema(
    schema: Any,
    *,
    conforms: Callable[[Any, str], bool],
    delegate: Callable[[Mapping[str, Any]], Predicate],
    _root: _Resource | None = None,
) -> Predicate:
    """Compile ``schema`` into a predicate that is true exactly when ``jsonschema`` says valid.

    :param conforms: ``FormatChecker.conforms`` of the checker the full validator uses.
    :param delegate: builds a ``jsonschema``-backed predicate for a whole schema resource
        (a subschema with ``$id``) that uses a keyword outside :data:`SUPPORTED` anywhere
        inside it.
    :raises Unsupported: an unsupported keyword sits in no resource with ``$id``.
    """
    if isinstance(schema, Mapping) and "$id" in schema:
        try:
            return _compile(schema, conforms, delegate, _Resource(schema))
        except Unsupported:
            # The resource is self-contained: jsonschema can judge it alone, identically.
            return delegate(schema)
    return _compile(schema, conforms, delegate, _root or _Resource(schema))


class _Resource:
    """The schema resource ``$ref`` pointers resolve in, with the targets compiled so far.

    Only local references (``#`` followed by a JSON pointer) are compiled; a reference
    to another document is :class:`Unsupported`. A target is compiled once, behind a
    forwarding predicate, so recursive definitions terminate.
    """

    def __init__(self, document: Any) -> None:
        self.document = document
        self.compiled: dict[str, Predicate] = {}

    def ref(self, pointer: str, compile_target: Callable[[Any], Predicate]) -> Predicate:
        if pointer in self.compiled:
            return self.compiled[pointer]
        if not pointer.startswith("#"):
            raise Unsupported(f"$ref to another document: {pointer!r}")
        target = self.document
        for token in (t for t in pointer[1:].split("/")[1:]):
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or token not in target:
                raise Unsupported(f"$ref {pointer!r} does not resolve in its resource")
            target = target[token]
        box: list[Predicate] = []
        self.compiled[pointer] = lambda v: box[0](v)  # forwards once the target is compiled
        box.append(compile_target(target))
        return self.compiled[pointer]


def _compile(
    schema: Any,
    conforms: Callable[[Any, str], bool],
    delegate: Callable[[Mapping[str, Any]], Predicate],
    root: _Resource,
) -> Predicate:
    def sub(node: Any) -> Predicate:
        return compile_schema(node, conforms=conforms, delegate=delegate, _root=root)

    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, Mapping):
        raise Unsupported(f"schema of type {type(schema).__name__}")
    # "x-" keywords are vendor annotations (the facts schema's x-dsi-attributes): jsonschema ignores them too.
    unknown = {k for k in set(schema) - SUPPORTED - ANNOTATIONS if not k.startswith("x-")}
    if unknown:
        raise Unsupported(f"keywords {sorted(unknown)}")
    checks: list[Predicate] = []
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
        tests = [JSON_TYPES[name] for name in names]
        checks.append(tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests))
    if "const" in schema:
        checks.append(_constant_check([schema["const"]], "const"))
    if "enum" in schema:
        checks.append(_constant_check(list(schema["enum"]), "enum"))
    if "format" in schema:
        fmt = schema["format"]
        checks.append(lambda v: conforms(v, fmt))
    for build in (_number_check, _string_check):
        check = build(schema)
        if check is not None:
            checks.append(check)
    for build_nested in (_object_check, _array_check, _combination_check):
        check = build_nested(schema, sub)
        if check is not None:
            checks.append(check)
    if "$ref" in schema:
        checks.append(root.ref(schema["$ref"], sub))
    return _all(checks)


def _combination_check(schema: Mapping[str, Any], sub: Callable[[Any], Predicate]) -> Predicate | None:
    """``allOf``, ``anyOf``, ``oneOf``, ``not`` and ``if``/``then``/``else``."""
    checks: list[Predicate] = []
    if "allOf" in schema:
        checks.append(_all([sub(s) for s in schema["allOf"]]))
    if "anyOf" in schema:
        anyof = [sub(s) for s in schema["anyOf"]]
        checks.append(lambda v: any(p(v) for p in anyof))
    if "oneOf" in schema:
        oneof = [sub(s) for s in schema["oneOf"]]
        checks.append(lambda v: sum(1 for p in oneof if p(v)) == 1)
    if "not" in schema:
        negated = sub(schema["not"])
        checks.append(lambda v: not negated(v))
    if "if" in schema and ("then" in schema or "else" in schema):
        condition = sub(schema["if"])
        then = sub(schema["then"]) if "then" in schema else _always
        otherwise = sub(schema["else"]) if "else" in schema else _always
        checks.append(lambda v: then(v) if condition(v) else otherwise(v))
    return _all(checks) if checks else None
