"""Strict JSON: a parser that refuses what ``json.loads`` lets through, and a canonical form.

``json.loads`` accepts ``NaN``/``Infinity``, keeps the last of duplicate keys,
turns ``1e999`` into ``inf`` and recurses once per nesting level (so 100,000
``[`` end in ``RecursionError``). Each of those would let a malformed document
reach the rules engine looking valid, so :func:`parse_strict` rejects them all,
reporting every problem it can find in one :class:`FactsValidationError`.

Decisions (documented because callers may rely on them):

* Size is the UTF-8 byte length of the raw input (a BOM included); text input is
  measured as its UTF-8 encoding.
* A single leading UTF-8 byte order mark is stripped, as RFC 8259 section 8.1
  allows; a second one is a syntax error.
* Depth counts open containers: ``{}`` and ``[]`` are depth 1, ``[[]]`` depth 2.
  ``max_depth`` is the deepest level allowed.
* ``max_containers`` bounds the objects and arrays of one document (brackets outside
  strings, counted at C speed before parsing). Parsing and refusing cost a Python step
  per container in places (a repeated member name is named through a per-object hook),
  so this bound, not the size alone, keeps every refusal cheap. Size, depth and this
  count are each reported alone at the root pointer ``""``; of depth and this count,
  the one the text crosses first (reading from its start).
* Integer literals too large for a finite float are ``non_finite`` like
  ``1e999``: every consumer must be able to read each number as a finite float.
* String escapes that decode to an unpaired UTF-16 surrogate (``"\\ud800"``)
  are rejected with code ``utf8``: they cannot be written back as UTF-8. A member
  name holding one appears in pointers with the surrogate written as the six
  characters ``\\ud800``, so that every pointer can be printed and logged.
* At most :data:`MAX_VIOLATIONS` problems are collected: refusing a document must
  cost little however many problems it has (the error then says it is truncated).
* A member overwritten by a later duplicate is reported as ``duplicate_key`` only;
  its discarded value is not inspected further.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter, lt
from typing import Any

from neurocds.errors import FactsValidationError, Violation
from neurocds.facts.canonical import canonical_json_fast
from neurocds.facts.fastparse import (
    ONLY_REPEATED_NAMES,
    bracket_depth_at_most,
    exceeds,
    fast_parse,
    no_collection,
    outside_brackets,
    repeats_a_name,
)
from neurocds.facts.plainjson import (
    LONE_SURROGATE,
    MAX_VIOLATIONS,
    capped_error,
    describe_value,
    escape_pointer_token,
    first_names_in_pointer_order,
    has_lone_surrogate,
    is_plain_json,
    json_type_name,
    plain_json_problems,
    surrogate_violation,
    unclean_children,
    violation_sort_key,
)

# The names from neurocds.facts.plainjson stay importable from here, where they were.
__all__ = [
    "MAX_VIOLATIONS",
    "ParseLimits",
    "canonical_json",
    "containers_violation",
    "describe_value",
    "escape_pointer_token",
    "is_plain_json",
    "json_type_name",
    "parse_strict",
    "plain_json_problems",
    "sha256_canonical",
    "violation_sort_key",
]

_BOM_BYTES = b"\xef\xbb\xbf"
_BOM_CHAR = "\ufeff"
# A whole JSON string (escapes included; closing quote optional so that an unterminated
# string swallows the rest of the text instead of exposing brackets inside it), or one
# structural bracket. Unrolled-loop form: linear time, no catastrophic backtracking.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_DEPTH_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
# Only documents containing an escape of a surrogate code unit can decode to a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
# float(int) overflows above ~1.8e308, so only literals of 309+ digits need the float test.
_MAX_FINITE_INT_DIGITS = 308
# Number hooks (a Python call per literal) run only when some literal could be non-finite:
# an exponent of three digits or more, or a run of 200 digits (below that, even a
# two-digit exponent stays under 1e299). Searched for in the text with every digit
# mapped to 0: substring search runs at C speed, a regex over 1 MiB does not.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E+", b"000000000e-")
_NUMBER_RISKS = (b"0" * 200, b"e000", b"e-000")
# The text's depth is checked before parsing: walks of the parsed value need not check it again.
_ANY_DEPTH = 1 << 30
# Below this length the hooks cost less than the scan (a facts document is ~2 KiB).
_SCAN_ABOVE = 65_536


@dataclass(frozen=True)
class ParseLimits:
    """Bounds that keep one hostile document from exhausting memory or the stack."""

    max_bytes: int = 1_048_576
    max_depth: int = 64
    #: Objects and arrays one document may hold (None: no bound). A facts document holds
    #: about 15 objects plus one per medication; FHIR input, denser, is parsed without it.
    max_containers: int | None = 10_000


class _NonFinite(str):
    """Placeholder the parser leaves where a non-finite number was written (its literal)."""

    __slots__ = ()


# The parse_constant hook: a dict's bound get, so a hostile array of 250,000 NaN costs
# one C call each and no allocation (the three placeholders are shared).
_CONSTANT = {word: _NonFinite(word) for word in ("NaN", "Infinity", "-Infinity")}.get


class _DupDict(dict[str, Any]):
    """A parsed object that had duplicate keys (the hooks cannot know its pointer yet).

    ``pairs`` are its members as written; which names repeat is worked out only for the
    objects a refusal lists (80,000 such objects cost one hook call each, no more).
    """

    pairs: list[tuple[str, Any]]

    def repeated_names(self) -> list[str]:
        # Counted at C speed: a set-and-list scan was quadratic in distinct repeated names.
        counts = Counter(map(itemgetter(0), self.pairs))
        return [*compress(counts, map(lt, repeat(1), counts.values()))]


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _fail(code: str, message: str, pointer: str = "") -> FactsValidationError:
    return FactsValidationError([Violation(pointer=pointer, message=message, code=code)])


def _to_text(data: bytes | str, limits: ParseLimits) -> tuple[str, bytes]:
    """Check size and encoding; return the text with any leading BOM removed, and its UTF-8 bytes."""
    if isinstance(data, str):
        # Cheap upper bound first so a huge string is refused before it is encoded.
        if len(data) > limits.max_bytes:
            raise _fail("size", f"document is larger than {limits.max_bytes} bytes")
        try:
            encoded = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _fail("utf8", f"text has an unencodable character at character offset {exc.start}") from None
        if len(encoded) > limits.max_bytes:
            raise _fail("size", f"document is {len(encoded)} bytes, more than {limits.max_bytes}")
        text = data.removeprefix(_BOM_CHAR)
        return text, encoded.removeprefix(_BOM_BYTES)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_strict needs bytes or str, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > limits.max_bytes:
        raise _fail("size", f"document is {len(raw)} bytes, more than {limits.max_bytes}")
    skip = len(_BOM_BYTES) if raw.startswith(_BOM_BYTES) else 0
    try:
        return raw[skip:].decode("utf-8"), raw[skip:]
    except UnicodeDecodeError as exc:
        raise _fail("utf8", f"invalid UTF-8 at byte offset {exc.start + skip}") from None


def containers_violation(max_containers: int) -> Violation:
    """The refusal of a document holding more than ``max_containers`` objects and arrays."""
    return Violation(
        pointer="",
        message=f"document holds more than {max_containers:,} objects and arrays (parse limit max_containers)",
        expected=f"at most {max_containers:,} objects and arrays",
        code="containers",
    )


def _check_containers(text: str, encoded: bytes, limits: ParseLimits) -> None:
    """Refuse more than ``max_containers`` objects and arrays, before anything builds them.

    The raw bracket count (C speed) settles almost every document; brackets inside strings
    are only set aside (still at C speed) when the raw count is over the limit. The limit
    the text crosses first is the one reported: a document nested too deep within its
    first ``max_containers`` containers is left to the depth check.
    """
    cap = limits.max_containers
    if cap is None or text.count("[") + text.count("{") <= cap:
        return
    brackets = outside_brackets(encoded)
    if brackets.count(b"[") <= cap:
        return
    # Up to and including the first container over the limit.
    head = b"[".join(brackets.split(b"[", cap + 1)[:-1]) + b"["
    if not exceeds(head, limits.max_depth):
        raise FactsValidationError([containers_violation(cap)])


def _check_depth(text: str, encoded: bytes, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` without parsing (so without recursion).

    Every step of the common case runs at C speed on the UTF-8 bytes (see
    :mod:`neurocds.facts.fastparse`): the brackets outside strings, innermost pairs
    removed level by level, and where that cannot prove the bound, the depth after
    each bracket as a running sum that stops at the first level too deep. The
    position-reporting scan of the original text runs only on failure.
    """
    # Fast exit: with no more brackets than allowed levels the limit cannot be reached.
    if text.count("[") + text.count("{") <= max_depth or bracket_depth_at_most(encoded, max_depth):
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
                raise _fail(
                    "depth",
                    f"nesting deeper than {max_depth} levels at line {line}, column {col}",
                )
        elif char in "]}":
            depth -= 1


def _walk_problems(value: Any, check_surrogates: bool) -> list[Violation]:
    """Find the placeholders the parse left and give each its JSON pointer (iteratively).

    Visits in document order and stops after :data:`MAX_VIOLATIONS` + 1 problems; a
    container's children are taken one at a time, so stopping early also saves
    building the pointers of the rest.
    """
    found: list[Violation] = []
    frames: list[tuple[Any, str]] = [(iter((("", value),)), "")]
    while frames and len(found) <= MAX_VIOLATIONS:
        children, parent = frames[-1]
        step = next(children, None)
        if step is None:
            frames.pop()
            continue
        token, node = step
        pointer = f"{parent}/{token}" if frames[1:] else ""
        if isinstance(node, _NonFinite):
            found.append(
                Violation(
                    pointer=pointer,
                    message=f"number {node[:40]} is not finite (JSON numbers must be finite)",
                    expected="finite number",
                    found=node[:60],
                    code="non_finite",
                )
            )
        elif isinstance(node, str):
            if check_surrogates and LONE_SURROGATE.search(node):
                found.append(surrogate_violation(pointer))
        elif isinstance(node, dict):
            # Only the names that can be listed: the first MAX_VIOLATIONS + 1 in pointer order
            # (what sorting all of them would keep), not 50,000 violations to sort.
            repeated = node.repeated_names() if isinstance(node, _DupDict) else []
            for key in first_names_in_pointer_order(repeated, MAX_VIOLATIONS + 1):
                found.append(
                    Violation(
                        pointer=f"{pointer}/{escape_pointer_token(key)}",
                        message="member name appears more than once in this object",
                        expected="unique member names",
                        found="duplicate member",
                        code="duplicate_key",
                    )
                )
            if check_surrogates and has_lone_surrogate("".join(node)):  # C speed; then which ones
                bad = (k for k in node if has_lone_surrogate(k))
                found.extend(surrogate_violation(f"{pointer}/{escape_pointer_token(k)}") for k in bad)
            # Only children that hold a problem (C-speed check over runs of them): 350,000
            # clean objects before one NaN are skipped, not walked.
            unclean = unclean_children(node, _ANY_DEPTH)
            frames.append((((escape_pointer_token(k), v) for k, v in unclean), pointer))
        elif isinstance(node, list):
            frames.append((unclean_children(node, _ANY_DEPTH), pointer))
    return found


def _parse_exactly(text: str, on_object: Callable[[list[tuple[str, Any]]], Any], hooks: dict[str, Any]) -> Any:
    if len(text) > _SCAN_ABOVE:
        # Objects built at C speed; the per-object hook only when counting shows that
        # some object repeats a name (its pointer must then be found).
        value = json.loads(text, **hooks)
        if not repeats_a_name(text, value):
            return value
    return json.loads(text, object_pairs_hook=on_object, **hooks)


def parse_strict(data: bytes | str, limits: ParseLimits = ParseLimits()) -> Any:
    """Parse one JSON document, refusing anything ``json.loads`` would accept too leniently.

    :raises FactsValidationError: with violations coded ``size``, ``utf8``, ``syntax``,
        ``depth``, ``containers`` (each reported alone: parsing stops there), or ``non_finite`` and
        ``duplicate_key`` (all of them reported together, each with its JSON pointer).
    """
    text, encoded = _to_text(data, limits)
    _check_containers(text, encoded, limits)
    _check_depth(text, encoded, limits.max_depth)
    # C speed when nothing needs naming (see neurocds.facts.fastparse); else the exact path.
    trusted, value = fast_parse(text, encoded)
    if trusted:
        return value
    # orjson read every number, string and literal, and only a repeated name stopped it.
    only_names_left = value is ONLY_REPEATED_NAMES
    flagged = False

    def on_constant(name: str) -> _NonFinite:
        nonlocal flagged
        flagged = True
        return _NonFinite(name)

    def on_float(literal: str) -> float | _NonFinite:
        number = float(literal)
        if math.isfinite(number):
            return number
        return on_constant(literal)

    def on_int(literal: str) -> int | _NonFinite:
        # Checking the digit count first also keeps int() clear of Python's
        # 4300-digit conversion limit, which would raise a bare ValueError.
        if len(literal.lstrip("-")) > _MAX_FINITE_INT_DIGITS:
            try:
                float(int(literal))
            except (OverflowError, ValueError):
                return on_constant(literal)
        return int(literal)

    def on_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal flagged
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        flagged = True
        out = _DupDict(obj)
        out.pairs = pairs
        return out

    hooks: dict[str, Any] = {"parse_constant": on_constant, "parse_float": on_float, "parse_int": on_int}
    if only_names_left:
        # Nothing but the names is left to check: no number hooks, one parse that names them.
        flagged, hooks = True, {}
    elif len(text) > _SCAN_ABOVE:
        # A Python call per literal costs more than the whole C parse of a large
        # document (a hostile array of 500,000 numbers): scan the text instead, and
        # hook numbers only when some literal could be out of float range. NaN and
        # Infinity become shared placeholders (no call); only text that holds one of
        # those words can hold one.
        flagged = "NaN" in text or "Infinity" in text
        hooks = {"parse_constant": _CONSTANT}
        if any(risk in encoded.translate(_NUMBER_SHAPE) for risk in _NUMBER_RISKS):
            hooks.update(parse_float=on_float, parse_int=on_int)
    try:
        with no_collection():
            if only_names_left:
                value = json.loads(text, object_pairs_hook=on_object)
            else:
                value = _parse_exactly(text, on_object, hooks)
    except json.JSONDecodeError as exc:
        raise _fail("syntax", f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        # Only reachable when max_depth is set above what the C scanner can recurse.
        raise _fail("depth", "nesting too deep for the parser") from None
    # Substring test first: it runs at C speed and almost every document has no "\u".
    check_surrogates = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if flagged or check_surrogates:
        problems = _walk_problems(value, check_surrogates)
        if problems:
            raise capped_error(problems)
    return value


def canonical_json(obj: Any) -> bytes:
    """Deterministic UTF-8 JSON bytes of ``obj``, for hashing and byte-level comparison.

    Keys sorted (by code point), no whitespace, non-ASCII characters written as-is.
    Numbers are written as Python writes them: ``1`` stays ``1`` and ``1.0`` stays
    ``1.0``, so an integer and an integral float hash differently. That matches what
    :func:`parse_strict` returns (it keeps the distinction the document made). This is
    not RFC 8785 (JCS), which would write both as ``1``. The bytes are those of
    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)`` encoded as UTF-8, written faster (see neurocds.facts.canonical).

    :raises ValueError: on NaN or infinity, or a string that is not valid Unicode.
    :raises TypeError: on a value JSON cannot represent (set, bytes, non-string keys mix).
    """
    return canonical_json_fast(obj)  # orjson where byte-identical to the json.dumps call above


def sha256_canonical(obj: Any) -> str:
    """Hex SHA-256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()
