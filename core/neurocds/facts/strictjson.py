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
* Integer literals too large for a finite float are ``non_finite`` like
  ``1e999``: every consumer must be able to read each number as a finite float.
* String escapes that decode to an unpaired UTF-16 surrogate (``"\\ud800"``)
  are rejected with code ``utf8``: they cannot be written back as UTF-8.
* A member overwritten by a later duplicate is reported as ``duplicate_key`` only;
  its discarded value is not inspected further.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from neurocds.errors import FactsValidationError, Violation
from neurocds.facts.canonical import canonical_json_fast

__all__ = [
    "ParseLimits",
    "canonical_json",
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
_BRACKET = re.compile(r"[\[\]{}]")
_DEPTH_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
# Only documents containing an escape of a surrogate code unit can decode to a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_FOUND_MAX = 60
# float(int) overflows above ~1.8e308, so only literals of 309+ digits need the float test.
_MAX_FINITE_INT_DIGITS = 308


@dataclass(frozen=True)
class ParseLimits:
    """Bounds that keep one hostile document from exhausting memory or the stack."""

    max_bytes: int = 1_048_576
    max_depth: int = 64


class _NonFinite:
    """Placeholder the parser hooks leave where a non-finite number was written."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _DupDict(dict[str, Any]):
    """A parsed object that had duplicate keys (the hooks cannot know its pointer yet)."""

    duplicates: list[str]


def escape_pointer_token(token: str | int) -> str:
    """Escape one reference token for an RFC 6901 JSON pointer (``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def violation_sort_key(violation: Violation) -> tuple[Any, ...]:
    """Deterministic order: by pointer (array indexes numerically), then code, then message."""
    tokens = tuple(
        (0, int(token), "") if token.isascii() and token.isdigit() else (1, 0, token)
        for token in violation.pointer.split("/")[1:]
    )
    return tokens, violation.code, violation.message


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _fail(code: str, message: str, pointer: str = "") -> FactsValidationError:
    return FactsValidationError([Violation(pointer=pointer, message=message, code=code)])


def _to_text(data: bytes | str, limits: ParseLimits) -> str:
    """Check size and encoding; return the text with any leading BOM removed."""
    if isinstance(data, str):
        # Cheap upper bound first so a huge string is refused before it is encoded.
        if len(data) > limits.max_bytes:
            raise _fail("size", f"document is larger than {limits.max_bytes} bytes")
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise _fail("utf8", f"text has an unencodable character at character offset {exc.start}") from None
        if size > limits.max_bytes:
            raise _fail("size", f"document is {size} bytes, more than {limits.max_bytes}")
        return data.removeprefix(_BOM_CHAR)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_strict needs bytes or str, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > limits.max_bytes:
        raise _fail("size", f"document is {len(raw)} bytes, more than {limits.max_bytes}")
    skip = len(_BOM_BYTES) if raw.startswith(_BOM_BYTES) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail("utf8", f"invalid UTF-8 at byte offset {exc.start + skip}") from None


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` without parsing (so without recursion)."""
    # Fast exit: with no more brackets than allowed levels the limit cannot be reached.
    if text.count("[") + text.count("{") <= max_depth:
        return
    # Strings removed at C speed first, so the Python loop below sees brackets only;
    # the position-reporting scan of the original text runs only on failure.
    brackets = _BRACKET.findall(_STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char == "[" or char == "{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    if deepest <= max_depth:
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
    """Find the placeholders the hooks left and give each its JSON pointer (iteratively)."""
    found: list[Violation] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, _NonFinite):
            found.append(
                Violation(
                    pointer=pointer,
                    message=f"number {node.text[:40]} is not finite (JSON numbers must be finite)",
                    expected="finite number",
                    found=node.text[:60],
                    code="non_finite",
                )
            )
        elif isinstance(node, str):
            if check_surrogates and _LONE_SURROGATE.search(node):
                found.append(_surrogate_violation(pointer))
        elif isinstance(node, dict):
            for key in getattr(node, "duplicates", ()):
                found.append(
                    Violation(
                        pointer=f"{pointer}/{escape_pointer_token(key)}",
                        message="member name appears more than once in this object",
                        expected="unique member names",
                        found="duplicate member",
                        code="duplicate_key",
                    )
                )
            for key, child in node.items():
                child_pointer = f"{pointer}/{escape_pointer_token(key)}"
                if check_surrogates and _LONE_SURROGATE.search(key):
                    found.append(_surrogate_violation(child_pointer))
                stack.append((child, child_pointer))
        elif isinstance(node, list):
            stack.extend((child, f"{pointer}/{i}") for i, child in enumerate(node))
    return found


def _surrogate_violation(pointer: str) -> Violation:
    return Violation(
        pointer=pointer,
        message="string contains an unpaired UTF-16 surrogate escape (not valid Unicode)",
        expected="valid Unicode text",
        code="utf8",
    )


def parse_strict(data: bytes | str, limits: ParseLimits = ParseLimits()) -> Any:
    """Parse one JSON document, refusing anything ``json.loads`` would accept too leniently.

    :raises FactsValidationError: with violations coded ``size``, ``utf8``, ``syntax``,
        ``depth`` (each reported alone: parsing stops there), or ``non_finite`` and
        ``duplicate_key`` (all of them reported together, each with its JSON pointer).
    """
    text = _to_text(data, limits)
    _check_depth(text, limits.max_depth)
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
        seen: set[str] = set()
        dups: list[str] = []
        for key, _ in pairs:
            if key in seen and key not in dups:
                dups.append(key)
            seen.add(key)
        out = _DupDict(obj)
        out.duplicates = dups
        return out

    try:
        value = json.loads(
            text,
            parse_constant=on_constant,
            parse_float=on_float,
            parse_int=on_int,
            object_pairs_hook=on_object,
        )
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
            problems.sort(key=violation_sort_key)
            raise FactsValidationError(problems)
    return value


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
    """JSON type and a short rendering of ``value`` (at most 60 characters of it), for ``Violation.found``."""
    if isinstance(value, dict | list) and len(value) > 8:
        return f"{json_type_name(value)} of {len(value)} {'members' if isinstance(value, dict) else 'items'}"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > _FOUND_MAX:
        text = text[: _FOUND_MAX - 1] + "…"
    return f"{json_type_name(value)} {text}"


def is_plain_json(doc: Any, max_depth: int) -> bool:
    """Cheap yes/no: is ``doc`` plain, finite JSON data within ``max_depth``? (hot path).

    Exact type checks on purpose: subclasses and foreign types answer "no" and the
    slow pass (:func:`plain_json_problems`) then judges them properly.
    """
    if type(doc) is not dict and type(doc) is not list:
        return is_plain_json([doc], max_depth + 1)
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return False
        if type(node) is dict:
            for key in node:
                if type(key) is not str:
                    return False
            children: Any = node.values()
        else:
            children = node
        for child in children:
            kind = type(child)
            if kind is str or kind is int or kind is bool or child is None:
                continue
            if kind is float:
                if child - child != 0:  # NaN and ±inf: inf - inf is NaN, which != 0
                    return False
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            else:
                return False
    return True


def plain_json_problems(doc: Any, max_depth: int) -> list[Violation]:
    """Every way ``doc`` is not plain JSON data, each with its JSON pointer."""
    out: list[Violation] = []
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        node, pointer, depth = stack.pop()
        if node is None or isinstance(node, str | int):  # bool is an int
            continue
        if isinstance(node, float):
            if node - node != 0:
                out.append(
                    Violation(pointer, "number is not finite", "finite number", describe_value(node), "non_finite")
                )
        elif isinstance(node, dict | list):
            if depth > max_depth:
                message = f"nesting deeper than {max_depth} levels"
                out.append(Violation(pointer, message, f"at most {max_depth} levels", code="depth"))
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                child_pointer = f"{pointer}/{escape_pointer_token(key)}"
                if isinstance(node, dict) and not isinstance(key, str):
                    msg = "member name is not a string"
                    out.append(Violation(child_pointer, msg, "string", describe_value(key), "type"))
                stack.append((child, child_pointer, depth + 1))
        else:
            msg = "value is not JSON data"
            out.append(Violation(pointer, msg, "a JSON value", describe_value(node), "type"))
    return out


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
