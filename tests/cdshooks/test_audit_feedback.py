"""Decisions, issued cards and feedback end up in the audit log, read back from disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neurocds.audit.query import read_records
from neurocds.audit.verify import verify_log
from neurocds_packs import BUILTIN_PACKS

from .spec import assert_operation_outcome, assert_response
from .support import CDSHOOKS_DATA, EHR_ISSUER, Keys, Server, hook_request, load_json, synthea_prefetch

SERVICE = "/cds-services/neurocds-patient-view"
FEEDBACK = f"{SERVICE}/feedback"


def _records(audit_dir: Path, rtype: str) -> list[dict[str, Any]]:
    return [r[rtype] for r in read_records(audit_dir) if r["type"] == rtype]


def _feedback(server: Server, keys: Keys, body: Any) -> Any:
    return server.call("POST", FEEDBACK, body, token=keys.token(server.base_url + FEEDBACK))


@pytest.fixture(scope="module")
def issued(server: Server, keys: Keys) -> list[dict[str, Any]]:
    patient_id, prefetch = synthea_prefetch()
    resp = server.call(
        "POST", SERVICE, hook_request("patient-view", patient_id, prefetch), token=keys.token(server.base_url + SERVICE)
    )
    assert resp.status == 200
    return assert_response(resp.json())


def test_cards_are_recorded_with_their_decision(issued: list[dict[str, Any]], audit_dir: Path) -> None:
    uuids = [c["uuid"] for c in issued]
    cards = [c for c in _records(audit_dir, "cards") if c["card_uuids"] == uuids]
    assert len(cards) == 1
    decisions = [d for d in _records(audit_dir, "decision") if d["decision_id"] == cards[0]["decision_id"]]
    assert len(decisions) == 1
    assert {f["id"] for f in decisions[0]["findings"]} >= {"cdstest.prior_stroke", "cdstest.adult"}
    assert verify_log(audit_dir).ok


def test_decision_record_carries_the_fhir_provenance(issued: list[dict[str, Any]], audit_dir: Path) -> None:
    """Which FHIR resource and code gave each fact is in the audited trace, as with evaluate --fhir."""
    _, prefetch = synthea_prefetch()
    uuids = [c["uuid"] for c in issued]
    decision_id = next(c["decision_id"] for c in _records(audit_dir, "cards") if c["card_uuids"] == uuids)
    [decision] = [d for d in _records(audit_dir, "decision") if d["decision_id"] == decision_id]
    provenance = decision["trace"]["input_provenance"]["provenance"]
    [stroke] = provenance["/history/prior_stroke"][:1]
    assert stroke["resource"].startswith("Condition/") and stroke["system"] == "http://snomed.info/sct"
    conditions = {e["resource"]["id"]: e["resource"] for e in prefetch["conditions"]["entry"]}
    coded = conditions[stroke["resource"].split("/", 1)[1]]["code"]["coding"]
    assert stroke["code"] in {c["code"] for c in coded}
    assert isinstance(decision["trace"]["input_provenance"]["warnings"], list)


def test_accepted_feedback_is_recorded_against_card_and_decision(
    server: Server, keys: Keys, issued: list[dict[str, Any]], audit_dir: Path
) -> None:
    card = issued[0]["uuid"]
    body = {"feedback": [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2018-09-20T12:01:00Z"}]}
    assert _feedback(server, keys, body).status == 200
    [record] = [f for f in _records(audit_dir, "feedback") if f["card_uuid"] == card]
    decision = next(c["decision_id"] for c in _records(audit_dir, "cards") if card in c["card_uuids"])
    assert record["outcome"] == "accepted"
    assert record["decision_id"] == decision
    assert record["outcome_timestamp"] == "2018-09-20T12:01:00Z"


def test_overridden_feedback_keeps_the_reason(
    server: Server, keys: Keys, issued: list[dict[str, Any]], audit_dir: Path
) -> None:
    body = load_json(CDSHOOKS_DATA / "spec2__26_feedback_example-overridden-guidance-with-overrid.json")
    card = issued[1]["uuid"]
    body["feedback"][0]["card"] = card
    assert _feedback(server, keys, body).status == 200
    [record] = [f for f in _records(audit_dir, "feedback") if f["card_uuid"] == card]
    assert record["outcome"] == "overridden"
    assert record["override_reason"]["reason"] == {
        "code": "d7ecf885",
        "system": "https://example.com/cds-hooks/override-reason-system",
    }
    assert record["override_reason"]["userComment"] == "A comment entered by the clinician."
    assert "decision_id" in record


def test_feedback_for_an_unknown_card_is_recorded_without_a_decision(
    server: Server, keys: Keys, audit_dir: Path
) -> None:
    body = load_json(CDSHOOKS_DATA / "spec2__24_feedback_example-suggestion-accepted.json")
    assert _feedback(server, keys, body).status == 200
    [record] = [f for f in _records(audit_dir, "feedback") if f["card_uuid"] == body["feedback"][0]["card"]]
    assert "decision_id" not in record  # the flag: nobody can tie it to a decision we made
    assert record["accepted_suggestions"] == ["e56e1945-20b3-4393-8503-a1a20fd73152"]


@pytest.mark.parametrize(
    ("item", "pointer"),
    [
        ({"outcome": "accepted", "outcomeTimestamp": "2020-01-01T00:00:00Z"}, "/feedback/0/card"),
        ({"card": "c", "outcome": "maybe", "outcomeTimestamp": "2020-01-01T00:00:00Z"}, "/feedback/0/outcome"),
        ({"card": "c", "outcome": "accepted"}, "/feedback/0/outcomeTimestamp"),
        ({"card": "c", "outcome": "accepted", "outcomeTimestamp": "yesterday"}, "/feedback/0/outcomeTimestamp"),
        (
            {
                "card": "c",
                "outcome": "accepted",
                "outcomeTimestamp": "2020-01-01",
                "overrideReason": {"userComment": "x"},
            },
            "/feedback/0/overrideReason",
        ),
        (
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2020-01-01", "overrideReason": {"reason": "x"}},
            "/feedback/0/overrideReason/reason",
        ),
    ],
)
def test_invalid_feedback_is_400_and_not_recorded(
    server: Server, keys: Keys, audit_dir: Path, item: dict[str, Any], pointer: str
) -> None:
    before = len(_records(audit_dir, "feedback"))
    resp = _feedback(server, keys, {"feedback": [item]})
    assert resp.status == 400
    assert_operation_outcome(resp.json(), pointer)
    assert len(_records(audit_dir, "feedback")) == before


def test_one_bad_item_rejects_the_whole_call(server: Server, keys: Keys, audit_dir: Path) -> None:
    before = len(_records(audit_dir, "feedback"))
    good = {"card": "c2", "outcome": "accepted", "outcomeTimestamp": "2020-01-01T00:00:00Z"}
    resp = _feedback(server, keys, {"feedback": [good, {"card": "c3"}]})
    assert resp.status == 400
    assert_operation_outcome(resp.json(), "/feedback/1/outcome")
    assert len(_records(audit_dir, "feedback")) == before


@pytest.mark.parametrize("body", [{}, {"feedback": []}, {"feedback": "x"}, []])
def test_feedback_body_shape(server: Server, keys: Keys, body: Any) -> None:
    resp = _feedback(server, keys, body)
    assert resp.status == 400
    assert_operation_outcome(resp.json())


def test_an_audit_log_configured_on_both_the_engine_and_the_service_is_refused(tmp_path: Path) -> None:
    from neurocds import Engine
    from neurocds.cdshooks import ServiceConfig, create_app
    from neurocds.cdshooks.config import ConfigError

    engine = Engine(packs=BUILTIN_PACKS, audit_dir=tmp_path / "engine-log")
    assert engine.audit_log is not None and Engine(packs=BUILTIN_PACKS).audit_log is None
    config = ServiceConfig(base_url="http://127.0.0.1:1", insecure_dev=True, audit_dir=tmp_path / "service-log")
    with pytest.raises(ConfigError, match="configured twice"):
        create_app(config, engine)
    create_app(ServiceConfig(base_url="http://127.0.0.1:1", insecure_dev=True), engine)  # one log: fine


def test_the_decision_records_who_asked(issued: list[dict[str, Any]], audit_dir: Path) -> None:
    from neurocds.audit import export_fhir

    [decision] = [r for r in read_records(audit_dir) if r["type"] == "decision"][:1]
    assert decision["decision"]["request"]["user"] == "Practitioner/example"
    assert decision["decision"]["request"]["hook"] == "patient-view"
    agents = export_fhir(decision)["entry"][0]["resource"]["agent"]
    # The user, and the EHR whose token vouched for the call (tests/cdshooks/test_who_asked.py).
    assert [a["who"]["display"] for a in agents if a["requestor"]] == ["Practitioner/example", EHR_ISSUER]
