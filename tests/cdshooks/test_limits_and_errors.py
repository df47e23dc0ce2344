"""Body limits counted while reading, and engine failures that must not read as "no advice"."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from neurocds.audit.query import read_records
from neurocds.errors import FactsValidationError, Violation

from .spec import assert_operation_outcome, assert_response
from .support import hook_request, running_server

PATH = "/cds-services/neurocds-patient-view"
PREFETCH = {"patient": {"resourceType": "Patient", "id": "p1"}}


def _chunked_post(port: int, chunks: list[bytes]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", PATH, body=iter(chunks), headers={"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_chunked_body_over_the_limit_is_413(engine: Any) -> None:
    body = json.dumps(hook_request("patient-view", "p1", PREFETCH)).encode()
    padding = b" " * 3000  # JSON allows trailing whitespace: only the size is wrong
    with running_server({"insecure_dev": True, "max_body_bytes": 4096}, engine) as srv:
        small_status, _ = _chunked_post(srv.port, [body, padding[:100]])
        status, data = _chunked_post(srv.port, [body, padding, padding])
    assert small_status == 200
    assert status == 413
    assert_operation_outcome(json.loads(data))


class _RejectingEngine:
    """Stands in for an engine that refuses the facts the FHIR converter produced."""

    def __init__(self, real: Any, error: Exception) -> None:
        self._real = real
        self._error = error
        self.pm = real.pm
        self.label_of = real.label_of
        self.engine_info = real.engine_info
        self.pack_infos = real.pack_infos

    def evaluate(self, facts: Any, **options: Any) -> Any:
        raise self._error


def test_facts_the_engine_rejects_give_a_warning_card_and_a_rejection_record(engine: Any, tmp_path: Path) -> None:
    error = FactsValidationError([Violation("/labs/potassium_mmol_l", "must be >= 0", code="minimum")])
    config = {"insecure_dev": True, "audit_dir": tmp_path}
    with running_server(config, _RejectingEngine(engine, error)) as srv:
        resp = srv.call("POST", PATH, hook_request("patient-view", "p1", PREFETCH))
    assert resp.status == 200
    [card] = assert_response(resp.json())
    assert card["indicator"] == "warning"
    assert "could not evaluate" in card["summary"]
    records = read_records(tmp_path)
    rejection = next(r["rejection"] for r in records if r["type"] == "rejection")
    cards = next(r["cards"] for r in records if r["type"] == "cards")
    assert cards == {"decision_id": rejection["rejection_id"], "card_uuids": [card["uuid"]]}
    # One append, like a decision and its cards: adjacent, and bound for crash recovery.
    rejection_record = next(r for r in records if r["type"] == "rejection")
    cards_record = next(r for r in records if r["type"] == "cards")
    assert cards_record["sequence"] == rejection_record["sequence"] + 1
    assert rejection_record.get("atomic_with_next") is True


def test_unexpected_errors_are_500_without_details(engine: Any) -> None:
    with running_server({"insecure_dev": True}, _RejectingEngine(engine, RuntimeError("secret internals"))) as srv:
        resp = srv.call("POST", PATH, hook_request("patient-view", "p1", PREFETCH))
    assert resp.status == 500
    assert_operation_outcome(resp.json())
    assert b"secret internals" not in resp.body
