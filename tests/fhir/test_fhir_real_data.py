"""The converter on third-party FHIR data (Synthea, PySynthea, carebundle, HL7 R4 examples)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from neurocds.fhir import FhirInputError, latest_time
from neurocds.fhir.bundle import walk_bundle

from .helpers import DATA, assert_valid_facts, converter, load_json, messages, needs_data


@pytest.fixture(autouse=True)
def _shared_data_present() -> None:
    needs_data(lambda: None)()  # fails (never skips) when the data folder is missing

SWEEP_NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _files() -> list[Path]:
    found: list[Path] = []
    for folder in ("synthea", "synthea-py", "carebundle", "fhir-examples"):
        found += sorted((DATA / folder).rglob("*.json"))
    # Never an empty parameter list (pytest would skip): without the data, one case runs and fails.
    return found or [DATA]


def _as_bundle(document: dict[str, Any]) -> dict[str, Any]:
    if document.get("resourceType") == "Bundle":
        return document
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": document}]}


def _subject_patients(data: dict[str, Any]) -> list[str]:
    ids = set()
    for item in walk_bundle(data):
        ref = (item.resource.get("subject") or {}).get("reference", "")
        if ref.startswith("Patient/"):
            ids.add(ref.split("/", 1)[1])
    return sorted(ids)


def _resource(data: dict[str, Any], label: str) -> dict[str, Any]:
    rtype, rid = label.split("/", 1)
    for item in walk_bundle(data):
        if item.rtype == rtype and (item.rid == rid or item.full_url == label):
            return dict(item.resource)
    raise AssertionError(f"provenance names {label}, which is not in the bundle")


def _assert_provenance(data: dict[str, Any], prov: list[dict[str, Any]], rtype: str, code: str) -> dict[str, Any]:
    """At least one source is a resource of ``rtype`` in the bundle that really carries ``code``."""
    for src in prov:
        if src["resource"].startswith(rtype + "/") and src["code"] == code:
            res = _resource(data, src["resource"])
            concept = res.get("code") or res.get("medicationCodeableConcept") or {}
            assert code in {c.get("code") for c in concept.get("coding", [])}
            return res
    raise AssertionError(f"no {rtype} with code {code} in {prov}")


def _named(folder: str, prefix: str) -> dict[str, Any]:
    matches = sorted((DATA / folder).glob(prefix + "*.json"))
    assert len(matches) == 1, matches
    return load_json(matches[0])


def _convert_all_patients(data: dict[str, Any], now: datetime) -> list[Any]:
    try:
        return [converter(now=now).convert_bundle(data)]
    except FhirInputError as exc:
        if "pass patient_id" not in str(exc):
            raise
    patients = _subject_patients(data)
    assert len(patients) > 1
    return [converter(now=now).convert_bundle(data, patient_id=pid) for pid in patients]


@pytest.mark.parametrize("path", _files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_file_converts_to_valid_facts(path: Path) -> None:
    data = _as_bundle(load_json(path))
    latest = latest_time([i.resource for i in walk_bundle(data)])
    # Once at a fixed 'now' (mostly stale labs) and once just after the record's last entry
    # (labs in the window), so both the stale and the fresh paths run on every file.
    for now in filter(None, (SWEEP_NOW, latest and latest + timedelta(seconds=1))):
        for result in _convert_all_patients(data, now):
            assert_valid_facts(result.facts)
            for pointer in result.provenance:
                node: Any = result.facts
                for part in pointer.strip("/").split("/"):
                    node = node[int(part)] if isinstance(node, list) else node[part]
            for warning in result.warnings:
                assert set(warning) == {"resource", "pointer", "message"}


def test_file_list_is_not_empty() -> None:
    assert len(_files()) >= 60


@pytest.mark.parametrize("prefix", ["Bryan_Breitenberg", "Darius_Klocko"])
def test_stroke_patients_have_prior_stroke(prefix: str) -> None:
    data = _named("synthea", prefix)
    result = converter(now=SWEEP_NOW).convert_bundle(data)
    assert result.facts["history"]["prior_stroke"] is True
    _assert_provenance(data, result.provenance["/history/prior_stroke"], "Condition", "230690007")


def test_emery_purdy_diabetes_diuretic_glucose_hypertension() -> None:
    data = _named("synthea", "Emery_Purdy")
    result = converter(now=datetime(2021, 1, 23, tzinfo=UTC)).convert_bundle(data)
    facts = result.facts
    assert facts["history"]["diabetes"] is True
    assert facts["history"]["hypertension"] is True
    assert {"name": "Hydrochlorothiazide 25 MG", "class": "loop_or_thiazide_diuretic"} in facts["medications"]
    # latest glucose 2339-0 = 120.9 mg/dL -> 120.9 / 18.016 = 6.71 mmol/L
    assert facts["labs"]["glucose_mmol_l"] == 6.71
    glucose = _assert_provenance(data, result.provenance["/labs/glucose_mmol_l"], "Observation", "2339-0")
    assert glucose["valueQuantity"]["code"] == "mg/dL"
    assert round(glucose["valueQuantity"]["value"] / 18.016, 2) == 6.71
    _assert_provenance(data, result.provenance["/history/diabetes"], "Condition", "44054006")
    _assert_provenance(data, result.provenance["/history/diabetes"], "Condition", "368581000119106")
    _assert_provenance(data, result.provenance["/history/hypertension"], "Condition", "38341003")
    index = facts["medications"].index({"name": "Hydrochlorothiazide 25 MG", "class": "loop_or_thiazide_diuretic"})
    _assert_provenance(data, result.provenance[f"/medications/{index}"], "MedicationRequest", "316049")
    assert facts["patient"] == {"id": "efe58fa2-c6df-4a71-8e37-06c5e4f1e2b8", "age_years": 53, "sex": "male"}


@pytest.mark.parametrize("prefix", ["Timothy_Swift", "Albertine_Towne"])
def test_multiple_sclerosis_patients(prefix: str) -> None:
    data = _named("synthea-py", prefix)
    result = converter(now=SWEEP_NOW).convert_bundle(data)
    assert result.facts["history"]["multiple_sclerosis"] is True
    _assert_provenance(data, result.provenance["/history/multiple_sclerosis"], "Condition", "24700007")


def test_carebundle_hypokalaemia_demo_potassium() -> None:
    data = load_json(DATA / "carebundle" / "hypokalaemia_demo-seed1.json")
    result = converter(now=datetime(2026, 1, 2, tzinfo=UTC)).convert_bundle(data)
    assert result.facts["labs"]["potassium_mmol_l"] == 2.8
    prov = result.provenance["/labs/potassium_mmol_l"]
    assert prov[0]["code"] == "2823-3" and prov[0]["rule"] == "loinc-labs/potassium"
    assert {"name": "atorvastatin 20 MG Oral Tablet", "class": "statin"} in result.facts["medications"]
    # the same file a year later: the potassium is stale, so unknown
    later = converter(now=datetime(2027, 1, 2, tzinfo=UTC)).convert_bundle(data)
    assert "potassium_mmol_l" not in later.facts.get("labs", {})
    assert any(w["pointer"] == "/labs/potassium_mmol_l" and "stale" in w["message"] for w in later.warnings)


@pytest.mark.parametrize(
    ("folder", "name"),
    [("synthea", "Luigi_Wiegand"), ("carebundle", "healthy-seed3-F")],
)
def test_healthy_controls_have_no_diabetes_key(folder: str, name: str) -> None:
    data = _named(folder, name)
    now = latest_time([i.resource for i in walk_bundle(data)])
    assert now is not None
    result = converter(now=now + timedelta(days=1)).convert_bundle(data)
    assert "diabetes" not in result.facts.get("history", {})
    assert "history" not in result.facts


def test_anticoagulated_from_warfarin() -> None:
    data = _named("synthea", "Jarred_Stracke")
    result = converter(now=SWEEP_NOW).convert_bundle(data)
    assert result.facts["history"]["anticoagulated"] is True
    _assert_provenance(data, result.provenance["/history/anticoagulated"], "MedicationRequest", "855332")
    assert "deceased" in messages(result.warnings)


def test_old_spinal_trauma_is_not_recent() -> None:
    data = _named("synthea-py", "Pilar_Gutierrez")
    result = converter(now=SWEEP_NOW).convert_bundle(data)
    assert "recent_spinal_trauma" not in result.facts.get("history", {})
    assert any(w["pointer"] == "/history/recent_spinal_trauma" for w in result.warnings)
    onset = datetime(1993, 6, 26, tzinfo=UTC)
    recent = converter(now=onset).convert_bundle(data)
    assert recent.facts["history"]["recent_spinal_trauma"] is True
    _assert_provenance(data, recent.provenance["/history/recent_spinal_trauma"], "Condition", "1734006")


def test_hl7_lab_report_members_take_the_report_time() -> None:
    data = load_json(DATA / "fhir-examples" / "Bundle-ghp.json")
    result = converter(now=datetime(2015, 8, 20, tzinfo=UTC)).convert_bundle(data)
    assert result.facts["patient"] == {"id": "pat2"}
    assert result.facts["labs"]["potassium_mmol_l"] == 4.2
    assert result.provenance["/labs/potassium_mmol_l"][0]["resource"] == "Observation/o2"


def test_hl7_resolved_malignancy_is_history_of_cancer() -> None:
    data = _as_bundle(load_json(DATA / "fhir-examples" / "Condition-f202.json"))
    result = converter(now=SWEEP_NOW).convert_bundle(data)
    assert result.facts["history"]["cancer"] is True
    assert result.provenance["/history/cancer"][0]["resource"] == "Condition/f202"


def test_hl7_ischaemic_stroke_code() -> None:
    data = _as_bundle(load_json(DATA / "fhir-examples" / "Condition-stroke.json"))
    result = converter(now=SWEEP_NOW).convert_bundle(data)
    assert result.facts["history"]["prior_stroke"] is True
    assert result.provenance["/history/prior_stroke"][0]["code"] == "422504002"
