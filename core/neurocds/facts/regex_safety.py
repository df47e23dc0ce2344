"""Regular expressions in a pack's facts_schema must finish quickly on any input.

Python's ``re`` backtracks: ``^(a+)+$`` took 28 s on a 29-character string, and even
``a*b`` is quadratic in the string's length. ``re`` holds the GIL and cannot be
interrupted, so a time limit at validation is impossible; the bound is put on the
schema at load instead:

* refused outright: a quantifier inside a quantified group (``(a+)+``), an
  alternation inside a quantifier (``(a|ab)*``) and backreferences: these can take
  exponential time;
* what remains takes at most about ``n ** (k + 1)`` steps for ``k`` repeats on a
  string of ``n`` characters, so the schema must bound ``n``: a ``pattern`` needs a
  ``maxLength`` beside it, and ``patternProperties`` a ``propertyNames.maxLength``,
  small enough that ``n ** (k + 1)`` stays under :data:`STEP_BUDGET` (about 0.1 s).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from neurocds.facts.plainjson import escape_pointer_token

# The regex parser is private (no stubs), but it is the one re itself uses (this layout since 3.11).
sre_c: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")

STEP_BUDGET = 10**8
MAX_SUBJECT_CHARS = 10_000
# Keywords whose values are data, not schemas: a "pattern" member there is not a regex.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


class UnsafePattern(ValueError):
    """A regex in a pack schema that could run for too long; ``pointer`` locates it."""

    def __init__(self, message: str, pointer: str) -> None:
        super().__init__(f"{message} (at {pointer})")
        self.pointer = pointer


def check_schema_patterns(schema: Any, pointer: str = "") -> None:
    """Raise :class:`UnsafePattern` for the first ``pattern``/``patternProperties`` regex that is unsafe."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            check_schema_patterns(item, f"{pointer}/{i}")
        return
    if not isinstance(schema, Mapping):
        return
    if isinstance(schema.get("pattern"), str):
        _check(schema["pattern"], schema.get("maxLength"), "maxLength", f"{pointer}/pattern")
    props = schema.get("patternProperties")
    if isinstance(props, Mapping):
        names = schema.get("propertyNames")
        limit = names.get("maxLength") if isinstance(names, Mapping) else None
        for regex in props:
            where = f"{pointer}/patternProperties/{escape_pointer_token(regex)}"
            _check(regex, limit, "propertyNames.maxLength", where)
    for key, value in schema.items():
        if key not in _DATA_KEYWORDS:
            check_schema_patterns(value, f"{pointer}/{escape_pointer_token(str(key))}")


def _check(regex: str, max_length: Any, bound_name: str, pointer: str) -> None:
    try:
        tree = sre_parse.parse(regex)
    except re.error as exc:
        raise UnsafePattern(f"invalid regular expression {regex!r}: {exc}", pointer) from None
    problem = _exponential(tree, inside_repeat=False)
    if problem:
        raise UnsafePattern(f"regular expression {regex!r} can take exponential time: {problem}", pointer)
    repeats = sum(1 for _ in _repeats(tree))
    if not repeats:
        return  # no quantifier: linear in the text at worst
    allowed = min(MAX_SUBJECT_CHARS, int(STEP_BUDGET ** (1 / (repeats + 1))))
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length > allowed:
        raise UnsafePattern(
            f"regular expression {regex!r} needs {bound_name} of at most {allowed} beside it "
            f"(matching time grows with the length of the text)",
            pointer,
        )


def _exponential(tree: Any, *, inside_repeat: bool) -> str:
    for op, arg in tree:
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            return "backreferences are not allowed"
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            _, high, body = arg
            many = high is sre_c.MAXREPEAT or high > 1
            if many and inside_repeat:
                return "a quantifier inside a quantified group"
            problem = _exponential(body, inside_repeat=inside_repeat or many)
        elif op is sre_c.BRANCH:
            if inside_repeat:
                return "an alternation inside a quantifier"
            problem = next((p for branch in arg[1] if (p := _exponential(branch, inside_repeat=False))), "")
        elif op is sre_c.SUBPATTERN:
            problem = _exponential(arg[3], inside_repeat=inside_repeat)
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            problem = _exponential(arg[1], inside_repeat=inside_repeat)
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            problem = _exponential(arg, inside_repeat=inside_repeat)
        else:
            problem = ""
        if problem:
            return problem
    return ""


def _repeats(tree: Any) -> Iterator[Any]:
    """Every quantifier that can repeat more than once, at any depth."""
    for op, arg in tree:
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            if arg[1] is sre_c.MAXREPEAT or arg[1] > 1:
                yield arg
            yield from _repeats(arg[2])
        elif op is sre_c.BRANCH:
            for branch in arg[1]:
                yield from _repeats(branch)
        elif op is sre_c.SUBPATTERN:
            yield from _repeats(arg[3])
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            yield from _repeats(arg[1])
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            yield from _repeats(arg)


