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
* ``max_members`` then ``max_values`` bound the members (colons outside strings) and
  the values held by arrays and objects (commas outside strings plus non-empty
  containers), each counted at C speed before parsing and reported alone at ``""``:
  naming a problem after half a million integers is what would cost.
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
import sys
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from neurocds.errors import Violation
from neurocds.facts.canonical import canonical_json_fast
from neurocds.facts.fastparse import RepeatedNames, fast_parse, no_collection, repeats_a_name
from neurocds.facts.limits import (
    ParseLimits,
    check_text,
    containers_violation,
    counts_settled,
    fail,
    fhir_limits,
    members_violation,
    to_text,
    values_violation,
)
from neurocds.facts.plainjson import (
    LONE_SURROGATE,
    MAX_VIOLATIONS,
    capped_error,
    describe_value,
    escape_pointer_token,
    has_lone_surrogate,
    is_float_overflow,
    is_plain_json,
    json_type_name,
    plain_json_problems,
    surrogate_violation,
    unclean_children,
    violation_sort_key,
)
from neurocds.facts.pointer_walk import PointerWalk
from neurocds.facts.repeated_names import duplicate_violations, repeated_name_problems, repeated_names

# The names from neurocds.facts.plainjson stay importable from here, where they were.
__all__ = [
    "MAX_VIOLATIONS",
    "ParseLimits",
    "canonical_json",
    "containers_violation",
    "describe_value",
    "escape_pointer_token",
    "fhir_limits",
    "is_plain_json",
    "json_type_name",
    "members_violation",
    "parse_strict",
    "plain_json_problems",
    "sha256_canonical",
    "values_violation",
    "violation_sort_key",
]

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
_DEFAULT_LIMITS = ParseLimits()
# Below this length the hooks cost less than the scan (a facts document is ~2 KiB).
_SCAN_ABOVE = 65_536


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


def _walk_problems(value: Any, check_surrogates: bool) -> list[Violation]:
    """Find the placeholders the parse left and give each its JSON pointer (iteratively).

    Visits in document order and stops after :data:`MAX_VIOLATIONS` + 1 problems; a
    container's children are taken one at a time, so stopping early also saves
    building the pointers of the rest.
    """
    found: list[Violation] = []
    walk: PointerWalk[Any] = PointerWalk(value)
    for pointer, node in walk:
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
        elif (isinstance(node, float) and not math.isfinite(node)) or (
            type(node) is int and is_float_overflow(node)
        ):  # a literal read without the exact hooks
            found.append(
                Violation(
                    pointer=pointer,
                    message="number is not finite (JSON numbers must be finite)",
                    expected="finite number",
                    found="a number beyond float range",
                    code="non_finite",
                )
            )
        elif isinstance(node, dict):
            if isinstance(node, _DupDict):
                found.extend(duplicate_violations(pointer, repeated_names(map(itemgetter(0), node.pairs))))
            if check_surrogates and has_lone_surrogate("".join(node)):  # C speed; then which ones
                bad = (k for k in node if has_lone_surrogate(k))
                found.extend(surrogate_violation(f"{pointer}/{escape_pointer_token(k)}") for k in bad)
            # Only children that hold a problem (C-speed check over runs of them): 350,000
            # clean objects before one NaN are skipped, not walked.
            unclean = unclean_children(node, _ANY_DEPTH)
            walk.descend(pointer, ((escape_pointer_token(k), v) for k, v in unclean))
        elif isinstance(node, list):
            walk.descend(pointer, unclean_children(node, _ANY_DEPTH))
        if len(found) > MAX_VIOLATIONS:
            break
    return found


def _parse_exactly(
    text: str, encoded: bytes, on_object: Callable[[list[tuple[str, Any]]], Any], hooks: dict[str, Any]
) -> Any:
    if len(text) > _SCAN_ABOVE:
        # Objects built at C speed; the per-object hook only when counting shows that
        # some object repeats a name (its pointer must then be found).
        value = json.loads(text, **hooks)
        if not repeats_a_name(encoded, value):
            return value
    return json.loads(text, object_pairs_hook=on_object, **hooks)


def parse_strict(data: bytes | str, limits: ParseLimits = _DEFAULT_LIMITS) -> Any:
    """Parse one JSON document, refusing anything ``json.loads`` would accept too leniently.

    :raises FactsValidationError: with violations coded ``size``, ``utf8``, ``syntax``,
        ``depth``, ``containers``, ``members``, ``values`` (each reported alone: parsing stops
        there), or ``non_finite`` and ``duplicate_key`` (all of them reported together, each
        with its JSON pointer).
    """
    text, encoded = to_text(data, limits)
    # Where raw counts settle the container, member and value limits (always, for FHIR
    # text), orjson reads first and the parsed value's depth stands for the text's: the
    # text's bracket scan (1.8 M instructions for a 45 KiB body) runs only when something
    # is left for it to find. Elsewhere the text is checked before anything is built.
    settled = counts_settled(encoded, limits)
    if not settled:
        check_text(text, encoded, limits)
    # C speed when nothing needs naming (see neurocds.facts.fastparse); else the exact path.
    trusted, value = fast_parse(text, encoded, limits.max_depth)
    if trusted:
        return value
    problems = None
    if isinstance(value, RepeatedNames):
        # orjson read every number, string and literal: only the repeated names are left,
        # found and named at C speed (see neurocds.facts.repeated_names). None: too deep,
        # or names only the exact parse tells apart.
        problems = repeated_name_problems(encoded, value.value, limits.max_depth)
    # The checks are functions of the text alone: running them late changes no answer.
    # Where raw counts settled the other limits, the names' walk has checked the depth.
    if settled and problems is None:
        check_text(text, encoded, limits)
    if problems:
        raise capped_error(problems)
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
    numbers_as_floats = False
    if len(text) > _SCAN_ABOVE:
        # A Python call per literal costs more than the whole C parse of a large
        # document (a hostile array of 500,000 numbers): scan the text instead, and
        # hook numbers only when some literal could be out of float range. NaN and
        # Infinity become shared placeholders (no call); only text that holds one of
        # those words can hold one.
        flagged = "NaN" in text or "Infinity" in text
        hooks = {"parse_constant": _CONSTANT}
        shape = encoded.translate(_NUMBER_SHAPE)
        if any(risk in shape for risk in _NUMBER_RISKS):
            # Even then not a Python call per literal (500,000 integers then 1e400 took
            # 90 ms): numbers are read at C speed, a float out of range becomes inf and an
            # integer stays one, for the walk to name. Only where a run of digits is longer
            # than int() converts are integers read as floats (that reading costs half as
            # much again), and a clean document then read again exactly.
            flagged = True
            hooks["parse_float"] = float
            digits = sys.get_int_max_str_digits()
            if digits and b"0" * (digits + 1) in shape:
                hooks["parse_int"] = float
                numbers_as_floats = True
    try:
        with no_collection():
            value = _parse_exactly(text, encoded, on_object, hooks)
    except json.JSONDecodeError as exc:
        raise fail("syntax", f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        # Only reachable when max_depth is set above what the C scanner can recurse.
        raise fail("depth", "nesting too deep for the parser") from None
    # Substring test first: it runs at C speed and almost every document has no "\u".
    check_surrogates = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if flagged or check_surrogates:
        problems = _walk_problems(value, check_surrogates)
        if problems:
            raise capped_error(problems)
    if numbers_as_floats:  # clean, and its integers must stay integers
        hooks.update(parse_float=on_float, parse_int=on_int)
        with no_collection():
            value = _parse_exactly(text, encoded, on_object, hooks)
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
