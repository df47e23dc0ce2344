"""FHIR R4 export: a collection Bundle with an AuditEvent and a Provenance of valid R4 structure.

The element lists below are FHIR R4 (4.0.1) AuditEvent, Provenance and Bundle
(own elements plus those inherited from Resource/DomainResource/BackboneElement).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result

from neurocds.audit import AuditError, AuditLog, export_fhir, read_records
from neurocds_packs import BUILTIN_PACKS

DOMAIN = {
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
}
BACKBONE = {"id", "extension", "modifierExtension"}
R4 = {
    "AuditEvent": DOMAIN | {"type", "subtype", "action", "period", "recorded", "outcome", "outcomeDesc",
                            "purposeOfEvent", "agent", "source", "entity"},
    "AuditEvent.agent": BACKBONE | {"type", "role", "who", "altId", "name", "requestor", "location", "policy",
                                    "media", "network", "purposeOfUse"},
    "AuditEvent.source": BACKBONE | {"site", "observer", "type"},
    "AuditEvent.entity": BACKBONE | {"what", "type", "role", "lifecycle", "securityLabel", "name", "description",
                                     "query", "detail"},
    "AuditEvent.entity.detail": BACKBONE | {"type", "valueString", "valueBase64Binary"},
    "Provenance": DOMAIN | {"target", "occurredPeriod", "occurredDateTime", "recorded", "policy", "location",
                            "reason", "activity", "agent", "entity", "signature"},
    "Provenance.agent": BACKBONE | {"type", "role", "who", "onBehalfOf"},
    "Provenance.entity": BACKBONE | {"role", "what", "agent"},
    "Bundle": {"resourceType", "id", "meta", "implicitRules", "language", "identifier", "type", "timestamp",
               "total", "link", "entry", "signature"},
    "Bundle.entry": BACKBONE | {"link", "fullUrl", "resource", "search", "request", "response"},
    "Coding": {"id", "extension", "system", "version", "code", "display", "userSelected"},
    "CodeableConcept": {"id", "extension", "coding", "text"},
    "Reference": {"id", "extension", "reference", "type", "identifier", "display"},
    "Identifier": {"id", "extension", "use", "type", "system", "value", "period", "assigner"},
}  # fmt: skip
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _only(obj: dict[str, Any], kind: str) -> None:
    extra = set(obj) - R4[kind]
    assert not extra, f"{kind} has non-R4 elements {extra}"


def _coding(c: dict[str, Any]) -> None:
    _only(c, "Coding")
    assert c["system"].startswith(("http://", "urn:")) and c["code"]


def _concept(c: dict[str, Any]) -> None:
    _only(c, "CodeableConcept")
    for coding in c["coding"]:
        _coding(coding)


def _reference(r: dict[str, Any]) -> None:
    _only(r, "Reference")
    assert {"reference", "identifier", "display"} & set(r)
    if "identifier" in r:
        _only(r["identifier"], "Identifier")


@pytest.fixture
def record(tmp_path: Path) -> dict[str, Any]:
    AuditLog(tmp_path / "log").record_decision(make_result(complete=False), make_facts())
    return read_records(tmp_path / "log")[0]


def test_bundle_is_r4_collection_of_auditevent_and_provenance(record: dict[str, Any]) -> None:
    bundle = export_fhir(record)
    _only(bundle, "Bundle")
    assert bundle["type"] == "collection" and INSTANT.match(bundle["timestamp"])
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["AuditEvent", "Provenance", "GuidanceResponse"]
    for entry in bundle["entry"]:
        _only(entry, "Bundle.entry")
        assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"


def test_auditevent_structure(record: dict[str, Any]) -> None:
    event = export_fhir(record)["entry"][0]["resource"]
    _only(event, "AuditEvent")
    _coding(event["type"])  # R4: a Coding (R5 made it a CodeableConcept)
    assert event["type"]["system"] == "http://dicom.nema.org/resources/ontology/DCM"
    assert event["action"] in {"C", "R", "U", "D", "E"}
    assert event["outcome"] == "4"  # incomplete evaluation: minor failure
    assert INSTANT.match(event["recorded"]) and event["recorded"] == record["recorded_at"]
    for subtype in event["subtype"]:
        _coding(subtype)
    for concept in event["purposeOfEvent"]:
        _concept(concept)
    assert event["agent"]
    for agent in event["agent"]:
        _only(agent, "AuditEvent.agent")
        assert isinstance(agent["requestor"], bool)  # 1..1 in R4
        _concept(agent["type"])
        _reference(agent["who"])
    _only(event["source"], "AuditEvent.source")
    _reference(event["source"]["observer"])  # 1..1 in R4
    for entity in event["entity"]:
        _only(entity, "AuditEvent.entity")
        _reference(entity["what"])
        _coding(entity["type"])
        _coding(entity["role"])
        for detail in entity.get("detail", []):
            _only(detail, "AuditEvent.entity.detail")
            assert isinstance(detail["type"], str) and isinstance(detail["valueString"], str)
    facts = event["entity"][0]
    assert facts["what"]["identifier"]["value"] == record["decision"]["facts_sha256"]
    patient = event["entity"][2]
    assert patient["what"]["identifier"]["value"] == record["decision"]["patient_pseudonym"]
    # Not redacted: the facts are in the log, and the patient is named as FHIR names them.
    assert patient["what"]["reference"] == f"Patient/{make_facts()['patient']['id']}"


def test_provenance_targets_the_decision(record: dict[str, Any]) -> None:
    prov = export_fhir(record)["entry"][1]["resource"]
    _only(prov, "Provenance")
    decision_id = record["decision"]["decision_id"]
    assert [t["identifier"]["value"] for t in prov["target"]] == [f"urn:uuid:{decision_id}"]
    guidance = export_fhir(record)["entry"][2]
    assert [t["reference"] for t in prov["target"]] == [guidance["fullUrl"]]
    for target in prov["target"]:
        _reference(target)
    assert INSTANT.match(prov["recorded"])
    _concept(prov["activity"])
    for agent in prov["agent"]:
        _only(agent, "Provenance.agent")
        _concept(agent["type"])
        _reference(agent["who"])  # 1..1
    for entity in prov["entity"]:
        _only(entity, "Provenance.entity")
        assert entity["role"] in {"derivation", "revision", "quotation", "source", "removal"}
        _reference(entity["what"])


def test_only_decisions_export(tmp_path: Path) -> None:
    AuditLog(tmp_path / "log").record_cards("d", ["c"])
    with pytest.raises(AuditError, match="only decision"):
        export_fhir(read_records(tmp_path / "log")[0])


def test_provenance_names_the_ehr_resources_the_facts_came_from(tmp_path: Path) -> None:
    from neurocds import Engine
    from neurocds.fhir import FhirConverter

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "k1",
                    "status": "final",
                    "subject": {"reference": "Patient/p1"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                    "effectiveDateTime": "2026-11-20T08:00:00Z",
                    "valueQuantity": {"value": 2.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                      "code": "mmol/L"},
                }
            },
        ],
    }  # fmt: skip
    from datetime import UTC, datetime

    # A fixed "now": with the wall clock the observation would become stale and drop out.
    conversion = FhirConverter(now=datetime(2026, 11, 21, tzinfo=UTC)).convert_bundle(bundle)
    result = Engine(packs=BUILTIN_PACKS).evaluate(
        conversion.facts, provenance={"provenance": conversion.provenance, "warnings": conversion.warnings}
    )
    plain, redacted = tmp_path / "plain", tmp_path / "redacted"
    AuditLog(plain).record_decision(result, conversion.facts)
    AuditLog(redacted, redact=True, pseudonym_key=b"k" * 32).record_decision(result, conversion.facts)
    entities = export_fhir(read_records(plain)[0])["entry"][1]["resource"]["entity"]
    sources = {e["what"].get("reference"): e["what"]["display"] for e in entities if "reference" in e["what"]}
    assert sources["Observation/k1"] == "gave /labs/potassium_mmol_l"
    for entity in entities:
        _reference(entity["what"])
    redacted_entities = export_fhir(read_records(redacted)[0])["entry"][1]["resource"]["entity"]
    assert not [e for e in redacted_entities if "reference" in e["what"]]  # resource ids are not kept then
