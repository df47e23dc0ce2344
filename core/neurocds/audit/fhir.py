"""Export one recorded decision as FHIR R4: a collection Bundle of AuditEvent, Provenance and GuidanceResponse.

Element names follow FHIR R4 (4.0.1): ``AuditEvent.type`` is a Coding,
``agent.requestor`` is required, ``source.observer`` is required,
``entity.detail`` holds ``type`` + ``valueString`` (never empty: a detail with
no value is left out); ``Provenance.target``, ``recorded`` and ``agent.who`` are
required. The decision itself is a GuidanceResponse in the bundle (status
``success``, or ``data-required`` when incomplete; its findings as notes), which
the AuditEvent's entity and ``Provenance.target`` reference; its identifier is
``urn:uuid:<decision id>``. The facts document is named by its SHA-256, the
patient by ``Patient/<id>`` when the record is not redacted (else only by
pseudonym). The EHR resources the facts came from are Provenance sources, as the
input named them (``urn:uuid:`` ids included); relative references
(``Observation/x``) are made absolute against ``fhir_server`` when it is given,
as they resolve to nothing inside a collection Bundle. Resource ids are derived
from the decision id, so exporting the same record twice gives the same bundle.
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


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _instant(text: Any) -> str:
    """FHIR instants need seconds and a zone; ours always have both."""
    return str(text)


def export_fhir(record: Mapping[str, Any], *, fhir_server: str | None = None) -> dict[str, Any]:
    """Bundle (type collection) holding an AuditEvent, a Provenance and a GuidanceResponse for one decision.

    :param fhir_server: the EHR's FHIR base URL, to make relative references absolute.
    """
    if record.get("type") != "decision":
        raise AuditError("only decision records can be exported to FHIR", sequence=record.get("sequence"))
    body = body_of(record)
    request = body.get("request")
    asked: Mapping[str, Any] = request if isinstance(request, Mapping) else {}
    fhir_server = fhir_server or asked.get("fhir_server")  # the EHR the call came from, as recorded
    decision_id = str(body.get("decision_id"))
    guidance_id = str(uuid.uuid5(_NS, f"guidanceresponse:{decision_id}"))
    decision_identifier = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{decision_id}"}
    decision_ref = {
        "reference": f"urn:uuid:{guidance_id}",
        "type": "GuidanceResponse",
        "identifier": decision_identifier,
        "display": f"neurocds decision {decision_id}",
    }
    patient = _patient_reference(body, fhir_server)
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
            "detail": _details(
                ("facts_sha256", str(body.get("facts_sha256"))),
                ("redacted", str(bool(body.get("redacted"))).lower()),
            ),
        },
        {
            "what": decision_ref,
            "type": _coding(f"{TERMINOLOGY}/audit-entity-type", "2", "System Object"),
            "role": _coding(f"{TERMINOLOGY}/object-role", "3", "Report"),
            "name": "decision",
            "detail": _details(
                ("highest_urgency", str(body.get("highest_urgency"))),
                ("complete", str(bool(body.get("complete"))).lower()),
                ("findings", ",".join(f"{f.get('id')}:{f.get('urgency')}" for f in findings)),
                ("packs", pack_text),
                ("audit_sequence", str(record.get("sequence"))),
                ("audit_record_hash", str(record.get("hash"))),
            ),
        },
    ]
    if body.get("patient_pseudonym") or patient:
        who: dict[str, Any] = dict(patient or {})
        if body.get("patient_pseudonym"):
            who["identifier"] = {"system": PSEUDONYM_SYSTEM, "value": body["patient_pseudonym"]}
        entities.append(
            {
                "what": who,
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
            },
            *_requestor(asked, fhir_server),
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
        "entity": [{"role": "source", "what": facts_ref}, *_source_resources(body, fhir_server)],
    }
    guidance: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "id": guidance_id,
        "identifier": [decision_identifier],
        "moduleUri": "urn:neurocds:rule-packs",
        "status": "success" if ok else "data-required",
        "occurrenceDateTime": str(body.get("evaluated_at")),
        "performer": device,
    }
    if patient:
        guidance["subject"] = patient
    notes = [f"{f.get('title') or f.get('id')} ({f.get('urgency')})" for f in findings]
    if notes:
        guidance["note"] = [{"text": text} for text in notes]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(_NS, f"bundle:{decision_id}")),
        "type": "collection",
        "timestamp": _instant(record.get("recorded_at")),
        "entry": [
            {"fullUrl": f"urn:uuid:{audit_id}", "resource": audit_event},
            {"fullUrl": f"urn:uuid:{prov_id}", "resource": provenance},
            {"fullUrl": f"urn:uuid:{guidance_id}", "resource": guidance},
        ],
    }


def _requestor(asked: Mapping[str, Any], fhir_server: str | None) -> list[dict[str, Any]]:
    """Who asked, as requesting agents: the user (a CDS Hooks call's ``context.userId``) and the
    EHR whose signed token vouched for the call (its JWT ``iss``, ``sub`` and ``tenant``)."""
    agents: list[dict[str, Any]] = []
    user = asked.get("user")
    if isinstance(user, str) and user:
        who: dict[str, Any] = {"display": user}
        if "/" in user:  # a FHIR reference such as Practitioner/123
            who["reference"] = _absolute(user, fhir_server)
        agent: dict[str, Any] = {
            "type": {"coding": [_coding(f"{TERMINOLOGY}/extra-security-role-type", "humanuser", "human user")]},
            "who": who,
            "requestor": True,
        }
        if asked.get("hook"):
            agent["name"] = f"user of the EHR, through the CDS Hooks {asked['hook']} hook"
        agents.append(agent)
    issuer = asked.get("issuer")
    if isinstance(issuer, str) and issuer:
        # The EHR is identified by its issuer URL; its client id (JWT sub) is its other identity.
        tenant = asked.get("tenant")
        ehr: dict[str, Any] = {
            "type": {"coding": [_coding(DCM, "110150", "Application")]},
            "who": {"identifier": {"system": "urn:ietf:rfc:3986", "value": issuer}, "display": issuer},
            "name": f"EHR (CDS client) {issuer}" + (f", tenant {tenant}" if isinstance(tenant, str) and tenant else ""),
            "requestor": True,
        }
        if isinstance(asked.get("subject"), str) and asked["subject"]:
            ehr["altId"] = asked["subject"]
        agents.append(ehr)
    return agents


def _details(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """``entity.detail`` items; an empty value is left out (R4 forbids empty strings)."""
    return [{"type": kind, "valueString": value} for kind, value in pairs if value]


def _absolute(reference: str, fhir_server: str | None) -> str:
    if fhir_server and "/" in reference and not reference.startswith(("urn:", "http://", "https://")):
        return f"{fhir_server.rstrip('/')}/{reference}"
    return reference


def _patient_reference(body: Mapping[str, Any], fhir_server: str | None) -> dict[str, Any] | None:
    """``Reference(Patient)`` from the stored facts; ``None`` when redacted (only the pseudonym names them)."""
    facts = body.get("facts")
    patient = facts.get("patient") if isinstance(facts, Mapping) and not body.get("redacted") else None
    pid = patient.get("id") if isinstance(patient, Mapping) else None
    if not isinstance(pid, str) or not pid:
        return None
    return {"reference": _absolute(f"Patient/{pid}", fhir_server), "type": "Patient"}


def _source_resources(body: Mapping[str, Any], fhir_server: str | None = None) -> list[dict[str, Any]]:
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
            if isinstance(resource, str) and ("/" in resource or resource.startswith("urn:")):
                used.setdefault(_absolute(resource, fhir_server), []).append(str(pointer))
    return [
        {"role": "source", "what": {"reference": resource, "display": f"gave {', '.join(pointers)}"}}
        for resource, pointers in sorted(used.items())
    ]

