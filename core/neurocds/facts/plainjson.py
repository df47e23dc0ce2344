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
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, compress, repeat
from typing import Any

from neurocds.errors import FactsValidationError, Violation

__all__ = [
    "MAX_VIOLATIONS",
    "capped_error",
    "describe_value",
    "escape_pointer_token",
    "has_lone_surrogate",
    "is_float_overflow",
    "is_plain_json",
    "json_type_name",
    "plain_json_problems",
    "printable_unicode",
    "surrogate_violation",
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


def violation_sort_key(violation: Violation) -> tuple[Any, ...]:
    """Deterministic order: by pointer (array indexes numerically), then code, then message."""
    tokens = tuple(
        (0, int(token), "") if token.isascii() and token.isdigit() else (1, 0, token)
        for token in violation.pointer.split("/")[1:]
    )
    return tokens, violation.code, violation.message


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


def is_plain_json(doc: Any, max_depth: int) -> bool:
    """Cheap yes/no: is ``doc`` plain, finite JSON data within ``max_depth``? (hot path).

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
    depth = 0
    while level:
        depth += 1
        if not _level_is_plain(level, set(map(type, level)), depth, max_depth):
            return False
        # Atoms (str, int, float, bool, None) have no referents; a dict whose key table is
        # not str-only would add its keys too, but every key was just checked to be a str.
        level = gc.get_referents(*level)
    return True


# Containers with fewer children are looked at child by child: galloping costs more there.
_GALLOP_FROM = 32


def _unclean_indexes(values: list[Any], max_depth: int) -> Iterator[int]:
    """Indexes (in order) of the items of ``values`` that are not plain JSON data.

    Runs of clean items are skipped by asking :func:`is_plain_json` about whole slices,
    doubling their length while they stay clean, then halving the first unclean one: a
    walk that names problems then costs C-speed passes over clean stretches instead of
    a Python step per item (350,000 empty objects before one NaN). ``max_depth`` counts
    the slice itself as level 1.
    """
    count = len(values)
    if count < _GALLOP_FROM:
        yield from range(count)
        return
    start = 0
    while start < count:
        low, width = start, 1
        high = min(count, low + width)
        while is_plain_json(values[low:high], max_depth):
            if high == count:
                return
            low, width = high, width * 2
            high = min(count, low + width)
        while high - low > 1:  # the first unclean item lies in [low, high)
            middle = (low + high) // 2
            if is_plain_json(values[low:middle], max_depth):
                low = middle
            else:
                high = middle
        yield low
        start = low + 1


def unclean_children(node: dict[Any, Any] | list[Any], max_depth: int) -> Iterator[tuple[Any, Any]]:
    """``(key or index, child)`` for the children of ``node`` that are not plain JSON data, in order.

    ``max_depth`` is the deepest level allowed counting ``node``'s children as level 2.
    Every child a problem-naming walk must visit is yielded (a clean child holds no
    problem); only clean ones are skipped.
    """
    if isinstance(node, dict):
        keys, values = list(node), list(node.values())
        return ((keys[i], values[i]) for i in _unclean_indexes(values, max_depth))
    return ((i, node[i]) for i in _unclean_indexes(node, max_depth))


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
