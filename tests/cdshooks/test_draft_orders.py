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
    # The removal is offered once, on the more urgent card that also names the draft; this one says so.
    [offering] = [c for c in cards if c.get("suggestions")]
    assert offering["indicator"] == "critical" and offering["selectionBehavior"] == "at-most-one"
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert f"offered on the card “{offering['summary']}”" in detail.replace("\\", "")
    [suggestion] = offering["suggestions"]
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


def test_the_readme_order_select_example_offers_to_remove_the_furosemide(keys: Keys) -> None:
    """With the built-in packs: the severe hypokalaemia rules say loop and thiazide diuretics worsen
    them (``worsened_by``), so the emergency card offers to remove the draft furosemide."""
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
    assert "can worsen this" in first["detail"] and "Furosemide 40 MG Oral Tablet" in first["detail"]
    assert "2026\\-11\\-20" in first["detail"]  # the date of the potassium result
    [suggestion] = first["suggestions"]
    assert suggestion["actions"][0]["resourceId"] == "MedicationRequest/draft-furosemide"


def _potassium(value: float) -> dict[str, Any]:
    quantity = {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    return {**POTASSIUM, "valueQuantity": quantity}


def _draft(drug_id: str, rxnorm: str, text: str) -> dict[str, Any]:
    coding = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": text}
    return {**DRAFT, "id": drug_id, "medicationCodeableConcept": {"coding": [coding], "text": text}}


def _call_built_in(
    keys: Keys, tmp_path: Path, hook: str, calls: list[tuple[float, list[dict[str, Any]], list[dict[str, Any]]]]
) -> list[dict[str, dict[str, Any]]]:
    """Each (potassium, current MedicationRequests, drafts) call through real HTTP with the built-in
    packs; the cards of each call by finding id."""
    from neurocds import Engine
    from neurocds_packs import BUILTIN_PACKS

    path = f"/cds-services/neurocds-{hook}"
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": lambda: FIXED_NOW, "audit_dir": tmp_path}
    answers = []
    with running_server(config, Engine(packs=BUILTIN_PACKS)) as srv:
        for value, current, drafts in calls:
            prefetch = _prefetch()
            prefetch["observations"]["entry"] = [{"resource": _potassium(value)}]
            if current:
                prefetch["medications"] = {"resourceType": "Bundle", "type": "searchset",
                                           "entry": [{"resource": r} for r in current]}  # fmt: skip
            body = hook_request(hook, PATIENT, prefetch, draftOrders=_draft_orders(*drafts))
            if hook == "order-sign":
                body["context"].pop("selections", None)
            resp = srv.call("POST", path, body, token=keys.token(srv.base_url + path))
            assert resp.status == 200, resp.body
            answers.append({c["source"]["topic"]["code"]: c for c in assert_response(resp.json())})
    return answers


def _deletes(cards: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Finding id -> the resourceIds its card's suggestions offer to delete."""
    return {
        code: [a["resourceId"] for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "delete"]
        for code, card in cards.items()
        if card.get("suggestions")
    }


LISINOPRIL = _draft("draft-lisinopril", "29046", "Lisinopril")
FUROSEMIDE = _draft("draft-furosemide", "313988", "Furosemide 40 MG Oral Tablet")
SPIRONOLACTONE = _draft("draft-spironolactone", "313096", "Spironolactone 25 MG Oral Tablet")
ATORVASTATIN = _draft("draft-atorvastatin", "617310", "atorvastatin 20 MG Oral Tablet")


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_the_built_in_packs_offer_to_remove_a_draft_that_raises_a_high_potassium(
    keys: Keys, tmp_path: Path, hook: str
) -> None:
    """Potassium 6.4 and a draft lisinopril: the 'medicine that raises potassium' finding cites the
    draft, and its rule and the hyperkalaemia rule say that class worsens them (``worsened_by``).
    Both cards are warnings: the first in the engine's order offers to delete it, with the pack's
    rationale, and the other says which card offers it."""
    [high] = _call_built_in(keys, tmp_path, hook, [(6.4, [], [LISINOPRIL])])
    card = high["neuromuscular.hyperkalaemia_drug_contributor"]
    offering = high["neuromuscular.electrolyte_imbalance"]
    assert card["indicator"] == offering["indicator"] == "warning"
    assert "Lisinopril \\(class: ace inhibitor or arb\\) \\[draft order, not yet signed\\]" in card["detail"]
    assert f"offered on the card “{offering['summary']}”" in card["detail"].replace("\\", "")
    assert offering["selectionBehavior"] == "at-most-one" and "selectionBehavior" not in card
    [suggestion] = offering["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "delete" and action["resourceId"] == "MedicationRequest/draft-lisinopril"
    assert action["description"].startswith("Remove the draft order for Lisinopril: ")
    assert "potassium" in action["description"]
    assert _deletes(high) == {"neuromuscular.electrolyte_imbalance": ["MedicationRequest/draft-lisinopril"]}
    decisions = [r["decision"] for r in read_records(tmp_path) if r["type"] == "decision"]
    assert [d["trace"]["input_provenance"]["draft_orders"] for d in decisions] == [
        {"/medications/0": ["MedicationRequest/draft-lisinopril"]}
    ]
    assert all(d["request"]["hook"] == hook for d in decisions)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_draft_diuretic_with_a_low_potassium_is_offered_for_removal_a_current_one_is_not(
    keys: Keys, tmp_path: Path, hook: str
) -> None:
    """Issue 15 item 4: a draft furosemide with potassium 2.4. The hypokalaemia rules' ``worsened_by``
    names loop and thiazide diuretics, so the emergency card offers to delete the draft (a
    spec-conformant action: type delete, resourceId a string, selectionBehavior set) and says why.
    The same drug already taken gets no action; an unrelated draft gets none either; a draft
    spironolactone with potassium 6.6 is offered once, on the emergency card."""
    current = {**FUROSEMIDE, "id": "current-furosemide", "status": "active", "authoredOn": "2018-08-01"}
    low, taken, unrelated, high = _call_built_in(keys, tmp_path, hook, [
        (2.4, [], [FUROSEMIDE]),
        (2.4, [current], []),
        (2.4, [], [ATORVASTATIN]),
        (6.6, [], [SPIRONOLACTONE]),
    ])  # fmt: skip
    card = low["neuromuscular.electrolyte_imbalance"]
    assert card["indicator"] == "critical"
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    assert isinstance(suggestion["uuid"], str) and suggestion["label"] == (
        "Remove the draft order for Furosemide 40 MG Oral Tablet"
    )
    [action] = suggestion["actions"]
    assert action["type"] == "delete" and action["resourceId"] == "MedicationRequest/draft-furosemide"
    assert "lose potassium" in action["description"]
    assert "can worsen this" in card["detail"] and "lose potassium" in card["detail"]
    assert "Being ordered now (draft orders, not cited" not in card["detail"]
    assert _deletes(low) == {"neuromuscular.electrolyte_imbalance": ["MedicationRequest/draft-furosemide"]}
    # The same drug on the medication list (not being ordered): named nowhere as a draft, no action.
    assert "neuromuscular.electrolyte_imbalance" in taken
    assert _deletes(taken) == {} and not any("selectionBehavior" in c for c in taken.values())
    decisions = [r["decision"] for r in read_records(tmp_path) if r["type"] == "decision"]
    assert decisions[1]["facts"]["medications"] == [
        {"name": "Furosemide 40 MG Oral Tablet", "class": "loop_or_thiazide_diuretic"}
    ]
    assert "draft_orders" not in decisions[1]["trace"]["input_provenance"]
    # A draft of a class that does not worsen low potassium: listed beside the finding, not offered.
    beside = unrelated["neuromuscular.electrolyte_imbalance"]
    assert _deletes(unrelated) == {} and "atorvastatin 20 MG Oral Tablet" in beside["detail"]
    assert "Being ordered now (draft orders, not cited by this finding)" in beside["detail"]
    assert high["neuromuscular.electrolyte_imbalance"]["indicator"] == "critical"
    assert _deletes(high) == {"neuromuscular.electrolyte_imbalance": ["MedicationRequest/draft-spironolactone"]}


def test_two_drafts_that_worsen_a_finding_can_both_be_removed(keys: Keys, tmp_path: Path) -> None:
    """Potassium 6.6 with a draft spironolactone and a draft lisinopril: the emergency card offers
    two independent removals, so the clinician may take both (selectionBehavior "any")."""
    [high] = _call_built_in(keys, tmp_path, "order-select", [(6.6, [], [SPIRONOLACTONE, LISINOPRIL])])
    card = high["neuromuscular.electrolyte_imbalance"]
    assert sorted(_deletes(high)["neuromuscular.electrolyte_imbalance"]) == [
        "MedicationRequest/draft-lisinopril",
        "MedicationRequest/draft-spironolactone",
    ]
    assert card["selectionBehavior"] == "any"


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_each_draft_is_offered_for_removal_on_one_card_and_the_others_say_which(
    keys: Keys, tmp_path: Path, hook: str
) -> None:
    """Potassium 6.6 with two drafts that raise it: both hyperkalaemia cards name both drafts, and a
    clinician shown two "remove" buttons for one order could not tell them apart. Each draft is offered
    once, on the most urgent card; every other card naming it says where, and the same request
    places them the same way every time."""
    first, again = _call_built_in(
        keys, tmp_path, hook, [(6.6, [], [SPIRONOLACTONE, LISINOPRIL]), (6.6, [], [SPIRONOLACTONE, LISINOPRIL])]
    )
    offered = [resource for resources in _deletes(first).values() for resource in resources]
    assert sorted(offered) == ["MedicationRequest/draft-lisinopril", "MedicationRequest/draft-spironolactone"]
    offering = first["neuromuscular.electrolyte_imbalance"]
    assert offering["indicator"] == "critical"  # the most urgent card naming them
    others = [card for code, card in first.items() if code != "neuromuscular.electrolyte_imbalance"]
    naming = [card for card in others if "Spironolactone 25 MG Oral Tablet" in card["detail"].replace("\\", "")]
    assert naming, "another card names the drafts"
    for card in naming:
        detail = card["detail"].replace("\\", "")
        for name in ("Spironolactone 25 MG Oral Tablet", "Lisinopril"):
            assert f"Remove the draft order for {name}: offered on the card “{offering['summary']}”" in detail
        assert "not cited by this finding" not in detail  # it cites them: it only does not offer them
    assert _deletes(again) == _deletes(first)
