"""The service over real HTTP: discovery, the specification's example calls, Synthea patients."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from .spec import assert_operation_outcome, assert_response, issue_pointers
from .support import CDSHOOKS_DATA, STROKE_PATIENT, Keys, Server, hook_request, load_json, synthea_prefetch

PATIENT_VIEW = "/cds-services/neurocds-patient-view"
ORDER_SELECT = "/cds-services/neurocds-order-select"


def post(server: Server, keys: Keys, path: str, body: Any, **kw: Any) -> Any:
    return server.call("POST", path, body, token=keys.token(server.base_url + path), **kw)


def test_discovery_lists_the_three_services_with_prefetch_templates(server: Server, keys: Keys) -> None:
    resp = server.call("GET", "/cds-services", token=keys.token(f"{server.base_url}/cds-services"))
    assert resp.status == 200
    services = {s["hook"]: s for s in resp.json()["services"]}
    assert set(services) == {"patient-view", "order-select", "order-sign"}
    for service in services.values():
        assert service["id"] and service["title"] and service["description"]
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        assert prefetch["conditions"] == "Condition?patient={{context.patientId}}"
        assert prefetch["observations"].startswith("Observation?patient={{context.patientId}}&code=")
        assert prefetch["medications"] == "MedicationRequest?patient={{context.patientId}}"
    assert "x-neurocds-insecure" not in resp.headers
    assert resp.headers["cache-control"] == "no-store"


def test_spec_patient_view_example_naming_a_server_off_the_allowlist_is_412(server: Server, keys: Keys) -> None:
    """The spec's example names a fhirServer this service was not told to trust: nothing is fetched."""
    body = load_json(CDSHOOKS_DATA / "spec2__02_request_example.json")
    resp = post(server, keys, PATIENT_VIEW, body)
    assert resp.status == 412, resp.body
    assert_operation_outcome(resp.json(), "/fhirServer")
    assert "allowlist" in resp.json()["issue"][0]["diagnostics"]
    assert b"some-opaque-fhir-access-token" not in resp.body


def test_spec_patient_view_example_with_only_a_foreign_prefetch_key_is_412(server: Server, keys: Keys) -> None:
    """The spec's example prefetches 'patientToGreet', a key this service never asked for."""
    body = load_json(CDSHOOKS_DATA / "spec2__02_request_example.json")
    assert set(body["prefetch"]) == {"patientToGreet"}
    del body["fhirServer"], body["fhirAuthorization"]
    resp = post(server, keys, PATIENT_VIEW, body)
    assert resp.status == 412, resp.body
    assert_operation_outcome(resp.json(), "/prefetch")
    [issue] = resp.json()["issue"]
    assert "none of this service's prefetch keys" in issue["diagnostics"]
    assert "1 key(s) it did not ask for" in issue["diagnostics"]
    assert b"patientToGreet" not in resp.body  # request values (keys too) are never quoted back
    assert b"some-opaque-fhir-access-token" not in resp.body


def test_data_under_a_key_the_service_did_not_ask_for_is_not_used(server: Server, keys: Keys) -> None:
    """The stroke patient's conditions under a foreign key raise no stroke card (issue 11, item 13)."""
    patient_id, prefetch = synthea_prefetch(STROKE_PATIENT)
    sent = {"patient": prefetch["patient"], "myConditions": prefetch["conditions"]}
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", patient_id, sent))
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    codes = {c["source"]["topic"]["code"] for c in cards}
    assert "cdstest.prior_stroke" not in codes and "cdstest.adult" in codes
    [notice] = [c for c in cards if c["source"]["topic"]["code"] == "missing-data"]
    assert "1 prefetch key\\(s\\) this service did not ask for were not used" in notice["detail"]
    # The same conditions under the service's own key do raise it.
    sent["conditions"] = sent.pop("myConditions")
    again = post(server, keys, PATIENT_VIEW, hook_request("patient-view", patient_id, sent)).json()
    assert "cdstest.prior_stroke" in {c["source"]["topic"]["code"] for c in again["cards"]}


def test_spec_patient_view_example_under_our_patient_key(server: Server, keys: Keys) -> None:
    body = load_json(CDSHOOKS_DATA / "spec2__02_request_example.json")
    body["prefetch"] = {"patient": body["prefetch"]["patientToGreet"]}
    del body["fhirServer"]  # no server to fetch the other keys from: they are not recorded
    resp = post(server, keys, PATIENT_VIEW, body)
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    # Only a bare Patient was prefetched: the service must say what it did not get.
    notice = [c for c in cards if c["source"]["topic"]["code"] == "missing-data"]
    assert len(notice) == 1
    assert "prefetch 'conditions' was not sent" in notice[0]["detail"]
    assert b"some-opaque-fhir-access-token" not in resp.body


def test_spec_order_select_context_example(server: Server, keys: Keys) -> None:
    context = load_json(CDSHOOKS_DATA / "lib-order-select__01_context_example-r4.json")["context"]
    patient = load_json(CDSHOOKS_DATA / "spec2__02_request_example.json")["prefetch"]["patientToGreet"]
    body = {
        "hook": "order-select",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2eb",
        "context": context,
        "prefetch": {"patient": patient, "medications": None},
    }
    resp = post(server, keys, ORDER_SELECT, body)
    assert resp.status == 200, resp.body
    assert_response(resp.json())


def test_spec_extension_example_without_patient_is_400(server: Server, keys: Keys) -> None:
    body = load_json(CDSHOOKS_DATA / "spec2__31_request_extensions.json")
    resp = post(server, keys, PATIENT_VIEW, body)
    assert resp.status == 400
    assert_operation_outcome(resp.json(), "/context/patientId")


@pytest.mark.parametrize("path", [PATIENT_VIEW, ORDER_SELECT])
def test_wrong_hook_is_400(server: Server, keys: Keys, path: str) -> None:
    body = load_json(CDSHOOKS_DATA / "spec2__04_request_example-of-pagination-in-prefetch.json")  # order-sign
    resp = post(server, keys, path, body)
    assert resp.status == 400
    assert_operation_outcome(resp.json(), "/hook")


def test_stroke_patient_cards(server: Server, keys: Keys) -> None:
    patient_id, prefetch = synthea_prefetch(STROKE_PATIENT)
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", patient_id, prefetch))
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    by_code = {c["source"]["topic"]["code"]: c for c in cards}
    stroke = by_code["cdstest.prior_stroke"]
    assert stroke["indicator"] == "warning"  # urgent -> warning
    assert stroke["source"]["label"] == "neurocds cds-test 9.9.9"
    assert stroke["source"]["topic"]["system"] == "urn:neurocds:finding"
    assert stroke["source"]["topic"]["display"] == "Prior stroke recorded [test pack]"
    assert "Prior stroke: yes" in stroke["detail"]
    assert "Review the previous stroke workup" in stroke["detail"]
    assert "Decision support for a clinician" in stroke["detail"]
    # Pack text is escaped: no raw HTML or live link reaches the EHR's Markdown renderer.
    assert "<b>" not in stroke["detail"] and "](http" not in stroke["detail"]
    assert by_code["cdstest.adult"]["indicator"] == "info"
    missing = by_code["missing-data"]
    assert missing["indicator"] == "info"
    # The converter skipped some of the patient's data (stale labs, unmapped codes): the summary says so first.
    assert missing["summary"].startswith("EHR data not used (") and "; not recorded: " in missing["summary"]
    # The emergency rule waits on the left leg grade, so it leads the list.
    assert missing["summary"].split("; not recorded: ")[1].startswith("Left leg strength")
    assert cards[0] is stroke


def test_finding_cards_link_to_an_evidence_sheet_a_browser_can_open(server: Server, keys: Keys) -> None:
    patient_id, prefetch = synthea_prefetch(STROKE_PATIENT)
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", patient_id, prefetch))
    cards = assert_response(resp.json())
    stroke = next(c for c in cards if c["source"]["topic"]["code"] == "cdstest.prior_stroke")
    [link] = stroke["links"]
    assert link["type"] == "absolute" and link["url"] == f"{server.base_url}/evidence/cdstest.prior_stroke"
    page = server.call("GET", link["url"].removeprefix(server.base_url))  # no token: a browser has none
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.body.decode()
    for words in ("Test rule that fires on a recorded prior stroke.", "test fixture", "cds-test 9.9.9",
                  "cdstest.history_of_stroke", "Review the previous stroke workup."):  # fmt: skip
        assert words in text
    assert patient_id not in text
    missing = server.call("GET", "/evidence/no.such-finding")
    assert missing.status == 404
    assert_operation_outcome(missing.json())


@pytest.mark.parametrize(
    "name",
    [
        "Emery_Purdy_298c62e6-b204-4a14-8e21-73d5be0ce22e.json",
        "Hershel_Marvin_71a7f9d4-45b7-481b-b571-7ee0caca6e2a.json",
        "Cary_O'Hara_e39beddb-dcad-4762-a3ca-b671a92a5f2d.json",
    ],
)
@pytest.mark.parametrize(("hook", "path"), [("patient-view", PATIENT_VIEW), ("order-select", ORDER_SELECT)])
def test_synthea_patients_get_valid_cards(server: Server, keys: Keys, name: str, hook: str, path: str) -> None:
    patient_id, prefetch = synthea_prefetch(name)
    resp = post(server, keys, path, hook_request(hook, patient_id, prefetch))
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    assert any(c["source"]["topic"]["code"] == "cdstest.adult" for c in cards)


# ------------------------------------------------------------------ 4xx cases


def test_no_prefetch_is_412(server: Server, keys: Keys) -> None:
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", "p1", None))
    assert resp.status == 412
    assert_operation_outcome(resp.json(), "/prefetch")


def test_all_null_prefetch_is_evaluated_with_nothing_recorded(server: Server, keys: Keys) -> None:
    """null means the EHR has no such data for this patient: advice on an empty record, saying so."""
    nulls = dict.fromkeys(("patient", "conditions", "observations", "procedures", "medications"))
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", "p1", nulls))
    assert resp.status == 200, resp.body
    cards = assert_response(resp.json())
    [notice] = [c for c in cards if c["source"]["topic"]["code"] == "missing-data"]
    assert "prefetch 'observations' is null" in notice["detail"]


def test_a_prefetch_about_another_patient_only_is_412(server: Server, keys: Keys) -> None:
    """Advice for context.patientId must not rest on, or silently ignore, someone else's record."""
    _, prefetch = synthea_prefetch()
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", "someone-else", prefetch))
    assert resp.status == 412, resp.body
    outcome = resp.json()
    assert_operation_outcome(outcome, "/prefetch")
    assert "none about context.patientId" in json.dumps(outcome)


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda b: b.pop("hookInstance"), "/hookInstance"),
        (lambda b: b.update(hookInstance=7), "/hookInstance"),
        (lambda b: b.pop("context"), "/context"),
        (lambda b: b["context"].pop("patientId"), "/context/patientId"),
        (lambda b: b["context"].update(patientId=""), "/context/patientId"),
        (lambda b: b["context"].pop("userId"), "/context/userId"),
        (lambda b: b.update(prefetch=[1]), "/prefetch"),
        (lambda b: b["prefetch"].update(conditions="nope"), "/prefetch/conditions"),
        (lambda b: b.update(fhirServer="ftp://x"), "/fhirServer"),
    ],
)
def test_invalid_request_is_400_naming_the_pointer(server: Server, keys: Keys, mutate: Any, pointer: str) -> None:
    body = hook_request("patient-view", "p1", {"patient": {"resourceType": "Patient", "id": "p1"}})
    mutate(body)
    resp = post(server, keys, PATIENT_VIEW, body)
    assert resp.status == 400
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert_operation_outcome(resp.json(), pointer)


def test_every_problem_is_reported_at_once(server: Server, keys: Keys) -> None:
    resp = post(server, keys, PATIENT_VIEW, {"hook": "patient-view", "context": {}})
    assert resp.status == 400
    named = set(issue_pointers(resp.json()))
    assert {"/hookInstance", "/context/patientId", "/context/userId"} <= named


def test_order_select_needs_its_context(server: Server, keys: Keys) -> None:
    body = hook_request("order-select", "p1", {"patient": {"resourceType": "Patient", "id": "p1"}})
    del body["context"]["draftOrders"]
    resp = post(server, keys, ORDER_SELECT, body)
    assert resp.status == 400
    assert_operation_outcome(resp.json(), "/context/draftOrders")


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        (b"{not json", ""),
        (b"[1, 2]", ""),
        (b'{"hook": "patient-view", "hook": "order-select"}', "/hook"),
        (b'{"hook": NaN}', "/hook"),
        (b"", ""),
    ],
)
def test_malformed_json_is_400(server: Server, keys: Keys, raw: bytes, pointer: str) -> None:
    resp = post(server, keys, PATIENT_VIEW, None, raw=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert_operation_outcome(resp.json())
    assert any(p in (pointer, "/") for p in issue_pointers(resp.json()))


def test_unreadable_prefetch_bundle_is_400(server: Server, keys: Keys) -> None:
    prefetch = {"conditions": {"resourceType": "Bundle", "type": "searchset", "entry": "not-an-array"}}
    resp = post(server, keys, PATIENT_VIEW, hook_request("patient-view", "p1", prefetch))
    assert resp.status == 400
    assert_operation_outcome(resp.json(), "/prefetch/conditions/entry")


def test_unknown_service_is_404(server: Server, keys: Keys) -> None:
    resp = post(server, keys, "/cds-services/nope", hook_request("patient-view", "p1", None))
    assert resp.status == 404
    assert_operation_outcome(resp.json())


def test_non_json_content_type_is_415(server: Server, keys: Keys) -> None:
    resp = post(server, keys, PATIENT_VIEW, None, raw=b"hook=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


def test_declared_oversized_body_is_413_before_reading(server: Server, keys: Keys) -> None:
    # The header alone decides: a 1 MiB+ declaration with a tiny body is refused at once.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", PATIENT_VIEW)
        conn.putheader("Authorization", f"Bearer {keys.token(server.base_url + PATIENT_VIEW)}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(1_048_576 + 1))
        conn.endheaders(b"{}")
        resp = conn.getresponse()
        assert resp.status == 413
        assert_operation_outcome(json.loads(resp.read()))
    finally:
        conn.close()


def test_unauthenticated_oversized_body_is_401_not_413(server: Server) -> None:
    resp = server.call("POST", PATIENT_VIEW, None, raw=b"{}", headers={"Content-Length": "2"})
    assert resp.status == 401


def test_finding_cards_link_to_their_dsi_sheet_which_the_service_serves(server: Server, keys: Keys) -> None:
    patient_id, prefetch = synthea_prefetch(STROKE_PATIENT)
    cards = assert_response(post(server, keys, PATIENT_VIEW, hook_request("patient-view", patient_id, prefetch)).json())
    stroke = next(c for c in cards if c["source"]["topic"]["code"] == "cdstest.prior_stroke")
    assert stroke["source"]["url"] == f"{server.base_url}/dsi/sheet/cdstest.prior_stroke"
    notices = [c for c in cards if c["source"]["topic"]["system"] != "urn:neurocds:finding"]
    assert notices and all("url" not in c["source"] for c in notices)  # only findings have a sheet
    page = server.call("GET", "/dsi/sheet/cdstest.prior_stroke")  # no token: the sheet holds no patient data
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    text = page.body.decode()
    assert "Finding cdstest.prior_stroke" in text and "Use of" in text and "Sex" in text
    assert "Finding cdstest.adult" not in text  # one finding's part of the sheet
    whole = server.call("GET", "/dsi/sheet").body.decode()
    assert "Pack cds-test" in whole and "Pack spinal-compression" in whole
    missing = server.call("GET", "/dsi/sheet/no.such_finding")
    assert missing.status == 404
    assert_operation_outcome(missing.json(), "")
