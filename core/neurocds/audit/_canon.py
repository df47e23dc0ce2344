"""Canonical JSON and hashing for the audit chain.

The byte form is :func:`neurocds.facts.strictjson.canonical_json` (sorted keys,
``(",", ":")`` separators, UTF-8, no ASCII escaping, non-finite floats
rejected); this wrapper turns its errors into :class:`AuditError`. The audit
log's hashes depend on that exact form forever: changing it breaks every
existing log's verification.

Speed: every append encodes its record and every verification re-encodes each
record to prove its bytes canonical, so the encoder is the log's hot loop.
``orjson`` (a C extension, several times faster than :mod:`json`) writes exactly
the same bytes for everything but two float forms and integers beyond 64 bits:
it writes ``1e-5`` as ``0.00001`` and pads no exponent (``6.7e-6``, where Python
writes ``6.7e-06``). Its output is searched for those two forms (the search
cannot miss them: a number starts after ``:``, ``,`` or ``[``, and no hash or
other value the log writes holds ``e-`` followed by one digit) and, when either
may be there, the record is encoded by :mod:`json` instead. Floats with an
exponent are rare in decisions, so the fallback costs nothing in practice;
``tests/audit/test_audit_canon.py`` checks the two encoders agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import orjson

from neurocds.audit.errors import AuditError
from neurocds.facts.strictjson import canonical_json as _strict_canonical

# The only places orjson's bytes can differ from Python's (see the module docstring).
# Each pattern starts with a literal, so the search skips ahead at memchr speed.
_SHORT_EXPONENT = re.compile(rb"e-\d(?!\d)(?<=\de-\d)")
_SMALL_WITHOUT_EXPONENT = re.compile(rb"0\.0000(?<=[:,\[-]0\.0000)")


def _float_forms_differ(out: bytes) -> bool:
    return bool(_SHORT_EXPONENT.search(out) or _SMALL_WITHOUT_EXPONENT.search(out))
_SORTED = orjson.OPT_SORT_KEYS


def canonical_json(obj: Any, *, parsed: bool = False) -> bytes:
    """Return the one canonical byte form of ``obj``.

    :param parsed: ``obj`` was just parsed from JSON bytes, so it holds no NaN or
        infinity to refuse (a parsed ``NaN`` literal is encoded as ``null``, which no
        longer matches its line: a verifier sees a non-canonical record either way).
    :raises AuditError: ``obj`` is not representable (NaN, lone surrogate, odd type).
    """
    return _encode(obj, parsed=parsed)[0]


def _encode(obj: Any, *, parsed: bool = False) -> tuple[bytes, bool]:
    """Canonical bytes, and whether orjson wrote them (``False``: :mod:`json` did)."""
    try:
        out = orjson.dumps(obj, option=_SORTED)
    except (TypeError, orjson.JSONEncodeError):
        pass  # a big integer, a non-string key, a lone surrogate: json decides (or refuses)
    else:
        # orjson writes NaN and infinity as null; json refuses them, as the log must.
        if not _float_forms_differ(out) and (parsed or b"null" not in out or _all_finite(obj)):
            return out, True
    try:
        return _strict_canonical(obj), False
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise AuditError(f"value cannot be written as canonical JSON: {exc}") from exc


def _all_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_finite(v) for v in obj)
    return True


def encode_normalised(obj: Any) -> tuple[bytes, Any]:
    """Canonical bytes of ``obj`` and the value a reader parses back from them.

    One encode and one (fast) parse: a writer hashes and writes the bytes, and checks
    the parsed value, which is exactly what a verifier will see.
    """
    out, by_orjson = _encode(obj)
    value = loads(out)
    if not by_orjson:  # integer keys, say, become strings when parsed back and may then sort otherwise
        out = canonical_json(value, parsed=True)
    return out, value


def loads(data: bytes) -> Any:
    """Parse JSON bytes (``orjson`` first; :mod:`json` for what it refuses, such as NaN).

    :raises ValueError: not JSON (``UnicodeDecodeError`` is a ``ValueError``).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8"))


def normalise(obj: Any) -> Any:
    """Round-trip ``obj`` through canonical JSON.

    Tuples become lists and non-string keys strings *before* hashing, so the hash a
    writer computes is exactly the one a verifier recomputes from the parsed line.
    """
    return loads(canonical_json(obj))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_canonical(obj: Any) -> str:
    return sha256_hex(canonical_json(obj))
