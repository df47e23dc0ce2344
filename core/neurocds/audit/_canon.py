"""Canonical JSON and hashing for the audit chain.

The byte form is :func:`neurocds.facts.strictjson.canonical_json` (sorted keys,
``(",", ":")`` separators, UTF-8, no ASCII escaping, non-finite floats
rejected); this wrapper turns its errors into :class:`AuditError`. The audit
log's hashes depend on that exact form forever: changing it breaks every
existing log's verification.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from neurocds.audit.errors import AuditError
from neurocds.facts.strictjson import canonical_json as _strict_canonical


def canonical_json(obj: Any) -> bytes:
    """Return the one canonical byte form of ``obj``.

    :raises AuditError: ``obj`` is not representable (NaN, lone surrogate, odd type).
    """
    try:
        return _strict_canonical(obj)
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise AuditError(f"value cannot be written as canonical JSON: {exc}") from exc


def normalise(obj: Any) -> Any:
    """Round-trip ``obj`` through canonical JSON.

    Tuples become lists and non-string keys strings *before* hashing, so the hash a
    writer computes is exactly the one a verifier recomputes from the parsed line.
    """
    return json.loads(canonical_json(obj))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_canonical(obj: Any) -> str:
    return sha256_hex(canonical_json(obj))
