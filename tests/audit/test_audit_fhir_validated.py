"""Every FHIR export of the test corpus validates against a third-party FHIR model (fhir.resources).

fhir.resources 8.x models FHIR R5 by default and R4B (4.3) in ``fhir.resources.R4B``; there
is no plain R4 (4.0.1) package in it any more. AuditEvent, Provenance, GuidanceResponse and
Bundle are the same in R4 and R4B in every element the export writes, so R4B is the check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result

from neurocds import Engine
from neurocds.audit import AuditLog, export_fhir, read_records

bundle_model = pytest.importorskip("fhir.resources.R4B.bundle").Bundle
EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fhircorpus")
    plain, redacted = AuditLog(root / "plain"), AuditLog(root / "redacted", redact=True, pseudonym_key=b"k" * 32)
    engine = Engine()
    for path in EXAMPLES:
        facts = json.loads(path.read_text(encoding="utf-8"))
        result = engine.evaluate(facts)
        plain.record_decision(result, facts)
        redacted.record_decision(result, facts)
    for log in (plain, redacted):  # no findings, and incomplete
        log.record_decision(make_result(findings=[], complete=False), make_facts())
    return [r for d in ("plain", "redacted") for r in read_records(root / d)]


def test_every_export_validates(corpus: list[dict[str, Any]]) -> None:
    assert len(corpus) == 2 * (len(EXAMPLES) + 1)
    for record in corpus:
        bundle = export_fhir(record, fhir_server="https://ehr.example/fhir")
        bundle_model.model_validate(bundle)  # raises on any invalid element


def test_a_decision_without_findings_has_no_empty_detail(corpus: list[dict[str, Any]]) -> None:
    record = next(r for r in corpus if not r["decision"]["findings"])
    event = export_fhir(record)["entry"][0]["resource"]
    details = [d for e in event["entity"] for d in e.get("detail", [])]
    assert details and all(d["valueString"] for d in details)
    assert "findings" not in {d["type"] for d in details}


def test_sources_named_by_urn_uuid_are_kept_and_relative_ones_made_absolute() -> None:
    body = {
        "decision_id": "d1", "facts_sha256": "ab" * 32, "findings": [], "packs": [], "complete": True,
        "evaluated_at": "2026-01-01T00:00:00Z", "redacted": False, "facts": {"patient": {"id": "p1"}},
        "trace": {"input_provenance": {"provenance": {
            "/labs/potassium_mmol_l": [{"resource": "urn:uuid:5d1f3c2a-0000-4000-8000-000000000001"}],
            "/history/cancer": [{"resource": "Condition/c9"}],
        }}},
    }  # fmt: skip
    record = {"type": "decision", "sequence": 1, "hash": "0" * 64, "recorded_at": "2026-01-01T00:00:01Z",
              "decision": body}  # fmt: skip
    bundle = export_fhir(record, fhir_server="https://ehr.example/fhir/")
    bundle_model.model_validate(bundle)
    prov = bundle["entry"][1]["resource"]
    refs = {e["what"].get("reference") for e in prov["entity"]}
    assert "urn:uuid:5d1f3c2a-0000-4000-8000-000000000001" in refs
    assert "https://ehr.example/fhir/Condition/c9" in refs
    guidance = bundle["entry"][2]["resource"]
    assert guidance["subject"]["reference"] == "https://ehr.example/fhir/Patient/p1"
