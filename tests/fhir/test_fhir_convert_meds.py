"""FhirConverter on small hand-made bundles: medications, patient, input structure, determinism."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from neurocds.fhir import FhirConverter, FhirInputError

from .helpers import ICD10CM, NOW, SCT, assert_valid_facts, bundle, condition, converter, lab, med, messages

# ---------------------------------------------------------------------- medications


def test_medication_classes_and_unmatched_other() -> None:
    result = converter().convert_bundle(
        bundle(med("m1", "atorvastatin 20 MG Oral Tablet"), med("m2", "amlodipine 5 MG Oral Tablet"))
    )
    assert result.facts["medications"] == [
        {"name": "amlodipine 5 MG Oral Tablet", "class": "other"},
        {"name": "atorvastatin 20 MG Oral Tablet", "class": "statin"},
    ]
    assert result.provenance["/medications/1"][0]["resource"] == "MedicationRequest/m1"
    assert result.provenance["/medications/1"][0]["rule"] == "medications/statin"
    assert_valid_facts(result.facts)


@pytest.mark.parametrize(
    ("text", "code", "klass"),
    [
        ("spironolactone 25 MG Oral Tablet", None, "potassium_sparing_diuretic"),
        ("Eplerenone 50 mg tablets", None, "potassium_sparing_diuretic"),
        ("amiloride hydrochloride 5 MG Oral Tablet", None, "potassium_sparing_diuretic"),
        ("lisinopril 10 MG Oral Tablet", "314076", "ace_inhibitor_or_arb"),
        ("Ramipril", "35296", "ace_inhibitor_or_arb"),
        ("perindopril erbumine 4 MG Oral Tablet", None, "ace_inhibitor_or_arb"),
        ("candesartan cilexetil 8 MG Oral Tablet", None, "ace_inhibitor_or_arb"),
        ("sacubitril 49 MG / valsartan 51 MG Oral Tablet", None, "ace_inhibitor_or_arb"),
        ("potassium chloride 600 MG Extended Release Oral Tablet", None, "potassium_supplement"),
        ("Potassium Citrate 1080 MG Extended Release Oral Tablet", None, "potassium_supplement"),
    ],
)
def test_potassium_raising_classes_of_packs_v2(text: str, code: str | None, klass: str) -> None:
    result = converter().convert_bundle(bundle(med("m1", text, code=code)))
    assert result.facts["medications"] == [{"name": text, "class": klass}]
    assert_valid_facts(result.facts)


@pytest.mark.parametrize(
    "text",
    [
        "Penicillin V Potassium 500 MG Oral Tablet",
        "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension",
    ],
)
def test_a_potassium_salt_of_another_drug_is_not_a_supplement(text: str) -> None:
    result = converter().convert_bundle(bundle(med("m1", text)))
    assert result.facts["medications"] == [{"name": text, "class": "other"}]


def test_a_thiazide_and_arb_combination_gets_both_classes() -> None:
    # Its RxNorm code (979471, seen in the carebundle data) carries one class, so the names decide.
    text = "hydrochlorothiazide 25 MG / losartan potassium 100 MG Oral Tablet"
    result = converter().convert_bundle(bundle(med("m1", text, code="979471")))
    assert result.facts["medications"] == [
        {"name": text, "class": "ace_inhibitor_or_arb"},
        {"name": text, "class": "loop_or_thiazide_diuretic"},
    ]


def test_rxnorm_code_beats_a_misspelt_name() -> None:
    result = converter().convert_bundle(bundle(med("m1", "Simvistatin 10 MG", code="316672")))
    assert result.facts["medications"] == [{"name": "Simvistatin 10 MG", "class": "statin"}]


def test_ingredient_matching_is_whole_word() -> None:
    result = converter().convert_bundle(bundle(med("m1", "methylprednisolone 4 MG Oral Tablet")))
    assert result.facts["medications"][0]["class"] == "corticosteroid"
    result = converter().convert_bundle(bundle(med("m1", "Metoprednisolonex 4 MG")))
    assert result.facts["medications"][0]["class"] == "other"


def test_except_words_veto_a_name_match() -> None:
    result = converter().convert_bundle(
        bundle(med("m1", "Hydrocortisone 10 MG/ML Topical Cream"), med("m2", "Heparin Lock Flush 100 UNT/ML"))
    )
    assert {m["class"] for m in result.facts["medications"]} == {"other"}
    assert "history" not in result.facts


def test_anticoagulant_sets_the_flag_only_while_current() -> None:
    active = converter().convert_bundle(bundle(med("m1", "Warfarin Sodium 5 MG Oral Tablet")))
    assert active.facts["history"]["anticoagulated"] is True
    assert active.provenance["/history/anticoagulated"][0]["resource"] == "MedicationRequest/m1"
    stopped = converter().convert_bundle(
        bundle(med("m1", "Warfarin Sodium 5 MG Oral Tablet", status="stopped", authored="2024-05-20"))
    )
    assert "history" not in stopped.facts
    assert "medications" not in stopped.facts  # class "other" is listed only while current


def test_recently_ended_classified_medication_is_listed_old_one_is_not() -> None:
    recent = converter().convert_bundle(
        bundle(med("m1", "ciprofloxacin 500 MG", status="completed", authored="2024-05-20"))
    )
    assert recent.facts["medications"] == [{"name": "ciprofloxacin 500 MG", "class": "fluoroquinolone"}]
    old = converter().convert_bundle(
        bundle(med("m1", "ciprofloxacin 500 MG", status="completed", authored="2023-05-20"))
    )
    assert "medications" not in old.facts


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error", "unknown"])
def test_other_medication_statuses_are_ignored(status: str) -> None:
    result = converter().convert_bundle(bundle(med("m1", "atorvastatin 20 MG", status=status)))
    assert "medications" not in result.facts


def test_medication_reference_is_resolved() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "med1",
        "code": {"coding": [{"system": "http://example.org", "code": "x", "display": "Furosemide 40 MG"}]},
    }
    request = med("m1", "ignored")
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "Medication/med1"}
    result = converter().convert_bundle(bundle(medication, request))
    assert result.facts["medications"] == [{"name": "Furosemide 40 MG", "class": "loop_or_thiazide_diuretic"}]


# -------------------------------------------------------------- patient and structure


def test_age_is_whole_years_at_now() -> None:
    on_birthday = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-06-01"}
    assert converter().convert_bundle(bundle(patient=on_birthday)).facts["patient"]["age_years"] == 64
    day_before = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-06-02"}
    assert converter().convert_bundle(bundle(patient=day_before)).facts["patient"]["age_years"] == 63


def test_deceased_patient_is_warned_and_aged_at_death() -> None:
    dead = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "deceasedDateTime": "2000-06-01"}
    result = converter().convert_bundle(bundle(patient=dead))
    assert result.facts["patient"]["age_years"] == 50
    assert "deceased" in messages(result.warnings)


def test_unmapped_gender_is_left_out_with_warning() -> None:
    odd = {"resourceType": "Patient", "id": "p1", "gender": "robot"}
    result = converter().convert_bundle(bundle(patient=odd))
    assert "sex" not in result.facts["patient"]
    assert "gender 'robot'" in messages(result.warnings)


def test_patient_without_resource_is_taken_from_subject_references() -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "24700007"), patient=None))
    assert result.facts["patient"] == {"id": "p1"}
    assert result.facts["history"]["multiple_sclerosis"] is True


def test_several_patients_need_a_patient_id_and_others_are_ignored() -> None:
    other = {"resourceType": "Patient", "id": "p2"}
    theirs = condition("c2", SCT, "24700007", subject={"reference": "Patient/p2"})
    mine = condition("c1", SCT, "44054006")
    data = bundle(mine, theirs, other)
    with pytest.raises(FhirInputError, match="2 patients"):
        converter().convert_bundle(data)
    result = converter().convert_bundle(data, patient_id="p1")
    assert result.facts["history"] == {"diabetes": True}
    assert "about other patients were ignored" in messages(result.warnings)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"resourceType": "Patient", "id": "x"},
        {"resourceType": "Bundle", "entry": {}},
        {"resourceType": "Bundle", "entry": [1]},
    ],
)
def test_non_bundles_are_refused(bad: object) -> None:
    with pytest.raises(FhirInputError):
        converter().convert_bundle(bad)  # type: ignore[arg-type]


def test_nested_bundles_are_walked() -> None:
    inner = bundle(condition("c1", SCT, "49436004"), patient=None)
    outer = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}, {"resource": inner}],
    }
    assert converter().convert_bundle(outer).facts["history"]["atrial_fibrillation"] is True


def test_output_does_not_depend_on_entry_order() -> None:
    resources = [
        condition("c1", SCT, "44054006"),
        condition("c2", ICD10CM, "E11.9", clinical="resolved"),
        lab("g1", "2339-0", 120.9, "mg/dL"),
        lab("g2", "2345-7", 99.0, "mg/dL", when="2024-05-20T00:00:00Z"),
        med("m1", "Hydrochlorothiazide 25 MG"),
        med("m2", "Amlodipine 5 MG"),
    ]
    first = converter().convert_bundle(bundle(*resources))
    shuffled = list(resources)
    random.Random(7).shuffle(shuffled)
    second = converter().convert_bundle(bundle(*shuffled))
    assert first.facts == second.facts
    assert first.provenance == second.provenance


def test_now_must_be_timezone_aware_and_is_recorded() -> None:
    with pytest.raises(ValueError):
        FhirConverter(now=datetime(2024, 1, 1))
    result = converter(now=datetime(2024, 6, 1, 14, 0, tzinfo=UTC)).convert_bundle(bundle())
    assert result.facts["recorded_at"] == "2024-06-01T14:00:00Z"
    assert result.now == datetime(2024, 6, 1, 14, 0, tzinfo=UTC)


def test_now_defaults_to_the_wall_clock() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = FhirConverter(converter().tables).convert_bundle(bundle())
    assert result.now is not None and result.now >= before
    assert result.now > NOW
