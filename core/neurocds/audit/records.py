"""Audit record bodies, the hash chain's sealing rule and schema validation.

A record is ``{"record_version", "sequence", "type", "recorded_at", "prev_hash",
<type>: {...body}, "hash"}``, plus ``"atomic_with_next": true`` on every record of
a several-record append but its last. ``hash`` is SHA-256 over the canonical JSON of the
record without ``hash``; ``prev_hash`` is the previous record's ``hash`` (64 zeros
for sequence 1). Bodies are built here from plain dicts so the writer, the tests
and other services share one definition.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from neurocds.audit._canon import canonical_json, encode_normalised, sha256_canonical, sha256_hex
from neurocds.audit.errors import AuditError

RECORD_VERSION = "1"
GENESIS_HASH = "0" * 64
RECORD_TYPES = ("decision", "rejection", "recovery", "checkpoint", "feedback", "cards", "population_run", "segment")
SCHEMA_FILE = "audit-record.schema.json"

# Redaction keeps only these keys (whitelists, not blacklists: a key the engine
# adds later stays out of a redacted record until someone decides it is safe).
_BECAUSE_KEYS = ("pointer", "derived", "finding")
_FINDING_KEYS = (
    "id",
    "pack",
    "rule",
    "urgency",
    "title",
    "recommendations",
    "unknown",
    "evidence",
)
_DERIVED_KEYS = ("name", "pack", "rule")
_FIRED_KEYS = ("rule", "pack")
_NOT_FIRED_KEYS = ("rule", "pack", "state", "unknown_facts")
# Who asked: the CDS Hooks call's context, and the JWT claims naming the EHR (never the token itself).
_REQUEST_KEYS = ("user", "fhir_server", "hook", "hook_instance", "issuer", "subject", "tenant")


def utc_now() -> str:
    """RFC 3339 UTC timestamp with microseconds (``2025-01-02T03:04:05.123456Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a record must carry: over everything but its own ``hash`` member."""
    return sha256_canonical({k: v for k, v in record.items() if k != "hash"})


def seal(
    rtype: str, body: Mapping[str, Any], *, sequence: int, prev_hash: str, atomic_with_next: bool = False
) -> dict[str, Any]:
    """Wrap ``body`` in the envelope and compute the record's hash.

    :param atomic_with_next: the next record was written in the same append, and
        the two stand or fall together: a log that ends on such a record ends in an
        unfinished append, which recovery moves aside like a torn line.
    """
    return seal_line(rtype, body, sequence=sequence, prev_hash=prev_hash, atomic_with_next=atomic_with_next)[0]


def seal_line(
    rtype: str, body: Mapping[str, Any], *, sequence: int, prev_hash: str, atomic_with_next: bool = False
) -> tuple[dict[str, Any], bytes]:
    """:func:`seal`, and the record's line (canonical bytes and a newline), encoding the body once.

    The body is most of a record; the envelope's few members are encoded on their own and
    spliced around it in key order, which is exactly the canonical form of the whole.
    """
    if rtype not in RECORD_TYPES:
        raise AuditError(f"unknown record type {rtype!r}")
    body_bytes, parsed = encode_normalised(dict(body))
    envelope: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "sequence": sequence,
        "type": rtype,
        "recorded_at": utc_now(),
        "prev_hash": prev_hash,
    }
    if atomic_with_next:
        envelope["atomic_with_next"] = True
    encoded = {key: _envelope_value(value) for key, value in envelope.items()}
    encoded[rtype] = body_bytes
    digest = sha256_hex(_object_bytes(encoded))
    encoded["hash"] = b'"' + digest.encode("ascii") + b'"'  # hex digits: nothing to escape
    record = {**envelope, rtype: parsed, "hash": digest}
    return record, _object_bytes(encoded) + b"\n"


def _envelope_value(value: Any) -> bytes:
    """Canonical bytes of an envelope member without the general encoder's float and NaN checks.

    The envelope holds only an int (the sequence), ``True`` and short ASCII strings (the
    version, a type from :data:`RECORD_TYPES`, a timestamp, a hash), where orjson writes
    exactly the bytes :mod:`json` writes; anything else takes the general path. The sealed
    record is then checked against the audit schema as before.
    """
    if type(value) is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode("ascii") + b'"'
    if (type(value) is int and -(2**63) <= value < 2**64) or value is True:
        return orjson.dumps(value)
    return canonical_json(value)


@lru_cache(maxsize=64)
def _key_bytes(key: str) -> bytes:
    return canonical_json(key)


def _object_bytes(members: Mapping[str, bytes]) -> bytes:
    """The canonical JSON object with these already-encoded member values (keys sorted)."""
    return b"{" + b",".join(_key_bytes(k) + b":" + members[k] for k in sorted(members)) + b"}"


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    from neurocds.resources import load_schema

    schema = load_schema(SCHEMA_FILE)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@lru_cache(maxsize=1)
def _is_valid() -> Callable[[Any], bool]:
    """The audit schema compiled to a yes/no check (see :mod:`neurocds.facts.fastschema`).

    Every append checks its records, and ``jsonschema`` took most of an append's time
    on a decision record with its trace (about 5 ms of 9). The compiled check agrees
    with ``jsonschema`` by construction (tested on real and mutated records); this
    validator asserts no formats, so neither does the check (the schema uses none).
    jsonschema-rs answers first where it is installed (:mod:`neurocds.facts.rust_schema`;
    verification checks every record, and it took half of verify's time): a record it
    refuses is looked at by ``jsonschema``, so it can slow an answer, never change one.
    """
    from neurocds.facts.rust_schema import compile_rust
    from neurocds.resources import load_schema

    rust = compile_rust(load_schema(SCHEMA_FILE), {}, lambda doc: _compiled()(doc))  # no formats asserted
    return rust or _compiled()


@lru_cache(maxsize=1)
def _compiled() -> Callable[[Any], bool]:
    """The schema compiled by :mod:`neurocds.facts.fastschema` (built only when needed: it
    checks the schema itself first, which costs a tenth of a second)."""
    from neurocds.facts.fastschema import compile_schema

    return compile_schema(
        _validator().schema,
        conforms=lambda _value, _format: True,
        delegate=lambda s: _validator().evolve(schema=s).is_valid,
    )


def schema_errors(record: Any) -> list[str]:
    """Schema violations of one record, each as ``"<pointer>: <message>"``."""
    if _is_valid()(record):
        return []  # the messages, when there are any, come from jsonschema itself
    out = []
    for err in sorted(_validator().iter_errors(record), key=lambda e: list(e.absolute_path)):
        pointer = "/" + "/".join(str(p) for p in err.absolute_path)
        # The schema messages quote the offending instance; keep them short so a
        # damaged record never floods a terminal with its content.
        out.append(f"{pointer}: {err.message[:200]}")
    return out


# ---------------------------------------------------------------- redaction


def _pick(obj: Any, keys: Iterable[str]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        return {}
    return {k: obj[k] for k in keys if k in obj}


def _redact_because(items: Any) -> list[dict[str, Any]]:
    return [_pick(item, _BECAUSE_KEYS) for item in items or () if isinstance(item, Mapping)]


def _redact_finding(finding: Mapping[str, Any]) -> dict[str, Any]:
    out = _pick(finding, _FINDING_KEYS)
    out["because"] = _redact_because(finding.get("because"))
    return out


def _redact_error(error: Mapping[str, Any]) -> dict[str, Any]:
    # Error messages may quote an input value; keep only their hash when redacting.
    out = _pick(error, ("kind", "stage", "pack", "rule"))
    if isinstance(error.get("message"), str):
        out["message_sha256"] = sha256_canonical(error["message"])
    return out


def _redact_trace(trace: Any) -> dict[str, Any]:
    if not isinstance(trace, Mapping):
        return {}
    fired = []
    for item in trace.get("fired") or ():
        entry = _pick(item, _FIRED_KEYS)
        entry["because"] = _redact_because(_pick(item, ("because",)).get("because"))
        fired.append(entry)
    not_fired = [_pick(item, _NOT_FIRED_KEYS) for item in trace.get("not_fired") or ()]
    out: dict[str, Any] = {"fired": fired, "not_fired": not_fired}
    if trace.get("omitted") is True:  # made with --no-trace: say so, not "nothing fired"
        out["omitted"] = True
    return out


# ---------------------------------------------------------------- bodies


def decision_body(
    result: Mapping[str, Any],
    facts: Mapping[str, Any] | None,
    *,
    redact: bool,
    pseudonym: str | None,
    pseudonym_key_id: str | None,
    request: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of a ``decision`` record for one engine result.

    :param result: ``Result.to_dict()`` of the evaluation.
    :param facts: the facts document evaluated (stored only when not redacting).
    :param request: who asked (``user``, ``fhir_server``, ``hook``, ``hook_instance``, and the
        EHR's JWT ``issuer``, ``subject``, ``tenant``): a CDS Hooks call's; members that are
        not strings are left out.
    """
    for key in ("evaluation_id", "evaluated_at", "facts_sha256"):
        if not isinstance(result.get(key), str):
            raise AuditError(f"result has no {key}; cannot record the decision")
    findings = [f for f in result.get("findings") or () if isinstance(f, Mapping)]
    derived = [d for d in result.get("derived") or () if isinstance(d, Mapping)]
    errors = [e for e in result.get("errors") or () if isinstance(e, Mapping)]
    body: dict[str, Any] = {
        "decision_id": result["evaluation_id"],
        "result_version": str(result.get("result_version", "1")),
        "evaluated_at": result["evaluated_at"],
        "engine": dict(result.get("engine") or {"name": "neurocds", "version": "unknown"}),
        "packs": [_pick(p, ("name", "version", "sha256", "status", "error")) for p in result.get("packs") or ()],
        "facts_sha256": result["facts_sha256"],
        "redacted": redact,
        "patient_pseudonym": pseudonym,
        "pseudonym_key_id": pseudonym_key_id,
        "highest_urgency": result.get("highest_urgency", "none"),
        "complete": bool(result.get("complete", False)),
        "missing_data": list(result.get("missing_data") or ()),
    }
    asked = _asked(request)
    if asked:
        body["request"] = asked
    if redact:
        body["findings"] = [_redact_finding(f) for f in findings]
        body["derived"] = [_pick(d, _DERIVED_KEYS) | {"because": _redact_because(d.get("because"))} for d in derived]
        body["errors"] = [_redact_error(e) for e in errors]
        body["trace"] = _redact_trace(result.get("trace"))
    else:
        if facts is None:
            raise AuditError("facts are required unless the log redacts them")
        body["facts"] = dict(facts)
        body["findings"] = [dict(f) for f in findings]
        body["derived"] = [dict(d) for d in derived]
        body["errors"] = [dict(e) for e in errors]
        body["trace"] = dict(result.get("trace") or {})
    return body


def violation_dict(violation: Any) -> dict[str, Any]:
    """One violation without its ``found`` value (what the input held)."""
    raw = violation.to_dict() if hasattr(violation, "to_dict") else dict(violation)
    out = {
        "pointer": str(raw.get("pointer", "")),
        "code": str(raw.get("code", "invalid")),
        "message": str(raw.get("message", "")),
    }
    if raw.get("expected") is not None:
        out["expected"] = str(raw["expected"])
    return out


def rejection_body(
    violations: Sequence[Any],
    *,
    facts_sha256: str | None,
    pseudonym: str | None,
    pseudonym_key_id: str | None,
    engine: Mapping[str, Any] | None = None,
    packs: Sequence[Mapping[str, Any]] | None = None,
    rejection_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rejection_id": rejection_id or str(uuid.uuid4()),
        "facts_sha256": facts_sha256,
        "patient_pseudonym": pseudonym,
        "pseudonym_key_id": pseudonym_key_id,
        "violations": [violation_dict(v) for v in violations],
    }
    if engine is not None:
        body["engine"] = dict(engine)
    if packs is not None:
        body["packs"] = [_pick(p, ("name", "version", "sha256", "status", "error")) for p in packs]
    return body


def _asked(request: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: v for k, v in (request or {}).items() if k in _REQUEST_KEYS and isinstance(v, str) and v}


def feedback_body(
    card_uuid: str,
    outcome: str,
    *,
    override_reason: Mapping[str, Any] | None,
    decision_id: str | None,
    accepted_suggestions: Sequence[str] | None,
    outcome_timestamp: str | None,
    redact: bool,
    request: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if outcome not in ("accepted", "overridden"):
        raise AuditError(f"feedback outcome must be accepted or overridden, not {outcome!r}")
    body: dict[str, Any] = {"card_uuid": card_uuid, "outcome": outcome}
    if override_reason is not None:
        reason = dict(override_reason)
        # A clinician's free-text comment may name the patient: hash it when redacting.
        if redact and isinstance(reason.get("userComment"), str):
            reason["userComment_sha256"] = sha256_canonical(reason.pop("userComment"))
        body["override_reason"] = reason
    if decision_id is not None:
        body["decision_id"] = decision_id
    if accepted_suggestions:
        body["accepted_suggestions"] = [str(s) for s in accepted_suggestions]
    if outcome_timestamp is not None:
        body["outcome_timestamp"] = outcome_timestamp
    asked = _asked(request)  # who sent the feedback: the EHR's JWT issuer, subject and tenant
    if asked:
        body["request"] = asked
    return body


def cards_body(decision_id: str, card_uuids: Sequence[str]) -> dict[str, Any]:
    return {"decision_id": decision_id, "card_uuids": [str(c) for c in card_uuids]}


def record_id(record: Mapping[str, Any]) -> str | None:
    """The decision or rejection id a record is known by, if it has one."""
    body = record.get(str(record.get("type")))
    if isinstance(body, Mapping):
        for key in ("decision_id", "rejection_id"):
            value = body.get(key)
            if isinstance(value, str) and record.get("type") in ("decision", "rejection"):
                return value
    return None
