"""Small builders and checks shared by the FHIR tests."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import pytest
import shared_data

from neurocds.fhir import FhirConverter, default_mapping_paths, load_mapping_tables
from neurocds.fhir.mapping import MappingTables
from neurocds.resources import load_schema

DATA = shared_data.DATA
TestFunction = TypeVar("TestFunction", bound=Callable[..., Any])


def needs_data(test: TestFunction) -> TestFunction:
    """Mark a test that reads the shared third-party data: it FAILS, never skips, without it.

    tests/shared_data.py: a missing data folder must not turn into a green run.
    """

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not DATA.is_dir():
            pytest.fail(
                f"third-party test data not found at {DATA}: put shared/ beside the repository "
                "or set NEUROCDS_SHARED_DIR",
                pytrace=False,
            )
        return test(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-06-02"}
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


@lru_cache(maxsize=1)
def builtin_tables() -> MappingTables:
    return load_mapping_tables(default_mapping_paths())


def converter(**kwargs: Any) -> FhirConverter:
    kwargs.setdefault("now", NOW)
    return FhirConverter(builtin_tables(), **kwargs)


@lru_cache(maxsize=1)
def facts_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema("facts.schema.json"), format_checker=jsonschema.FormatChecker())


def assert_valid_facts(facts: dict[str, Any]) -> None:
    errors = sorted(facts_validator().iter_errors(facts), key=lambda e: list(e.absolute_path))
    assert not errors, [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def bundle(*resources: dict[str, Any], patient: dict[str, Any] | None = PATIENT) -> dict[str, Any]:
    entries = [{"resource": patient}] if patient else []
    entries += [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def condition(
    rid: str,
    system: str,
    code: str,
    *,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    onset: str | None = "2020-01-01",
    **extra: Any,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "code": {"coding": [coding(system, code)]},
        "subject": {"reference": "Patient/p1"},
    }
    if clinical:
        res["clinicalStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]
        }
    if verification:
        res["verificationStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]
        }
    if onset:
        res["onsetDateTime"] = onset
    res.update(extra)
    return res


def lab(
    rid: str,
    code: str,
    value: Any,
    unit_code: str | None,
    *,
    when: str = "2024-05-30T08:00:00Z",
    status: str = "final",
    unit: str | None = None,
    system: str | None = UCUM,
    **extra: Any,
) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit_code is not None:
        quantity["code"] = unit_code
        if system:
            quantity["system"] = system
    if unit is not None:
        quantity["unit"] = unit
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [coding(LOINC, code)]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": quantity,
    }
    if when:
        res["effectiveDateTime"] = when
    res.update(extra)
    return res


def med(
    rid: str, text: str, *, status: str = "active", authored: str = "2024-01-01", code: str | None = None, **extra: Any
) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [coding(RXNORM, code, text)]
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": "Patient/p1"},
        "authoredOn": authored,
    }
    res.update(extra)
    return res


def load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def messages(warnings: list[dict[str, Any]]) -> str:
    return "\n".join(str(w["message"]) for w in warnings)
