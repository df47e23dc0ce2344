"""The limits a document's text is held to before it is parsed: size, encoding, depth, containers.

Split from :mod:`neurocds.facts.strictjson` (which parses what passes them). Each check
reads the raw text at C speed where it can, so that a hostile document is refused for
what it would cost before anything is built from it; each refusal is one violation at
the root pointer ``""`` naming the limit (see :class:`ParseLimits`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from neurocds.errors import FactsValidationError, Violation
from neurocds.facts.fastparse import bracket_depth_at_most, exceeds, member_count, outside_brackets, value_count

__all__ = [
    "ParseLimits",
    "check_depth",
    "check_text",
    "containers_violation",
    "counts_settled",
    "fail",
    "fhir_limits",
    "members_violation",
    "to_text",
    "values_violation",
]

_BOM_BYTES = b"\xef\xbb\xbf"
_BOM_CHAR = "\ufeff"
# A whole JSON string (escapes included; closing quote optional so that an unterminated
# string swallows the rest of the text instead of exposing brackets inside it), or one
# structural bracket. Unrolled-loop form: linear time, no catastrophic backtracking.
_DEPTH_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


@dataclass(frozen=True)
class ParseLimits:
    """Bounds that keep one hostile document from exhausting memory or the stack."""

    max_bytes: int = 1_048_576
    max_depth: int = 64
    #: Objects and arrays one document may hold (None: no bound). A facts document holds
    #: about 15 objects plus one per item of its lists; FHIR input, denser, is parsed without it.
    max_containers: int | None = 10_000
    #: Members (name-value pairs) one document may hold, all objects together (None: no
    #: bound). A facts document holds about 100 plus a few per item of its lists.
    max_members: int | None = 25_000
    #: Values one document may hold, array items and members together (None: no bound):
    #: naming a problem among 500,000 integers cost more than 50 ms. A facts document holds
    #: a few hundred.
    max_values: int | None = 50_000


def fhir_limits(max_bytes: int, max_depth: int = 64) -> ParseLimits:
    """Size and depth only: FHIR text (a Synthea bundle holds 8,000-13,000 containers per
    MiB) is not held to the facts document's container, member and value counts."""
    return ParseLimits(max_bytes=max_bytes, max_depth=max_depth, max_containers=None, max_members=None, max_values=None)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def fail(code: str, message: str, pointer: str = "") -> FactsValidationError:
    return FactsValidationError([Violation(pointer=pointer, message=message, code=code)])


def to_text(data: bytes | str, limits: ParseLimits) -> tuple[str, bytes]:
    """Check size and encoding; return the text with any leading BOM removed, and its UTF-8 bytes."""
    if isinstance(data, str):
        # Cheap upper bound first so a huge string is refused before it is encoded.
        if len(data) > limits.max_bytes:
            raise fail("size", f"document is larger than {limits.max_bytes} bytes")
        try:
            encoded = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise fail("utf8", f"text has an unencodable character at character offset {exc.start}") from None
        if len(encoded) > limits.max_bytes:
            raise fail("size", f"document is {len(encoded)} bytes, more than {limits.max_bytes}")
        text = data.removeprefix(_BOM_CHAR)
        return text, encoded.removeprefix(_BOM_BYTES)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_strict needs bytes or str, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > limits.max_bytes:
        raise fail("size", f"document is {len(raw)} bytes, more than {limits.max_bytes}")
    skip = len(_BOM_BYTES) if raw.startswith(_BOM_BYTES) else 0
    try:
        return raw[skip:].decode("utf-8"), raw[skip:]
    except UnicodeDecodeError as exc:
        raise fail("utf8", f"invalid UTF-8 at byte offset {exc.start + skip}") from None


def _count_violation(limit: str, cap: int, what: str) -> Violation:
    """The refusal of a document holding more than ``cap`` ``what``, named by its parse limit."""
    return Violation(
        pointer="",
        message=f"document holds more than {cap:,} {what} (parse limit {limit})",
        expected=f"at most {cap:,} {what}",
        code=limit.removeprefix("max_"),
    )


def containers_violation(max_containers: int) -> Violation:
    """The refusal of a document holding more than ``max_containers`` objects and arrays."""
    return _count_violation("max_containers", max_containers, "objects and arrays")


def members_violation(max_members: int) -> Violation:
    """The refusal of a document holding more than ``max_members`` members."""
    return _count_violation("max_members", max_members, "members")


def values_violation(max_values: int) -> Violation:
    """The refusal of a document holding more than ``max_values`` array items and members."""
    return _count_violation("max_values", max_values, "values (array items and members)")


def counts_settled(encoded: bytes, limits: ParseLimits) -> bool:
    """True when raw counts alone (C speed, nothing parsed) show the text within the
    container, member and value limits: :func:`check_text` could then refuse it for depth
    only. Each container takes two bytes at least, each member four ("":0), each value two
    (itself and a comma or bracket); commas plus opening brackets bound the values from
    above, raw colons the members, raw brackets the containers.
    """
    size = len(encoded)
    cap_c, cap_m, cap_v = limits.max_containers, limits.max_members, limits.max_values
    if (cap_c is None or size <= 2 * cap_c) and (cap_m is None or size <= 4 * cap_m) and (
        cap_v is None or size <= 2 * cap_v + 1
    ):
        return True
    brackets = encoded.count(b"[") + encoded.count(b"{")
    return (
        (cap_c is None or brackets <= cap_c)
        and (cap_m is None or size <= 4 * cap_m or encoded.count(b":") <= cap_m)
        and (cap_v is None or size <= 2 * cap_v + 1 or encoded.count(b",") + brackets <= cap_v)
    )


def check_text(text: str, encoded: bytes, limits: ParseLimits) -> None:
    """Refuse a text over its container, depth, member or value limit, before parsing.

    In that order, each refusal alone at the root pointer; the raw brackets (outside
    strings or not) are counted once for all four checks.
    """
    brackets = encoded.count(b"[") + encoded.count(b"{")
    _check_containers(text, encoded, limits, brackets)
    check_depth(text, encoded, limits.max_depth, brackets)
    _check_members(encoded, limits)
    _check_values(encoded, limits, brackets)


def _check_containers(text: str, encoded: bytes, limits: ParseLimits, brackets: int) -> None:
    """Refuse more than ``max_containers`` objects and arrays, before anything builds them.

    The raw bracket count (C speed) settles almost every document; brackets inside strings
    are only set aside (still at C speed) when the raw count is over the limit. The limit
    the text crosses first is the one reported: a document nested too deep within its
    first ``max_containers`` containers is left to the depth check.
    """
    cap = limits.max_containers
    # Each container takes two bytes at least: an ordinary document is settled by its length.
    if cap is None or len(encoded) <= 2 * cap or brackets <= cap:
        return
    outside = outside_brackets(encoded)
    if outside.count(b"[") <= cap:
        return
    # Up to and including the first container over the limit.
    head = b"[".join(outside.split(b"[", cap + 1)[:-1]) + b"["
    if not exceeds(head, limits.max_depth):
        raise FactsValidationError([containers_violation(cap)])


def _check_members(encoded: bytes, limits: ParseLimits) -> None:
    """Refuse more than ``max_members`` members (colons outside strings), before parsing.

    Run after the depth check: a document nested too deep is refused for that first.
    """
    cap = limits.max_members
    # Each member takes four bytes at least ("":0), so short documents are not counted.
    if cap is not None and len(encoded) > 4 * cap and encoded.count(b":") > cap and member_count(encoded) > cap:
        raise FactsValidationError([members_violation(cap)])


def _check_values(encoded: bytes, limits: ParseLimits, brackets: int) -> None:
    """Refuse more than ``max_values`` array items and members, before parsing.

    Run last of the counts (after containers, depth and members). Each value takes two
    bytes at least (itself and a comma or bracket), and commas plus opening brackets bound
    the count from above: an ordinary document is settled by those, at C speed.
    """
    cap = limits.max_values
    if (
        cap is not None
        and len(encoded) > 2 * cap + 1
        and encoded.count(b",") + brackets > cap
        and value_count(encoded) > cap
    ):
        raise FactsValidationError([values_violation(cap)])


def check_depth(text: str, encoded: bytes, max_depth: int, brackets: int) -> None:
    """Refuse nesting deeper than ``max_depth`` without parsing (so without recursion).

    Every step of the common case runs at C speed on the UTF-8 bytes (see
    :mod:`neurocds.facts.fastparse`): the brackets outside strings, innermost pairs
    removed level by level, and where that cannot prove the bound, the depth after
    each bracket as a running sum that stops at the first level too deep. The
    position-reporting scan of the original text runs only on failure.
    """
    # Fast exit: with no more ``brackets`` (the raw count of "[" and "{") than allowed
    # levels the limit cannot be reached.
    if brackets <= max_depth or bracket_depth_at_most(encoded, max_depth):
        return
    if not exceeds(outside_brackets(encoded), max_depth):
        return
    depth = 0
    for match in _DEPTH_TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                line, col = _line_col(text, match.start())
                raise fail(
                    "depth",
                    f"nesting deeper than {max_depth} levels at line {line}, column {col}",
                )
        elif char in "]}":
            depth -= 1
