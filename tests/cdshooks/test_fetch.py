"""The service fetches what the EHR did not prefetch (issue 15, item 1): faults against a stub.

The stub is a real HTTP server on loopback (pytest-httpserver, threaded), answering
our templates from a Synthea patient; the service under test is a real uvicorn
server in loopback test mode. A server off the allowlist is a bare listening
socket that counts the connections it accepts: it must see none.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from neurocds.audit.query import read_records

from .spec import assert_operation_outcome, assert_response
from .support import (
    EHR_ISSUER,
    FIXED_NOW,
    STROKE_PATIENT,
    SYNTHEA_DATA,
    Keys,
    Server,
    answer_template,
    hook_request,
    load_json,
    running_server,
    service_templates,
)

PATH = "/cds-services/neurocds-patient-view"
TOKEN = "secret-fhir-access-token-123"


def _patient() -> tuple[str, list[dict[str, Any]]]:
    bundle = load_json(SYNTHEA_DATA / STROKE_PATIENT)
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    bundle = json.loads(json.dumps(bundle).replace(f'"urn:uuid:{pid}"', f'"Patient/{pid}"'))
    return pid, [e["resource"] for e in bundle["entry"]]


PATIENT_ID, RESOURCES = _patient()


class Stub:
    """A FHIR server answering this service's templates for one patient; records what it was asked."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.base = server.url_for("/fhir").rstrip("/")
        self.requests: list[tuple[str, str | None]] = []
        self.fault: Any = None  # a callable (path) -> WResponse | None
        self.page_size: int | None = None
        self.next_base: str | None = None
        self._lock = threading.Lock()
        for prefix in ("Condition", "Observation", "Procedure", "MedicationRequest", f"Patient/{PATIENT_ID}"):
            server.expect_request(f"/fhir/{prefix}", method="GET").respond_with_handler(self.handle)

    def handle(self, request: WRequest) -> WResponse:
        with self._lock:
            self.requests.append((request.full_path, request.headers.get("Authorization")))
        if self.fault is not None:
            answer = self.fault(request)
            if answer is not None:
                return answer  # type: ignore[no-any-return]  # werkzeug responses are untyped here
        path = request.path.removeprefix("/fhir/")
        query = request.query_string.decode()
        offset = int(request.args.get("_offset", 0))
        query = "&".join(p for p in query.split("&") if not p.startswith(("_offset=", "_count=")))
        doc = answer_template(f"{path}?{query}" if query else path, RESOURCES, PATIENT_ID)
        if path == "Condition" and self.page_size is not None:  # one family paged: the others stay short
            entries = doc["entry"]
            doc = {**doc, "entry": entries[offset : offset + self.page_size]}
            if offset + self.page_size < len(entries):
                base = self.next_base or self.base
                url = f"{base}/{path}?{query}&_offset={offset + self.page_size}"
                doc["link"] = [{"relation": "next", "url": url}]
        return WResponse(json.dumps(doc), status=200, content_type="application/fhir+json")


@pytest.fixture()
def stub() -> Iterator[Stub]:
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    try:
        yield Stub(server)
    finally:
        server.clear()
        server.stop()


class CountingListener:
    """A listening socket that accepts and counts connections (and never answers)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir"

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


def _config(stub_base: str, audit_dir: Path, keys: Keys, **over: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "issuers": {EHR_ISSUER: str(keys.jwks_path)},
        "clock": lambda: FIXED_NOW,
        "audit_dir": audit_dir,
        "fhir_servers": {EHR_ISSUER: (stub_base,)},
        "fhir_loopback_test_mode": True,
        "fhir_deadline_seconds": 5.0,  # generous: the machine is shared; the timeout test sets its own
    }
    config.update(over)
    return config


def _call(srv: Server, keys: Keys, body: dict[str, Any]) -> Any:
    return srv.call("POST", PATH, body, token=keys.token(srv.base_url + PATH))


def _body(fhir_server: str, prefetch: dict[str, Any] | None = None, **auth: Any) -> dict[str, Any]:
    body = hook_request("patient-view", PATIENT_ID, prefetch)
    body["fhirServer"] = fhir_server
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
        **auth,
    }
    return body


def _sources(audit_dir: Path) -> dict[str, Any]:
    [decision] = [r["decision"] for r in read_records(audit_dir) if r["type"] == "decision"]
    return decision["trace"]["input_provenance"]["prefetch_sources"]  # type: ignore[no-any-return]


def test_without_prefetch_every_key_is_fetched_with_the_token(
    engine: Any, keys: Keys, stub: Stub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_server(_config(stub.base, tmp_path, keys), engine) as srv:
        resp = _call(srv, keys, _body(stub.base))
    assert resp.status == 200, resp.body
    codes = {c["source"]["topic"]["code"] for c in assert_response(resp.json())}
    assert "cdstest.prior_stroke" in codes  # from the fetched Conditions
    assert len(stub.requests) == len(service_templates())
    assert {auth for _, auth in stub.requests} == {f"Bearer {TOKEN}"}
    sources = _sources(tmp_path)
    assert set(sources) == set(service_templates())
    for key, source in sources.items():
        assert source["source"] == "fetched" and source["status"] == 200 and source["pages"] == 1
        assert source["url"].startswith(stub.base + "/") and key
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in log_text
    assert all(TOKEN.encode() not in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())


def test_only_absent_and_operation_outcome_keys_are_fetched_and_null_is_not(
    engine: Any, keys: Keys, stub: Stub, tmp_path: Path
) -> None:
    templates = service_templates()
    prefetch = {
        "patient": answer_template(templates["patient"], RESOURCES, PATIENT_ID),
        "conditions": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        "medications": None,
    }
    with running_server(_config(stub.base, tmp_path, keys), engine) as srv:
        resp = _call(srv, keys, _body(stub.base, prefetch))
    assert resp.status == 200, resp.body
    fetched = sorted(path.split("?")[0] for path, _ in stub.requests)
    assert fetched == ["/fhir/Condition", "/fhir/Observation", "/fhir/Procedure"]
    sources = _sources(tmp_path)
    assert sources["patient"] == {"source": "prefetch"}
    assert sources["medications"] == {"source": "null"}
    assert sources["conditions"]["source"] == "fetched"


def test_a_server_off_the_allowlist_gets_no_connection_and_the_call_412(
    engine: Any, keys: Keys, stub: Stub, tmp_path: Path
) -> None:
    listener = CountingListener()
    try:
        with running_server(_config(stub.base, tmp_path, keys), engine) as srv:
            other = _call(srv, keys, _body(listener.url))
            # The allowlisted server under another host name is not on the list either.
            renamed = _call(srv, keys, _body(stub.base.replace("127.0.0.1", "localhost")))
        time.sleep(0.3)
        assert listener.accepted == 0
    finally:
        listener.close()
    assert other.status == 412
    assert_operation_outcome(other.json(), "/fhirServer")
    assert renamed.status == 412
    assert stub.requests == []


def test_an_allowlisted_server_of_another_issuer_is_refused(
    engine: Any, keys: Keys, stub: Stub, tmp_path: Path
) -> None:
    config = _config(stub.base, tmp_path, keys, fhir_servers={"https://other-ehr.invalid": (stub.base,)})
    with running_server(config, engine) as srv:
        resp = _call(srv, keys, _body(stub.base))
    assert resp.status == 412
    assert stub.requests == []


def test_a_token_for_another_patient_is_412_before_any_fetch(
    engine: Any, keys: Keys, stub: Stub, tmp_path: Path
) -> None:
    with running_server(_config(stub.base, tmp_path, keys), engine) as srv:
        resp = _call(srv, keys, _body(stub.base, patient="someone-else"))
    assert resp.status == 412
    assert_operation_outcome(resp.json(), "/fhirAuthorization/patient")
    assert stub.requests == []


def _status(code: int) -> Any:
    return lambda request: WResponse("{}", status=code, content_type="application/fhir+json")


def _slow(request: WRequest) -> None:
    time.sleep(1.5)


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        (_status(401), "security", "refused access (401)"),
        (_status(403), "security", "refused access (403)"),
        (_status(500), "exception", "answered 500"),
        (lambda r: WResponse("not json", status=200), "invalid", "not a FHIR resource"),
        (lambda r: WResponse('{"a": 1}', status=200), "invalid", "not a FHIR resource"),
        (lambda r: WResponse('{"resourceType": "Bundle", "entry": 7}', status=200), "invalid", "invalid Bundle"),
        (_slow, "timeout", "did not answer within 0.5 s"),
    ],
)
def test_fhir_server_faults_are_412_with_an_operation_outcome(
    engine: Any, keys: Keys, stub: Stub, tmp_path: Path, fault: Any, code: str, words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    stub.fault = lambda request: fault(request) if "Condition" in request.path else None
    config = _config(stub.base, tmp_path, keys, fhir_deadline_seconds=0.5)
    with running_server(config, engine) as srv:
        started = time.monotonic()
        resp = _call(srv, keys, _body(stub.base))
        waited = time.monotonic() - started
    assert resp.status == 412, resp.body
    outcome = resp.json()
    assert_operation_outcome(outcome, "/fhirServer")
    assert outcome["issue"][0]["code"] == code
    assert words in outcome["issue"][0]["diagnostics"]
    assert TOKEN not in "\n".join(r.getMessage() for r in caplog.records)
    assert waited < 5
    # Nothing was decided, so nothing was recorded as a decision.
    assert not [r for r in read_records(tmp_path) if r["type"] == "decision"]


def test_pages_are_followed_up_to_the_cap(engine: Any, keys: Keys, stub: Stub, tmp_path: Path) -> None:
    stub.page_size = 2
    conditions = [r for r in RESOURCES if r["resourceType"] == "Condition"]
    assert len(conditions) > 4  # so that the cap below is reached
    with running_server(_config(stub.base, tmp_path / "a", keys), engine) as srv:
        resp = _call(srv, keys, _body(stub.base))
    assert resp.status == 200, resp.body
    pages = -(-len(conditions) // 2)
    assert _sources(tmp_path / "a")["conditions"]["pages"] == pages
    with running_server(_config(stub.base, tmp_path / "b", keys, fhir_max_pages=2), engine) as srv:
        capped = _call(srv, keys, _body(stub.base))
    assert capped.status == 412
    assert "more than 2 pages" in capped.json()["issue"][0]["diagnostics"]


def test_a_next_link_to_another_server_is_not_followed(engine: Any, keys: Keys, stub: Stub, tmp_path: Path) -> None:
    listener = CountingListener()
    stub.page_size = 2
    stub.next_base = listener.url
    try:
        with running_server(_config(stub.base, tmp_path, keys), engine) as srv:
            resp = _call(srv, keys, _body(stub.base))
        time.sleep(0.3)
        assert listener.accepted == 0
    finally:
        listener.close()
    assert resp.status == 412
    assert "another server" in resp.json()["issue"][0]["diagnostics"]


def test_plain_http_is_refused_outside_loopback_test_mode(keys: Keys) -> None:
    from neurocds.cdshooks import ConfigError, ServiceConfig

    issuers = {EHR_ISSUER: str(keys.jwks_path)}
    with pytest.raises(ConfigError, match="https"):
        ServiceConfig("http://127.0.0.1:1", issuers, fhir_servers={EHR_ISSUER: ("http://127.0.0.1:9/fhir",)})
    off_loopback = {EHR_ISSUER: ("http://fhir.example.org/fhir",)}
    with pytest.raises(ConfigError, match="https"):
        ServiceConfig("http://127.0.0.1:1", issuers, fhir_servers=off_loopback, fhir_loopback_test_mode=True)
