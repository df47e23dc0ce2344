"""Canonical JSON and hashing for the audit chain.

The byte form is :func:`neurocds.facts.strictjson.canonical_json` (sorted keys,
``(",", ":")`` separators, UTF-8, no ASCII escaping, non-finite floats
rejected); this wrapper turns its errors into :class:`AuditError`. The audit
log's hashes depend on that exact form forever: changing it breaks every
existing log's verification.

Speed: every append encodes its record and every verification re-encodes each
record to prove its bytes canonical, so the encoder is the log's hot loop. It is
:func:`neurocds.facts.canonical.encode_canonical`, the one fast encoder the facts
hash uses too: ``orjson`` where its bytes are those of :mod:`json`, :mod:`json`
where they may not be (two float forms, NaN, what orjson cannot write). Its check
for those forms leaves hex hashes alone, so audit records stay on the fast path;
``tests/audit/test_audit_scale.py`` checks the bytes against :mod:`json`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from neurocds.audit.errors import AuditError
from neurocds.facts.canonical import encode_canonical


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
        return encode_canonical(obj, parsed=parsed)
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise AuditError(f"value cannot be written as canonical JSON: {exc}") from exc


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
