"""Canonical JSON bytes for hashing, written by orjson where it is byte-identical to Python's.

``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` is the
definition (see :func:`neurocds.facts.strictjson.canonical_json`); orjson writes the
same bytes about 3x cheaper except in three places, which fall back to the
definition so the hash never changes:

* floats Python writes with an exponent (``1e-05``, ``1e+16``): orjson writes
  ``1e-5`` / ``1e16``, and writes floats in [1e-5, 1e-4) in full (``0.00001``);
* NaN and infinity, which orjson writes as ``null`` where the definition refuses them;
* what orjson cannot encode at all (integers beyond 64 bits, non-string keys, lone
  surrogates): the definition then answers or raises exactly as before.

The check is on the output bytes, so a string that merely contains ``null`` or
``1e5`` takes the slow path too: correct, just not faster.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_EXPONENT_TAIL = re.compile(rb"e[-0-9]")  # orjson writes a lower-case e, no '+'
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME  # json.dumps refuses both


def _may_differ(out: bytes) -> bool:
    """True when ``out`` may hold a number Python writes differently (or a NaN written as null).

    One regular expression for "digit, e" costs 7 us per 750-byte document (it tries
    every position); finding the rarer "e, digit or minus" and then looking one byte
    back costs 1 us.
    """
    return b"null" in out or _exponent_form(out)


def canonical_json_fast(obj: Any) -> bytes:
    try:
        out = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | _PASSTHROUGH)
    except TypeError:  # orjson.JSONEncodeError included
        out = None
    if out is not None and not _may_differ(out):
        return out
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


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


def _exponent_form(out: bytes) -> bool:
    """True when ``out`` may hold a float Python writes differently (``1e-05``, ``1e+16``)."""
    if b"0.0000" in out:
        return True
    return any(m.start() and out[m.start() - 1] in b"0123456789" for m in _EXPONENT_TAIL.finditer(out))


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
