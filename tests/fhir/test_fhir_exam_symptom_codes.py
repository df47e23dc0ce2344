"""Exam findings and symptoms recorded as coded problems (SNOMED CT and ICD-10), on crafted bundles.

NOW is 2024-06-01; onsets are set inside or outside each entry's window.
"""

from __future__ import annotations

import pytest

from .helpers import ICD10CM, SCT, assert_valid_facts, bundle, condition, converter, messages

ICD10_WHO = "http://hl7.org/fhir/sid/icd-10"
RECENT = "2024-05-28"  # 4 days before NOW
OLD = "2023-01-01"


@pytest.mark.parametrize(
    ("system", "code", "pointer"),
    [
        (SCT, "88092000", "/exam/muscle_wasting"),
        (ICD10CM, "M62.552", "/exam/muscle_wasting"),  # ICD-10-CM: atrophy of left thigh, under M62.5
        (ICD10_WHO, "M62.5", "/exam/muscle_wasting"),
        (SCT, "860914002", "/symptoms/erectile_dysfunction"),
        (ICD10CM, "N52.9", "/symptoms/erectile_dysfunction"),
        (SCT, "12184005", "/symptoms/visual_field_loss"),
        (ICD10CM, "H53.461", "/symptoms/visual_field_loss"),
        (ICD10_WHO, "H53.4", "/symptoms/visual_field_loss"),
    ],
)
def test_active_recent_problem_sets_the_fact_with_its_provenance(system: str, code: str, pointer: str) -> None:
    result = converter().convert_bundle(bundle(condition("c1", system, code, onset=RECENT)))
    section, field = pointer.strip("/").split("/")
    assert result.facts[section] == {field: True}
    [source] = result.provenance[pointer]
    assert (source["resource"], source["system"], source["code"]) == ("Condition/c1", system, code)
    assert_valid_facts(result.facts)


@pytest.mark.parametrize(
    ("system", "code"),
    [(SCT, "860914002"), (ICD10CM, "N52.9"), (SCT, "12184005"), (ICD10CM, "H53.40")],
)
def test_new_symptoms_need_a_recent_onset(system: str, code: str) -> None:
    result = converter().convert_bundle(bundle(condition("c1", system, code, onset=OLD)))
    assert "symptoms" not in result.facts
    assert "outside the 14-day window" in messages(result.warnings)


def test_long_standing_active_muscle_wasting_still_counts_but_resolved_does_not() -> None:
    active = converter().convert_bundle(bundle(condition("c1", SCT, "88092000", onset=OLD)))
    assert active.facts["exam"] == {"muscle_wasting": True}
    resolved = converter().convert_bundle(bundle(condition("c1", SCT, "88092000", onset=OLD, clinical="resolved")))
    assert "exam" not in resolved.facts


def test_refuted_recent_visual_field_defect_is_false() -> None:
    res = condition("c1", SCT, "12184005", onset=RECENT, verification="refuted", recordedDate=RECENT)
    result = converter().convert_bundle(bundle(res))
    assert result.facts["symptoms"] == {"visual_field_loss": False}


def test_erectile_dysfunction_is_icd10cm_only() -> None:
    """N52 is an ICD-10-CM category; WHO ICD-10 codes male erectile dysfunction elsewhere."""
    result = converter().convert_bundle(bundle(condition("c1", ICD10_WHO, "N52.9", onset=RECENT)))
    assert "symptoms" not in result.facts


def test_spasticity_without_a_limb_is_recognised_but_not_read_as_leg_tone() -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "221360009", onset=RECENT)))
    assert "exam" not in result.facts
    assert "deliberately not mapped" in messages(result.warnings)
    assert "exam.tone_legs is about the legs" in messages(result.warnings)
