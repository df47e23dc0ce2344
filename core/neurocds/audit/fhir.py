"""Export one recorded decision as FHIR R4: a collection Bundle of AuditEvent + Provenance.

Element names follow FHIR R4 (4.0.1): ``AuditEvent.type`` is a Coding,
``agent.requestor`` is required, ``source.observer`` is required,
``entity.detail`` holds ``type`` + ``valueString``; ``Provenance.target``,
``recorded`` and ``agent.who`` are required. The decision itself is not a FHIR
resource, so it is referenced by identifier (``urn:uuid:<decision id>``), and
the facts document by its SHA-256. Resource ids are derived from the decision
id, so exporting the same record twice gives the same bundle.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from neurocds.audit.errors import AuditError
from neurocds.audit.query import body_of

DCM = "http://dicom.nema.org/resources/ontology/DCM"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
ACTION_EXECUTE = "E"
# FHIR R4 AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure.
OUTCOME_SUCCESS, OUTCOME_MINOR = "0", "4"
_NS = uuid.UUID("6f1c1f8e-9a57-4d55-9d0a-2c3e7c1b7a11")  # namespace for derived ids
FACTS_HASH_SYSTEM = "urn:neurocds:facts-sha256"
PSEUDONYM_SYSTEM = "urn:neurocds:patient-pseudonym"
AUDIT_RECORD_SYSTEM = "urn:neurocds:audit-record-hash"


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _instant(text: Any) -> str:
    """FHIR instants need seconds and a zone; ours always have both."""
    return str(text)


def export_fhir(record: Mapping[str, Any]) -> dict[str, Any]:
    """Bundle (type collection) holding an AuditEvent and a Provenance for one decision."""
    if record.get("type") != "decision":
        raise AuditError("only decision records can be exported to FHIR", sequence=record.get("sequence"))
    body = body_of(record)
    decision_id = str(body.get("decision_id"))
    decision_ref = {
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{decision_id}"},
        "display": f"neurocds decision {decision_id}",
    }
    engine = body.get("engine") or {}
    packs = [p for p in body.get("packs") or () if isinstance(p, Mapping)]
    pack_text = ",".join(f"{p.get('name')}@{p.get('version')}#{p.get('sha256')}" for p in packs)
    device = {"display": f"{engine.get('name', 'neurocds')} {engine.get('version', '')}".strip()}
    facts_ref = {
        "identifier": {"system": FACTS_HASH_SYSTEM, "value": str(body.get("facts_sha256"))},
        "display": "patient facts document (by SHA-256)",
    }
    findings = [f for f in body.get("findings") or () if isinstance(f, Mapping)]
    ok = not body.get("errors") and bool(body.get("complete"))
    audit_id = str(uuid.uuid5(_NS, f"auditevent:{decision_id}"))
    prov_id = str(uuid.uuid5(_NS, f"provenance:{decision_id}"))

    entities: list[dict[str, Any]] = [
        {
            "what": facts_ref,
            # audit-entity-type 2 = System Object; object-role 4 = Domain Resource
            "type": _coding(f"{TERMINOLOGY}/audit-entity-type", "2", "System Object"),
            "role": _coding(f"{TERMINOLOGY}/object-role", "4", "Domain Resource"),
            "name": "facts document",
            "detail": [
                {"type": "facts_sha256", "valueString": str(body.get("facts_sha256"))},
                {"type": "redacted", "valueString": str(bool(body.get("redacted"))).lower()},
            ],
        },
        {
            "what": decision_ref,
            "type": _coding(f"{TERMINOLOGY}/audit-entity-type", "2", "System Object"),
            "role": _coding(f"{TERMINOLOGY}/object-role", "3", "Report"),
            "name": "decision",
            "detail": [
                {"type": "highest_urgency", "valueString": str(body.get("highest_urgency"))},
                {"type": "complete", "valueString": str(bool(body.get("complete"))).lower()},
                {"type": "findings", "valueString": ",".join(f"{f.get('id')}:{f.get('urgency')}" for f in findings)},
                {"type": "packs", "valueString": pack_text},
                {"type": "audit_sequence", "valueString": str(record.get("sequence"))},
                {"type": "audit_record_hash", "valueString": str(record.get("hash"))},
            ],
        },
    ]
    if body.get("patient_pseudonym"):
        entities.append(
            {
                "what": {"identifier": {"system": PSEUDONYM_SYSTEM, "value": body["patient_pseudonym"]}},
                # audit-entity-type 1 = Person; object-role 1 = Patient
                "type": _coding(f"{TERMINOLOGY}/audit-entity-type", "1", "Person"),
                "role": _coding(f"{TERMINOLOGY}/object-role", "1", "Patient"),
            }
        )
    audit_event = {
        "resourceType": "AuditEvent",
        "id": audit_id,
        # DCM 110110 "Patient Record": patient data was used; action E (Execute):
        # an application function (the rule evaluation) ran over it.
        "type": _coding(DCM, "110110", "Patient Record"),
        "subtype": [_coding("urn:neurocds:audit-event", "cds-decision", "Clinical decision support evaluation")],
        "action": ACTION_EXECUTE,
        "period": {"start": _instant(body.get("evaluated_at")), "end": _instant(body.get("evaluated_at"))},
        "recorded": _instant(record.get("recorded_at")),
        "outcome": OUTCOME_SUCCESS if ok else OUTCOME_MINOR,
        "outcomeDesc": "evaluation complete" if ok else "evaluation incomplete or with errors",
        "purposeOfEvent": [{"coding": [_coding(f"{TERMINOLOGY}/v3-ActReason", "TREAT", "treatment")]}],
        "agent": [
            {
                "type": {"coding": [_coding(DCM, "110150", "Application")]},
                "who": device,
                "name": device["display"],
                "requestor": False,
            }
        ],
        "source": {
            "site": "neurocds",
            "observer": device,
            "type": [_coding(f"{TERMINOLOGY}/security-source-type", "4", "Application Server")],
        },
        "entity": entities,
    }
    provenance = {
        "resourceType": "Provenance",
        "id": prov_id,
        "target": [decision_ref],
        "occurredDateTime": str(body.get("evaluated_at")),
        "recorded": _instant(record.get("recorded_at")),
        "activity": {"coding": [_coding(f"{TERMINOLOGY}/v3-DataOperation", "CREATE", "create")]},
        "agent": [
            {
                "type": {"coding": [_coding(f"{TERMINOLOGY}/provenance-participant-type", "performer", "Performer")]},
                "who": device,
            }
        ],
        "entity": [{"role": "source", "what": facts_ref}, *_source_resources(body)],
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(_NS, f"bundle:{decision_id}")),
        "type": "collection",
        "timestamp": _instant(record.get("recorded_at")),
        "entry": [
            {"fullUrl": f"urn:uuid:{audit_id}", "resource": audit_event},
            {"fullUrl": f"urn:uuid:{prov_id}", "resource": provenance},
        ],
    }


def _source_resources(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The EHR's own resources the facts were converted from (FHIR input), as Provenance sources.

    Read from the trace's ``input_provenance``; a redacted record keeps none, so none are
    named. Each resource appears once, with the facts it gave in ``display``.
    """
    trace = body.get("trace")
    recorded = trace.get("input_provenance") if isinstance(trace, Mapping) and not body.get("redacted") else None
    by_pointer = recorded.get("provenance") if isinstance(recorded, Mapping) else None
    if not isinstance(by_pointer, Mapping):
        return []
    used: dict[str, list[str]] = {}
    for pointer, sources in sorted(by_pointer.items()):
        for source in sources if isinstance(sources, list) else ():
            resource = source.get("resource") if isinstance(source, Mapping) else None
            if isinstance(resource, str) and "/" in resource:
                used.setdefault(resource, []).append(str(pointer))
    return [
        {"role": "source", "what": {"reference": resource, "display": f"gave {', '.join(pointers)}"}}
        for resource, pointers in sorted(used.items())
    ]

