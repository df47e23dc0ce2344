"""CDS Hooks prefetch: values are resources, Bundles (searchset, paginated) or null."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from neurocds.fhir import FhirInputError
from neurocds.fhir.bundle import walk_bundle

from .helpers import DATA, assert_valid_facts, converter, load_json, messages, needs_data

CDS = DATA / "cdshooks"
# Files whose "prefetch" holds data (the others hold templates such as "Patient/{{context.patientId}}").
PREFETCH_DATA = [
    "spec1__02_request_example.json",
    "spec2__02_request_example.json",
    "spec2__04_request_example-of-pagination-in-prefetch.json",
    "spec1__10_prefetch-or-other_example-prefetch-data.json",
    "spec2__13_prefetch-or-other_example-prefetch-data.json",
]


@needs_data
@pytest.mark.parametrize("name", PREFETCH_DATA)
def test_cds_hooks_examples_convert(name: str) -> None:
    request = load_json(CDS / name)
    patient_id = (request.get("context") or {}).get("patientId") or "example-patient"
    result = converter(now=datetime(2020, 1, 1, tzinfo=UTC)).convert_prefetch(request["prefetch"], patient_id)
    assert result.facts["patient"]["id"] == patient_id
    assert_valid_facts(result.facts)


@needs_data
def test_patient_view_example_gives_age_and_sex() -> None:
    request = load_json(CDS / "spec2__02_request_example.json")
    result = converter(now=datetime(2020, 1, 1, tzinfo=UTC)).convert_prefetch(
        request["prefetch"], request["context"]["patientId"]
    )
    assert result.facts["patient"] == {"id": "1288992", "age_years": 94, "sex": "male"}
    assert result.provenance["/patient/age_years"][0]["resource"] == "Patient/1288992"


@needs_data
def test_paginated_searchset_is_read_with_a_warning_and_drafts_are_ignored() -> None:
    request = load_json(CDS / "spec2__04_request_example-of-pagination-in-prefetch.json")
    result = converter(now=datetime(2020, 1, 1, tzinfo=UTC)).convert_prefetch(request["prefetch"], "1288992")
    assert result.facts["medications"] == [{"name": "Metformin 500\u202fmg tablet", "class": "other"}]
    assert "more pages" in messages(result.warnings)


@needs_data
def test_prefetch_with_only_an_unlabelled_patient_needs_the_patient_id() -> None:
    request = load_json(CDS / "spec2__13_prefetch-or-other_example-prefetch-data.json")
    with pytest.raises(FhirInputError, match="patient_id"):
        converter().convert_prefetch(request["prefetch"])


def test_null_and_non_resource_values_are_skipped_with_notes() -> None:
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p9", "gender": "other"},
        "conditions": None,
        "user": "123",
        "oops": {"resourceType": "OperationOutcome", "issue": []},
    }
    result = converter().convert_prefetch(prefetch)
    assert result.facts["patient"] == {"id": "p9", "sex": "other"}
    text = messages(result.warnings)
    assert "'conditions' is null" in text and "'user' is not a FHIR resource" in text and "OperationOutcome" in text


def test_prefetch_must_be_an_object() -> None:
    with pytest.raises(FhirInputError):
        converter().convert_prefetch(["not", "an", "object"])  # type: ignore[arg-type]


@needs_data
def test_synthea_record_split_into_prefetch_searchsets_gives_the_same_facts() -> None:
    path = next((DATA / "synthea").glob("Emery_Purdy_*.json"))
    data = load_json(path)
    now = datetime(2021, 1, 23, tzinfo=UTC)
    by_type: dict[str, list[dict]] = {}
    for item in walk_bundle(data):
        entry = {"fullUrl": item.full_url, "resource": item.resource}
        by_type.setdefault(item.rtype, []).append(entry)
    patient = by_type.pop("Patient")[0]["resource"]
    prefetch = {"patient": patient}
    for rtype, entries in by_type.items():
        prefetch[rtype.lower()] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    from_bundle = converter(now=now).convert_bundle(data)
    from_prefetch = converter(now=now).convert_prefetch(json.loads(json.dumps(prefetch)), patient["id"])
    assert from_prefetch.facts == from_bundle.facts
    assert from_prefetch.facts["history"]["diabetes"] is True
