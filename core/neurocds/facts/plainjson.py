"""Python values as JSON data: what JSON can carry, and how a problem is located and shown.

Shared by the strict parser (:mod:`neurocds.facts.strictjson`, JSON text) and the
validator (Python documents), so that both paths refuse the same values with the
same pointers and codes: a string or member name holding an unpaired UTF-16
surrogate (``utf8``: no UTF-8 output can carry it), a number that is not a finite
float (``non_finite``: NaN, infinity, an integer beyond float range, including one
over Python's 4,300-digit limit), a value JSON has no type for (``type``), nesting
deeper than allowed (``depth``). Walks are iterative and stop after
:data:`MAX_VIOLATIONS` + 1 problems, so refusing costs little however bad the input.
"""

from __future__ import annotations

import gc
import heapq
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, compress, filterfalse, repeat
from operator import is_
from typing import Any

from neurocds.errors import FactsValidationError, Violation
from neurocds.facts.fastparse import deeper_than
from neurocds.facts.gallop import first_unclean_indexes

__all__ = [
    "MAX_VIOLATIONS",
    "capped_error",
    "describe_value",
    "escape_pointer_token",
    "first_names_in_pointer_order",
    "has_lone_surrogate",
    "is_float_overflow",
    "is_plain_json",
    "json_type_name",
    "over_structure_limit",
    "plain_json_problems",
    "printable_unicode",
    "surrogate_violation",
    "token_order",
    "unclean_children",
    "violation_sort_key",
]

#: Problems collected per document at most; the rest are counted as "more", not listed.
MAX_VIOLATIONS = 100
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_FOUND_MAX = 60
# The smallest integer magnitude float() refuses (it rounds to 2**1024): the same line
# the JSON path draws for integer literals, so a dict and its JSON agree.
_FLOAT_OVERFLOW = 2**1024 - 2**970
_PLAIN_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})
_CONTAINER_TYPES = frozenset({dict, list})
# Below Python's 4,300-digit limit on converting text to int.
_INT_DIGITS_SAFE = 4_000


def escape_pointer_token(token: str | int) -> str:
    """Escape one reference token for an RFC 6901 JSON pointer (``~`` -> ``~0``, ``/`` -> ``~1``).

    An unpaired surrogate (which no UTF-8 output can carry) is written as ``\\udXXX``.
    """
    text = str(token).replace("~", "~0").replace("/", "~1")
    return text if text.isascii() else printable_unicode(text)


def printable_unicode(text: str) -> str:
    """``text`` with each unpaired UTF-16 surrogate written as the six characters ``\\udXXX``."""
    return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds an unpaired surrogate (so it cannot be encoded as UTF-8)."""
    return not text.isascii() and LONE_SURROGATE.search(text) is not None


def is_float_overflow(number: int) -> bool:
    """True when ``float(number)`` would overflow: the integer is not a finite JSON number."""
    return number >= _FLOAT_OVERFLOW or number <= -_FLOAT_OVERFLOW


def token_order(token: str) -> tuple[int, int, str]:
    """A reference token's place among its siblings: array indexes (digits) numerically, first.

    Numbers are compared by their digits, never converted: a member name of 5,000 digits
    is over Python's int conversion limit.
    """
    if token.isascii() and token.isdigit():
        digits = token.lstrip("0")
        return 0, len(digits), digits
    return 1, 0, token


def violation_sort_key(violation: Violation) -> tuple[Any, ...]:
    """Deterministic order: by pointer (array indexes numerically), then code, then message."""
    tokens = tuple(map(token_order, violation.pointer.split("/")[1:]))
    return tokens, violation.code, violation.message


def first_names_in_pointer_order(names: list[str], count: int) -> list[str]:
    """The ``count`` first of ``names`` in the order their pointer tokens sort (ties: as given).

    What ``heapq.nsmallest(count, names, key=...)`` of each name's escaped token gives, at
    C speed when no name needs escaping (175,000 repeated names cost one key call each).
    """
    joined = "".join(names)
    if "~" in joined or "/" in joined or has_lone_surrogate(joined):
        return heapq.nsmallest(count, names, key=lambda name: token_order(escape_pointer_token(name)))
    numbers = [*filter(str.isdigit, filter(str.isascii, names))]
    if not numbers:
        return heapq.nsmallest(count, names)
    others = [*filterfalse(set(numbers).__contains__, names)]
    # int() is the C-speed key wherever it can convert (it orders digits as token_order does).
    fits = max(map(len, numbers)) <= _INT_DIGITS_SAFE
    first = heapq.nsmallest(count, numbers, key=int if fits else token_order)
    return first + heapq.nsmallest(count - len(first), others)


def surrogate_violation(pointer: str) -> Violation:
    return Violation(
        pointer=pointer,
        message="string contains an unpaired UTF-16 surrogate escape (not valid Unicode)",
        expected="valid Unicode text",
        code="utf8",
    )


def capped_error(
    problems: list[Violation], *, facts_sha256: str | Callable[[], str | None] | None = None
) -> FactsValidationError:
    """The error for ``problems`` sorted, keeping the first :data:`MAX_VIOLATIONS` (flagged when cut)."""
    problems.sort(key=violation_sort_key)
    truncated = len(problems) > MAX_VIOLATIONS
    return FactsValidationError(problems[:MAX_VIOLATIONS], facts_sha256=facts_sha256, truncated=truncated)


def json_type_name(value: Any) -> str:
    """The JSON type name of a Python value (``integer``, ``object`` ...), or its class name."""
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if isinstance(value, kind):
            return name
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def describe_value(value: Any) -> str:
    """JSON type and a short rendering of ``value`` (at most 60 characters of it), for ``Violation.found``.

    Never raises, whatever the value: an integer too long to print is described by its
    size, and unpaired surrogates are written as ``\\udXXX`` so the text can be encoded.
    """
    if isinstance(value, dict | list) and len(value) > 8:
        return f"{json_type_name(value)} of {len(value)} {'members' if isinstance(value, dict) else 'items'}"
    if isinstance(value, int) and not isinstance(value, bool) and is_float_overflow(value):
        # str() of an int over 4300 digits raises; the size is what the reader needs.
        return f"integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except Exception:  # a foreign object's own __repr__ may raise anything
            text = f"a {type(value).__name__}"
    if len(text) > _FOUND_MAX:
        text = text[: _FOUND_MAX - 1] + "…"
    return f"{json_type_name(value)} {printable_unicode(text)}"


def _has_lone_surrogate_in(strings: Iterable[str]) -> bool:
    text = "".join(strings)
    return not text.isascii() and LONE_SURROGATE.search(text) is not None


def _level_is_plain(level: list[Any], kinds: set[type], depth: int, max_depth: int) -> bool:
    """One breadth-first level of :func:`is_plain_json`: every check a C-speed pass over the level."""
    if not kinds <= _PLAIN_TYPES:
        return False
    has_dict = dict in kinds
    if (has_dict or list in kinds) and depth > max_depth:
        return False
    # A level of one kind (500,000 numbers in a list) is checked without filtering it first.
    mixed = len(kinds) > 1
    strings = compress(level, map(isinstance, level, repeat(str))) if mixed else level
    if str in kinds and _has_lone_surrogate_in(strings):
        return False
    if int in kinds:
        ints = [*compress(level, map(isinstance, level, repeat(int)))] if mixed else level
        if max(ints) >= _FLOAT_OVERFLOW or min(ints) <= -_FLOAT_OVERFLOW:
            return False
    if float in kinds:
        floats = compress(level, map(isinstance, level, repeat(float))) if mixed else level
        if not all(map(math.isfinite, floats)):
            return False
    if has_dict:
        dicts = [*compress(level, map(isinstance, level, repeat(dict)))] if mixed else level
        if not set(map(type, chain.from_iterable(dicts))) <= {str}:
            return False  # a member name that is not exactly a str
        if _has_lone_surrogate_in(chain.from_iterable(dicts)):
            return False
    return True


def is_plain_json(
    doc: Any,
    max_depth: int,
    max_containers: int | None = None,
    max_members: int | None = None,
    max_values: int | None = None,
) -> bool:
    """Cheap yes/no: is ``doc`` plain, finite JSON data within ``max_depth``? (hot path).

    With ``max_containers`` / ``max_members`` / ``max_values``, also: does it hold at most
    that many dicts and lists / members / values held by them (:func:`over_structure_limit`
    then says whether that is why not).

    Exact type checks on purpose: subclasses and foreign types answer "no" and the
    slow pass (:func:`plain_json_problems`) then judges them properly. Strings (and
    member names) must be encodable (no unpaired surrogate) and integers finite as
    floats, exactly as :func:`parse_strict` requires of a document's text.

    The document is taken a level at a time (``gc.get_referents`` lists the items of
    every list and the values of every dict of a level in one C call) and each level is
    judged by C-speed passes, so 350,000 small objects cost no Python step each. The
    referents of other objects are never taken: a level holding one fails first.
    """
    level = [doc]
    depth = containers = members = values = 0
    while level:
        depth += 1
        kinds = set(map(type, level))
        if max_containers is not None and not kinds.isdisjoint(_CONTAINER_TYPES):
            containers += _count_containers(level, kinds)
            if containers > max_containers:
                return False
        if max_members is not None and dict in kinds:
            members += _count_members(level, kinds)
            if members > max_members:
                return False
        if not _level_is_plain(level, kinds, depth, max_depth):
            return False
        # Atoms (str, int, float, bool, None) have no referents; a dict whose key table is
        # not str-only would add its keys too, but every key was just checked to be a str:
        # so the next level's length is this one's values, never fewer.
        level = gc.get_referents(*level)
        values += len(level)
        if max_values is not None and values > max_values:
            return False
    return True


def _count_containers(level: list[Any], kinds: set[type]) -> int:
    """The exact dicts and lists of a level whose types are ``kinds`` (C speed)."""
    if kinds <= _CONTAINER_TYPES:
        return len(level)
    return sum(map(_CONTAINER_TYPES.__contains__, map(type, level)))


def _count_members(level: list[Any], kinds: set[type]) -> int:
    """The members of the exact dicts of a level whose types are ``kinds`` (C speed)."""
    dicts = level if kinds == {dict} else compress(level, map(is_, map(type, level), repeat(dict)))
    return sum(map(len, dicts))


def over_structure_limit(
    doc: Any, max_depth: int, max_containers: int | None, max_members: int | None, max_values: int | None = None
) -> str:
    """``"containers"``, ``"members"`` or ``"values"`` when ``doc`` holds more than allowed, else ``""``.

    What the strict parser counts in a document's text (its brackets, the colons outside
    strings, the values held by arrays and objects), counted a level at a time at C speed,
    and refused as the text is: containers unless one of the first ``max_containers`` + 1
    (in document order) is nested too deep, then depth, then members, then values. So
    ``""`` also when the document is too deep where the text would be refused for that
    (:func:`plain_json_problems` then names it). Only exact dicts and lists are counted
    and descended into (anything else is judged by the other checks).
    """
    level = [doc]
    depth = containers = members = values = 0
    while level and depth <= max_depth:
        types = [*map(type, level)]  # once: a level may hold half a million items
        kinds = set(types)
        if kinds.isdisjoint(_CONTAINER_TYPES):
            break
        if depth == max_depth:
            return ""  # a container deeper than allowed: the text is refused for depth first
        depth += 1
        if not kinds <= _CONTAINER_TYPES:
            level = [*compress(level, map(_CONTAINER_TYPES.__contains__, types))]
        containers += len(level)
        if max_containers is not None and containers > max_containers:
            return "" if _head_too_deep(doc, max_containers + 1, max_depth) else "containers"
        if dict in kinds:
            members += _count_members(level, kinds & _CONTAINER_TYPES)
        values += sum(map(len, level))
        level = gc.get_referents(*level)
    if max_members is not None and members > max_members:
        return "members"
    return "values" if max_values is not None and values > max_values else ""


def _head_too_deep(doc: Any, count: int, max_depth: int) -> bool:
    """True when one of the first ``count`` dicts and lists of ``doc`` (document order) is
    nested deeper than ``max_depth`` (the text's depth check then refuses it first)."""
    if not deeper_than(doc, max_depth):  # C speed; most documents over the count are not too deep
        return False
    frames = [iter((doc,))]
    while frames:
        node = next(frames[-1], None)
        if node is None:
            frames.pop()
            continue
        if len(frames) > max_depth:
            return True
        count -= 1
        if not count:
            return False
        children = [*node.values()] if type(node) is dict else node
        frames.append(iter([*compress(children, map(_CONTAINER_TYPES.__contains__, map(type, children)))]))
    return False


def unclean_children(node: dict[Any, Any] | list[Any], max_depth: int) -> Iterator[tuple[Any, Any]]:
    """``(key or index, child)`` for the children of ``node`` that are not plain JSON data, in order.

    ``max_depth`` is the deepest level allowed counting ``node``'s children as level 2.
    Every child a problem-naming walk must visit is yielded (a clean child holds no
    problem); only clean ones are skipped.
    """
    # Runs of clean children are skipped by asking is_plain_json about whole slices
    # (max_depth counts the slice itself as level 1).
    def is_clean(part: list[Any]) -> bool:
        return is_plain_json(part, max_depth)

    if isinstance(node, dict):
        keys, values = list(node), list(node.values())
        return ((keys[i], values[i]) for i in first_unclean_indexes(values, is_clean))
    return ((i, node[i]) for i in first_unclean_indexes(node, is_clean))


def plain_json_problems(doc: Any, max_depth: int) -> list[Violation]:
    """The ways ``doc`` is not plain JSON data, each with its JSON pointer.

    The same codes and pointers :func:`parse_strict` gives the document's JSON text:
    ``non_finite`` (NaN, infinity, an integer beyond float range), ``utf8`` (an
    unpaired surrogate in a string or member name), plus ``type`` for what JSON cannot
    hold and ``depth``. Stops after :data:`MAX_VIOLATIONS` + 1 problems.
    """
    out: list[Violation] = []
    # Children are taken one at a time (document order, as parse_strict's walk), so
    # stopping at the bound also saves building the pointers of the rest.
    frames: list[tuple[Any, str, int]] = [(iter((("", doc),)), "", 0)]
    while frames and len(out) <= MAX_VIOLATIONS:
        children, parent, depth = frames[-1]
        step = next(children, None)
        if step is None:
            frames.pop()
            continue
        key, node = step
        pointer = f"{parent}/{escape_pointer_token(key)}" if depth else ""
        if node is None or isinstance(node, bool):
            continue
        if isinstance(node, str):
            if has_lone_surrogate(node):
                out.append(surrogate_violation(pointer))
        elif isinstance(node, int):
            if is_float_overflow(node):
                msg = "number is not finite (JSON numbers must be finite)"
                out.append(Violation(pointer, msg, "finite number", describe_value(node), "non_finite"))
        elif isinstance(node, float):
            if node - node != 0:
                out.append(
                    Violation(pointer, "number is not finite", "finite number", describe_value(node), "non_finite")
                )
        elif isinstance(node, dict | list):
            if depth + 1 > max_depth:
                message = f"nesting deeper than {max_depth} levels"
                out.append(Violation(pointer, message, f"at most {max_depth} levels", code="depth"))
                continue
            # Member names are judged at C speed first; one by one only when one is unfit.
            if isinstance(node, dict) and not (set(map(type, node)) <= {str} and not _has_lone_surrogate_in(node)):
                for key in node:
                    if not isinstance(key, str):
                        msg = "member name is not a string"
                        where = f"{pointer}/{escape_pointer_token(key)}"
                        out.append(Violation(where, msg, "string", describe_value(key), "type"))
                    elif has_lone_surrogate(key):
                        out.append(surrogate_violation(f"{pointer}/{escape_pointer_token(key)}"))
            # The children of this node are at depth + 2; a slice of them at level 1 of its own.
            frames.append((unclean_children(node, max_depth - depth), pointer, depth + 1))
        else:
            msg = "value is not JSON data"
            out.append(Violation(pointer, msg, "a JSON value", describe_value(node), "type"))
    return out
