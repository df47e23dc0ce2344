"""Who asked, in the decision and feedback records and the FHIR export (issue 15, item 6).

The EHR is named by the verified JWT's ``iss``, ``sub`` and ``tenant`` beside the
hook's user; no token (the JWT, its ``jti`` or the FHIR access token) is ever written
to any file of the audit directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurocds.audit.fhir import export_fhir
from neurocds.audit.query import read_records

from .support import EHR_ISSUER, FHIR_BASE, FIXED_NOW, Keys, running_server, synthea_prefetch
from .support import hook_request as make_request

SERVICE = "/cds-services/neurocds-patient-view"
ACCESS_TOKEN = "fhir-access-token-never-to-be-recorded-7f3c"
TENANT = "hospital-north"


def test_the_ehr_that_asked_is_recorded_and_exported_but_never_its_tokens(
    engine: Any, keys: Keys, tmp_path: Path
) -> None:
    patient, prefetch = synthea_prefetch()
    body = make_request("patient-view", patient, prefetch)
    body["fhirServer"] = FHIR_BASE
    body["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds-service"}  # fmt: skip
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "audit_dir": tmp_path, "clock": lambda: FIXED_NOW}
    with running_server(config, engine) as srv:
        call_token = keys.token(srv.base_url + SERVICE, tenant=TENANT, sub="ehr-client-9")
        resp = srv.call("POST", SERVICE, body, token=call_token)
        assert resp.status == 200, resp.body
        card = resp.json()["cards"][0]["uuid"]
        path = SERVICE + "/feedback"
        feedback_token = keys.token(srv.base_url + path, tenant=TENANT, sub="ehr-client-9")
        item = {"card": card, "outcome": "accepted", "outcomeTimestamp": "2018-09-20T12:01:00Z"}
        assert srv.call("POST", path, {"feedback": [item]}, token=feedback_token).status == 200
    records = read_records(tmp_path)
    [decision] = [r for r in records if r["type"] == "decision"]
    [feedback] = [r["feedback"] for r in records if r["type"] == "feedback"]
    ehr = {"issuer": EHR_ISSUER, "subject": "ehr-client-9", "tenant": TENANT}
    assert decision["decision"]["request"] == {
        "user": "Practitioner/example",
        "fhir_server": FHIR_BASE,
        "hook": "patient-view",
        "hook_instance": body["hookInstance"],
        **ehr,
    }
    assert feedback["request"] == ehr and feedback["decision_id"] == decision["decision"]["decision_id"]

    # The FHIR export names the EHR as a requesting agent beside the user.
    [event] = [e["resource"] for e in export_fhir(decision)["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    requestors = [a for a in event["agent"] if a["requestor"]]
    assert [a["who"].get("display") for a in requestors] == ["Practitioner/example", EHR_ISSUER]
    [by_ehr] = [a for a in requestors if a["who"].get("identifier")]
    assert by_ehr["who"]["identifier"] == {"system": "urn:ietf:rfc:3986", "value": EHR_ISSUER}
    assert by_ehr["altId"] == "ehr-client-9" and TENANT in by_ehr["name"]

    # No token, in whole or in part, in any file the service wrote (log, index, shared state, WAL).
    secrets = [ACCESS_TOKEN, *call_token.split("."), *feedback_token.split(".")]
    for token in (call_token, feedback_token):
        import jwt

        secrets.append(jwt.decode(token, options={"verify_signature": False})["jti"])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("cdshooks-state.sqlite") for p in files)
    for path in files:
        data = path.read_bytes()
        assert not [s for s in secrets if s.encode() in data], f"a token is written in {path.name}"


def test_records_name_no_ehr_when_no_token_vouched_for_the_call(engine: Any, tmp_path: Path) -> None:
    """--insecure-dev: nobody is authenticated, so no issuer is claimed."""
    patient, prefetch = synthea_prefetch()
    config = {"insecure_dev": True, "audit_dir": tmp_path, "clock": lambda: FIXED_NOW}
    with running_server(config, engine) as srv:
        assert srv.call("POST", SERVICE, make_request("patient-view", patient, prefetch)).status == 200
    [decision] = [r["decision"] for r in read_records(tmp_path) if r["type"] == "decision"]
    assert not {"issuer", "subject", "tenant"} & set(decision["request"])
