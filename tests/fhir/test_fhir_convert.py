"""FhirConverter on small hand-made bundles: units, tri-state policy, recency."""

from __future__ import annotations

import pytest

from .helpers import (
    ICD10CM,
    SCT,
    assert_valid_facts,
    bundle,
    condition,
    converter,
    lab,
    messages,
)

# --------------------------------------------------------------------- labs and units


def test_mg_dl_glucose_is_converted_to_mmol_l() -> None:
    result = converter().convert_bundle(bundle(lab("g1", "2339-0", 180.16, "mg/dL")))
    assert result.facts["labs"]["glucose_mmol_l"] == 10.0
    assert result.provenance["/labs/glucose_mmol_l"][0]["resource"] == "Observation/g1"
    assert result.provenance["/labs/glucose_mmol_l"][0]["code"] == "2339-0"
    assert_valid_facts(result.facts)


def test_value_in_canonical_unit_is_kept_as_recorded() -> None:
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", 3.456, "mmol/L")))
    assert result.facts["labs"]["potassium_mmol_l"] == 3.456


@pytest.mark.parametrize(
    ("code", "value", "unit", "fact", "expected"),
    [
        ("4548-4", 7.0, "%", "hba1c_mmol_mol", 53.0),  # (7.0 - 2.15) * 10.929 = 53.006
        ("59261-8", 48, "mmol/mol", "hba1c_mmol_mol", 48),
        ("3024-7", 1.2, "ng/dL", "free_t4_pmol_l", 15.4),  # 1.2 * 12.871 = 15.445
        ("2132-9", 400, "pg/mL", "vitamin_b12_pmol_l", 295),  # 400 * 0.7378 = 295.1
        ("19123-9", 2.431, "mg/dL", "magnesium_mmol_l", 1.0),
        ("2777-1", 3.097, "mg/dL", "phosphate_mmol_l", 1.0),
        ("29265-6", 2.4, "mmol/L", "calcium_adjusted_mmol_l", 2.4),
        ("46099-8", 10.02, "mg/dL", "calcium_adjusted_mmol_l", 2.5),
        ("1988-5", 1.5, "mg/dL", "crp_mg_l", 15.0),
        ("6690-2", 7.5, "10*3/uL", "wbc_10e9_l", 7.5),
        ("3016-3", 2.5, "m[IU]/L", "tsh_mu_l", 2.5),
        ("2157-6", 140, "U/L", "ck_u_l", 140),
    ],
)
def test_unit_conversions_from_the_tables(code: str, value: float, unit: str, fact: str, expected: float) -> None:
    result = converter().convert_bundle(bundle(lab("o1", code, value, unit)))
    assert result.facts["labs"][fact] == pytest.approx(expected, abs=1e-9)
    assert_valid_facts(result.facts)


@pytest.mark.parametrize(
    ("code", "value", "unit", "fact", "expected"),
    [
        ("2823-3", 2.4, "mmol/l", "potassium_mmol_l", 2.4),  # UCUM's other code for the litre
        ("2339-0", 180.16, "mg/dl", "glucose_mmol_l", 10.0),
        ("2951-2", 120, "meq/l", "sodium_mmol_l", 120),
        ("3024-7", 1.2, "ng/dl", "free_t4_pmol_l", 15.4),  # the table lists only ng/dL now
    ],
)
def test_the_lower_case_litre_is_the_same_ucum_unit(code: str, value: float, unit: str, fact: str, expected: float):
    result = converter().convert_bundle(bundle(lab("o1", code, value, unit)))
    assert result.facts["labs"][fact] == pytest.approx(expected)
    assert not result.warnings


def test_only_a_trailing_litre_is_respelled() -> None:
    # "mmol" ends in "l" too, and "mol/l" of an unlisted base must stay unknown: no guess.
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", 4.1, "mol/l")))
    assert "labs" not in result.facts and "unknown unit 'mol/l'" in messages(result.warnings)


def test_unknown_unit_is_a_warning_and_no_value() -> None:
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", 4.1, "mg")))
    assert "labs" not in result.facts
    assert any(w["resource"] == "Observation/k1" and "unknown unit 'mg'" in w["message"] for w in result.warnings)
    assert any(w["pointer"] == "/labs/potassium_mmol_l" for w in result.warnings)


def test_unit_text_is_used_only_when_it_is_exactly_a_listed_ucum_code() -> None:
    exact = converter().convert_bundle(bundle(lab("g1", "2339-0", 90.08, None, unit="mg/dL")))
    assert exact.facts["labs"]["glucose_mmol_l"] == 5.0
    loose = converter().convert_bundle(bundle(lab("g2", "2339-0", 90.08, None, unit="mg per dL")))
    assert "labs" not in loose.facts
    assert "unknown unit 'mg per dL'" in messages(loose.warnings)


def test_non_ucum_unit_code_falls_back_to_unit_text() -> None:
    res = lab("g1", "2339-0", 90.08, "MGDL", system="http://example.org/local-units", unit="mg/dL")
    result = converter().convert_bundle(bundle(res))
    assert result.facts["labs"]["glucose_mmol_l"] == 5.0


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_negative_or_non_finite_results_are_dropped(value: float) -> None:
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", value, "mmol/L")))
    assert "labs" not in result.facts
    assert "not a finite non-negative number" in messages(result.warnings)


def test_hba1c_below_the_conversion_offset_is_dropped_not_made_negative() -> None:
    result = converter().convert_bundle(bundle(lab("a1", "4548-4", 2.0, "%")))
    assert "labs" not in result.facts
    assert "not a finite non-negative number" in messages(result.warnings)


def test_comparator_values_are_not_measurements() -> None:
    res = lab("c1", "1988-5", 5, "mg/L")
    res["valueQuantity"]["comparator"] = "<"
    result = converter().convert_bundle(bundle(res))
    assert "labs" not in result.facts
    assert "bound" in messages(result.warnings)


def test_stale_observation_is_absent_with_a_warning() -> None:
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", 3.1, "mmol/L", when="2024-04-01T00:00:00Z")))
    assert "labs" not in result.facts
    stale = [w for w in result.warnings if w["pointer"] == "/labs/potassium_mmol_l"]
    assert stale and "stale" in stale[0]["message"] and stale[0]["resource"] == "Observation/k1"


def test_window_days_widens_the_window() -> None:
    res = lab("k1", "2823-3", 3.1, "mmol/L", when="2024-04-01T00:00:00Z")
    result = converter(observation_window_days=90).convert_bundle(bundle(res))
    assert result.facts["labs"]["potassium_mmol_l"] == 3.1


def test_latest_observation_in_the_window_wins_regardless_of_order() -> None:
    older = lab("k-old", "2823-3", 4.9, "mmol/L", when="2024-05-20T08:00:00Z")
    newer = lab("k-new", "6298-4", 2.9, "mmol/L", when="2024-05-31T08:00:00Z")
    for resources in ((older, newer), (newer, older)):
        result = converter().convert_bundle(bundle(*resources))
        assert result.facts["labs"]["potassium_mmol_l"] == 2.9
        assert result.provenance["/labs/potassium_mmol_l"][0]["resource"] == "Observation/k-new"


def test_newer_unusable_result_falls_back_to_older_with_warning() -> None:
    older = lab("k-old", "2823-3", 4.0, "mmol/L", when="2024-05-20T08:00:00Z")
    newer = lab("k-new", "2823-3", 9, "mg", when="2024-05-31T08:00:00Z")
    result = converter().convert_bundle(bundle(older, newer))
    assert result.facts["labs"]["potassium_mmol_l"] == 4.0
    assert "newer one(s) were dropped: Observation/k-new" in messages(result.warnings)


def test_observation_after_now_is_ignored() -> None:
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", 3.0, "mmol/L", when="2024-06-02T00:00:00Z")))
    assert "labs" not in result.facts
    assert "dated after 'now' were ignored: 1 Observation" in messages(result.warnings)


@pytest.mark.parametrize("status", ["preliminary", "entered-in-error", "cancelled"])
def test_observation_status_must_be_final(status: str) -> None:
    result = converter().convert_bundle(bundle(lab("k1", "2823-3", 3.0, "mmol/L", status=status)))
    assert "labs" not in result.facts


def test_undated_member_takes_the_time_of_its_report() -> None:
    member = lab("k1", "2823-3", 3.3, "mmol/L", when="")
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"text": "electrolytes"},
        "effectiveDateTime": "2024-05-31T07:00:00Z",
        "result": [{"reference": "Observation/k1"}],
    }
    assert "labs" not in converter().convert_bundle(bundle(member)).facts  # undated alone: unusable
    result = converter().convert_bundle(bundle(report, member))
    assert result.facts["labs"]["potassium_mmol_l"] == 3.3


# --------------------------------------------------------------- conditions, tri-state


def test_no_condition_means_unknown_not_false() -> None:
    result = converter().convert_bundle(bundle())
    assert "history" not in result.facts
    assert result.facts["patient"] == {"id": "p1", "age_years": 63, "sex": "female"}
    assert_valid_facts(result.facts)


def test_confirmed_active_condition_is_true_with_provenance() -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "44054006")))
    assert result.facts["history"]["diabetes"] is True
    prov = result.provenance["/history/diabetes"]
    assert prov == [
        {
            "resource": "Condition/c1",
            "system": SCT,
            "code": "44054006",
            "display": None,
            "rule": "snomed-conditions/diabetes",
        }
    ]


def test_refuted_is_false() -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "44054006", clinical=None, verification="refuted")))
    assert result.facts["history"]["diabetes"] is False
    assert result.provenance["/history/diabetes"][0]["resource"] == "Condition/c1"


def test_entered_in_error_is_absent_without_warning() -> None:
    res = condition("c1", SCT, "44054006", clinical=None, verification="entered-in-error")
    result = converter().convert_bundle(bundle(res))
    assert "history" not in result.facts
    assert not [w for w in result.warnings if w["resource"] == "Condition/c1"]


@pytest.mark.parametrize("verification", ["provisional", "differential", "unconfirmed"])
def test_suspicions_are_absent_with_warning(verification: str) -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "44054006", verification=verification)))
    assert "history" not in result.facts
    assert any(w["resource"] == "Condition/c1" and verification in w["message"] for w in result.warnings)


def test_missing_verification_status_counts_as_confirmed() -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "44054006", verification=None)))
    assert result.facts["history"]["diabetes"] is True


def test_true_wins_over_refuted_with_a_conflict_warning() -> None:
    result = converter().convert_bundle(
        bundle(
            condition("c1", SCT, "44054006", clinical=None, verification="refuted"),
            condition("c2", ICD10CM, "E11.9"),
        )
    )
    assert result.facts["history"]["diabetes"] is True
    assert [p["resource"] for p in result.provenance["/history/diabetes"]] == ["Condition/c2"]
    assert "conflicting evidence" in messages(result.warnings)


def test_resolved_history_still_counts_but_resolved_symptom_does_not() -> None:
    cancer = condition("c1", SCT, "363346000", clinical="resolved", onset="2010-01-01")
    fever = condition("c2", SCT, "386661006", clinical="resolved", onset="2024-05-30")
    result = converter().convert_bundle(bundle(cancer, fever))
    assert result.facts["history"]["cancer"] is True
    assert "symptoms" not in result.facts


def test_active_recent_symptom_counts_but_old_one_does_not() -> None:
    recent = converter().convert_bundle(bundle(condition("c1", SCT, "386661006", onset="2024-05-28")))
    assert recent.facts["symptoms"]["fever"] is True
    old = converter().convert_bundle(bundle(condition("c1", SCT, "386661006", onset="2023-05-28")))
    assert "symptoms" not in old.facts
    assert "outside the 14-day window" in messages(old.warnings)


def test_icd10_prefix_matching_is_table_data() -> None:
    result = converter().convert_bundle(bundle(condition("c1", ICD10CM, "I63.512"), condition("c2", ICD10CM, "C79.51")))
    assert result.facts["history"] == {"prior_stroke": True, "cancer": True}
    # "E1" is not a diabetes code: prefixes match the record's code, never the other way round
    assert "history" not in converter().convert_bundle(bundle(condition("c3", ICD10CM, "E1"))).facts


def test_spinal_trauma_only_within_its_recency_window() -> None:
    recent = condition("c1", SCT, "15724005", clinical="resolved", onset="2024-05-10")
    assert converter().convert_bundle(bundle(recent)).facts["history"]["recent_spinal_trauma"] is True
    old = condition("c1", SCT, "15724005", clinical="resolved", onset="2023-01-10")
    result = converter().convert_bundle(bundle(old))
    assert "history" not in result.facts
    assert any(w["pointer"] == "/history/recent_spinal_trauma" for w in result.warnings)


def test_chronic_low_back_pain_is_deliberately_not_back_pain() -> None:
    result = converter().convert_bundle(bundle(condition("c1", SCT, "278860009", onset="2024-05-30")))
    assert "symptoms" not in result.facts
    assert "deliberately not mapped" in messages(result.warnings)


def test_coded_finding_observation_can_say_absent() -> None:
    def finding(answer: str) -> dict:
        return {
            "resourceType": "Observation",
            "id": "f1",
            "status": "final",
            "code": {"coding": [{"system": SCT, "code": "386661006"}]},
            "effectiveDateTime": "2024-05-31T10:00:00Z",
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": answer}]},
        }

    assert converter().convert_bundle(bundle(finding("373067005"))).facts["symptoms"]["fever"] is False
    assert converter().convert_bundle(bundle(finding("373066001"))).facts["symptoms"]["fever"] is True


def test_recent_procedure_counts() -> None:
    proc = {
        "resourceType": "Procedure",
        "id": "lp1",
        "status": "completed",
        "code": {"coding": [{"system": SCT, "code": "277762005"}]},
        "performedDateTime": "2024-05-25T10:00:00Z",
    }
    result = converter().convert_bundle(bundle(proc))
    assert result.facts["history"]["recent_spinal_procedure"] is True
    assert result.provenance["/history/recent_spinal_procedure"][0]["resource"] == "Procedure/lp1"

