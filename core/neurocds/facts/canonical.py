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
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


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
