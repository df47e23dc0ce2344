"""order-select and order-sign read draft MedicationRequests as medications being ordered (issue 15, items 4, 5).

The test pack's ``cdstest.potassium_diuretic`` cites a potassium value and the
medication list, so its card must show the result's date, the drug by name, mark
the draft, and offer to remove it; the audit record says which item is a draft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neurocds.audit.query import read_records

from .spec import assert_response
from .support import EHR_ISSUER, FIXED_NOW, Keys, hook_request, running_server

PATIENT = "pat-1"
POTASSIUM = {
    "resourceType": "Observation",
    "id": "obs-k",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
    "subject": {"reference": f"Patient/{PATIENT}"},
    "effectiveDateTime": "2018-09-18T08:30:00Z",
    "valueQuantity": {"value": 2.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
}
DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "draft-furosemide",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": f"Patient/{PATIENT}"},
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313988",
                    "display": "Furosemide 40 MG Oral Tablet"}],
        "text": "Furosemide 40 MG Oral Tablet",
    },
}


def _prefetch() -> dict[str, Any]:
    observations = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": POTASSIUM}]}
    return {
        "patient": {"resourceType": "Patient", "id": PATIENT, "birthDate": "1950-01-01", "gender": "female"},
        "conditions": None,
        "observations": observations,
        "procedures": None,
        "medications": None,
    }


def _draft_orders(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


@pytest.mark.parametrize(("hook", "service"), [("order-select", "neurocds-order-select"),
                                               ("order-sign", "neurocds-order-sign")])  # fmt: skip
def test_a_draft_order_is_evaluated_named_and_offered_for_removal(
    engine: Any, keys: Keys, tmp_path: Path, hook: str, service: str
) -> None:
    path = f"/cds-services/{service}"
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": lambda: FIXED_NOW, "audit_dir": tmp_path}
    body = hook_request(hook, PATIENT, _prefetch(), draftOrders=_draft_orders(DRAFT))
    if hook == "order-sign":
        body["context"].pop("selections", None)
    without = hook_request(hook, PATIENT, _prefetch(), draftOrders=_draft_orders())
    with running_server(config, engine) as srv:
        resp = srv.call("POST", path, body, token=keys.token(srv.base_url + path))
        plain = srv.call("POST", path, without, token=keys.token(srv.base_url + path))
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    [card] = [c for c in cards if c["source"]["topic"]["code"] == "cdstest.potassium_diuretic"]
    detail = card["detail"]
    assert "Furosemide 40 MG Oral Tablet" in detail and "draft order, not yet signed" in detail
    assert "(result of 2018-09-18)" in detail.replace("\\", "")
    assert "rule test" not in detail and "labs.potassium" not in detail and "loop_or" not in detail
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "delete" and action["resourceId"] == "MedicationRequest/draft-furosemide"
    assert "Furosemide" in suggestion["label"]
    # Without the draft, nothing cites a diuretic.
    assert plain.status == 200
    assert "cdstest.potassium_diuretic" not in {c["source"]["topic"]["code"] for c in plain.json()["cards"]}
    [decision, _] = [r["decision"] for r in read_records(tmp_path) if r["type"] == "decision"]
    recorded = decision["trace"]["input_provenance"]
    assert recorded["draft_orders"] == {"/medications/0": ["MedicationRequest/draft-furosemide"]}
    assert recorded["provenance"]["/medications/0"][0]["status"] == "draft"


def test_patient_view_ignores_draft_orders_in_its_context(engine: Any, keys: Keys, tmp_path: Path) -> None:
    """Only the order hooks carry orders being placed; patient-view reads the record as it is."""
    path = "/cds-services/neurocds-patient-view"
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": lambda: FIXED_NOW}
    body = hook_request("patient-view", PATIENT, _prefetch(), draftOrders=_draft_orders(DRAFT))
    with running_server(config, engine) as srv:
        resp = srv.call("POST", path, body, token=keys.token(srv.base_url + path))
    assert resp.status == 200, resp.body
    assert "cdstest.potassium_diuretic" not in {c["source"]["topic"]["code"] for c in resp.json()["cards"]}


def test_the_readme_order_select_example_shows_the_draft_beside_the_potassium_card(keys: Keys) -> None:
    """With the built-in packs: no rule cites medicines without a weak limb, so no removal is offered,
    but the emergency card at ordering shows the furosemide being ordered."""
    import json

    from neurocds import Engine
    from neurocds_packs import BUILTIN_PACKS

    from .test_readme_example import ROOT

    body = json.loads((ROOT / "examples" / "cdshooks" / "order-select-request.json").read_text(encoding="utf-8"))
    path = "/cds-services/neurocds-order-select"
    when = lambda: FIXED_NOW.replace(year=2026, month=11, day=21)  # noqa: E731 (the example's labs: 2026-11-20)
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": when}
    with running_server(config, Engine(packs=BUILTIN_PACKS)) as srv:
        resp = srv.call("POST", path, body, token=keys.token(srv.base_url + path, now=when()))
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    first = cards[0]
    assert first["indicator"] == "critical"
    assert first["source"]["topic"]["code"] == "neuromuscular.electrolyte_imbalance"
    assert "Being ordered now" in first["detail"] and "Furosemide 40 MG Oral Tablet" in first["detail"]
    assert "2026\\-11\\-20" in first["detail"]  # the date of the potassium result
    assert "suggestions" not in first


def _potassium(value: float) -> dict[str, Any]:
    quantity = {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    return {**POTASSIUM, "valueQuantity": quantity}


def _draft(drug_id: str, rxnorm: str, text: str) -> dict[str, Any]:
    coding = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": text}
    return {**DRAFT, "id": drug_id, "medicationCodeableConcept": {"coding": [coding], "text": text}}


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_the_built_in_packs_offer_to_remove_a_draft_that_raises_a_high_potassium(
    keys: Keys, tmp_path: Path, hook: str
) -> None:
    """Built-in packs only, through real HTTP: potassium 6.4 and a draft lisinopril order make the
    neuromuscular pack's 'medicine that raises potassium' finding cite the draft, so its card offers
    to delete it; a draft furosemide with potassium 2.4 is named on the emergency card, recorded
    as a draft, but no built-in rule cites it (the drug-induced weakness rule needs limb strength,
    which no FHIR mapping gives), so nothing is offered for it."""
    from neurocds import Engine
    from neurocds_packs import BUILTIN_PACKS

    path = f"/cds-services/neurocds-{hook}"
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": lambda: FIXED_NOW, "audit_dir": tmp_path}
    lisinopril = _draft("draft-lisinopril", "29046", "Lisinopril")
    furosemide = _draft("draft-furosemide", "313988", "Furosemide 40 MG Oral Tablet")
    answers = {}
    with running_server(config, Engine(packs=BUILTIN_PACKS)) as srv:
        for name, value, draft in (("high", 6.4, lisinopril), ("low", 2.4, furosemide)):
            prefetch = _prefetch()
            prefetch["observations"]["entry"] = [{"resource": _potassium(value)}]
            body = hook_request(hook, PATIENT, prefetch, draftOrders=_draft_orders(draft))
            if hook == "order-sign":
                body["context"].pop("selections", None)
            resp = srv.call("POST", path, body, token=keys.token(srv.base_url + path))
            assert resp.status == 200, resp.body
            answers[name] = {c["source"]["topic"]["code"]: c for c in assert_response(resp.json())}
    card = answers["high"]["neuromuscular.hyperkalaemia_drug_contributor"]
    assert card["indicator"] == "warning"
    assert "Lisinopril \\(class: ace inhibitor or arb\\) \\[draft order, not yet signed\\]" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    assert suggestion["actions"] == [
        {"type": "delete", "description": "Remove the draft order for Lisinopril",
         "resourceId": "MedicationRequest/draft-lisinopril"}
    ]  # fmt: skip
    low = answers["low"]["neuromuscular.electrolyte_imbalance"]
    assert low["indicator"] == "critical" and "Furosemide 40 MG Oral Tablet" in low["detail"]
    assert "Being ordered now" in low["detail"] and "suggestions" not in low
    assert not any("suggestions" in c for c in answers["low"].values())
    decisions = [r["decision"] for r in read_records(tmp_path) if r["type"] == "decision"]
    assert [d["trace"]["input_provenance"]["draft_orders"] for d in decisions] == [
        {"/medications/0": ["MedicationRequest/draft-lisinopril"]},
        {"/medications/0": ["MedicationRequest/draft-furosemide"]},
    ]
    assert all(d["request"]["hook"] == hook for d in decisions)
