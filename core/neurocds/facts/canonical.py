"""Canonical JSON bytes for hashing, written by orjson where it is byte-identical to Python's.

``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` is the
definition (see :func:`neurocds.facts.strictjson.canonical_json`); orjson writes the
same bytes about 3x cheaper except in three places, which fall back to the
definition so the hash never changes:

* two float forms: orjson writes floats in [1e-5, 1e-4) in full (``0.00001`` where
  Python writes ``1e-05``) and pads no negative exponent (``6.7e-6``, Python
  ``6.7e-06``); positive exponents (``1e+16``) are written alike;
* NaN and infinity, which orjson writes as ``null`` where the definition refuses them;
* what orjson cannot encode at all (integers beyond 64 bits, non-string keys, lone
  surrogates): the definition then answers or raises exactly as before.

The output is searched for those forms. The search cannot miss them (a number starts
after ``:``, ``,``, ``[`` or ``-``), and it rarely flags what is not one: a hex hash
has no ``e-`` and no ``0.0000`` after a separator, so the audit log's records, full of
hashes, stay on the fast path. A string that holds such text (or ``null``) only costs
a check or the slow path: correct, just not faster. This one encoder serves the facts
hash and the audit log (:mod:`neurocds.audit._canon`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# Each pattern starts with a literal, so the search skips ahead at memchr speed.
_SHORT_EXPONENT = re.compile(rb"e-\d(?!\d)(?<=\de-\d)")  # 6.7e-6: Python pads to e-06
_SMALL_WITHOUT_EXPONENT = re.compile(rb"0\.0000(?<=[:,\[-]0\.0000)")  # 0.00001: Python 1e-05
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME  # json.dumps refuses both
_OPTIONS = orjson.OPT_SORT_KEYS | _PASSTHROUGH
_EXPONENT_TAIL = re.compile(rb"e[-0-9]")  # orjson writes a lower-case e, no '+'


def _float_forms_differ(out: bytes) -> bool:
    # (A bare top-level 0.0000x has no separator before it; an alternation in the pattern
    # would cost the literal prefix that lets the search skip ahead, 10x on a record.)
    return bool(_SHORT_EXPONENT.search(out) or _SMALL_WITHOUT_EXPONENT.search(out) or out.startswith(b"0.0000"))


def _all_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_finite(v) for v in obj)
    return True


def encode_canonical(obj: Any, *, parsed: bool = False) -> tuple[bytes, bool]:
    """Canonical bytes of ``obj``, and whether orjson wrote them (``False``: the definition did).

    :param parsed: ``obj`` was just parsed from JSON, so it holds no NaN or infinity and
        a ``null`` in the output needs no check.
    :raises ValueError: NaN or infinity, or a string that is not valid Unicode.
    :raises TypeError: a value JSON cannot represent (a dataclass, a datetime, a set...).
    """
    try:
        out = orjson.dumps(obj, option=_OPTIONS)  # dataclasses and datetimes: refused below, as json does
    except TypeError:  # orjson.JSONEncodeError included
        pass
    else:
        if not _float_forms_differ(out) and (parsed or b"null" not in out or _all_finite(obj)):
            return out, True
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8"), False


def canonical_json_fast(obj: Any) -> bytes:
    """The definition's bytes of ``obj`` (see the module docstring); raises what it raises."""
    return encode_canonical(obj)[0]


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``json.dumps(obj, indent=indent, ensure_ascii=False)``, written by orjson where that is the same text.

    For the readable two-space form that results, responses and the CLI write, orjson is
    about 20x cheaper than ``json.dumps`` (whose indenting encoder is pure Python) and
    writes the same bytes, except for floats Python writes with an exponent and what orjson
    cannot encode (non-string keys, lone surrogates, integers beyond 64 bits): those take
    ``json.dumps`` itself. One difference is kept on purpose: a NaN or infinity, which
    ``json.dumps`` writes as ``NaN``/``Infinity`` (not JSON), orjson writes as ``null``.
    Results carry none: facts with them are refused at parsing.
    """
    if indent == 2:
        try:
            out = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | _PASSTHROUGH)
        except TypeError:  # orjson.JSONEncodeError included
            out = None
        if out is not None and not _indented_number_differs(out):
            return out.decode("utf-8")
    return json.dumps(obj, indent=indent, ensure_ascii=False)


_NUMBER_BYTES = frozenset(b"0123456789.-")


def _indented_number_differs(out: bytes) -> bool:
    """True when indented ``out`` holds a number Python may write differently (an exponent, or 0.0000x).

    Only a token where the indented form puts a value counts: at the start, after ``": "``
    or first on a line (a newline inside a string is written escaped). Hex digests and ids
    in strings ("3e5f...") therefore keep the fast path; a string that merely looks like a
    value only takes the slow one.
    """
    hits = [m.start() for m in _EXPONENT_TAIL.finditer(out)]
    at = out.find(b"0.0000")
    while at >= 0:
        hits.append(at)
        at = out.find(b"0.0000", at + 1)
    for i in hits:
        while i and out[i - 1] in _NUMBER_BYTES:
            i -= 1
        j = i
        while j and out[j - 1] == 0x20:
            j -= 1
        if j == 0 or out[j - 1] == 0x0A or (out[j - 1] == 0x3A and i - j == 1):
            return True
    return False


def compact_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON in the object's own key order, by orjson (population result lines,
    CDS Hooks responses): a result document is ~20 KB, and ``json.dumps`` cost a quarter of
    an evaluation writing it, orjson a twentieth. What orjson cannot encode (integers beyond
    64 bits, non-string keys) falls back to the standard library."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError included
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
