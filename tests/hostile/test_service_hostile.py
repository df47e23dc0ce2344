"""Hostile bodies through the CDS Hooks service (real uvicorn on loopback): a 4xx OperationOutcome, never a 500.

The service reads CDS Hooks requests, not facts documents, so a body that is valid
JSON but not a request is refused for its shape (400) rather than for the facts
schema; the parse-level problems (lone surrogates, numbers beyond float range, NaN,
duplicate members, nesting) are the same and must be named by their pointer.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cdshooks.spec import assert_operation_outcome, issue_pointers
from cdshooks.support import Server, running_server

from neurocds.engine import Engine
from neurocds.errors import FactsValidationError
from neurocds.facts.fastparse import member_count
from neurocds.facts.strictjson import ParseLimits, parse_strict
from neurocds_packs import BUILTIN_PACKS

from .corpus import LIMIT, corpus

ROOT = Path(__file__).resolve().parents[2]
PATH = "/cds-services/neurocds-patient-view"
SECONDS = 10.0  # per call; today's main took up to 45 s on the large shapes
PARSE_CODES = {"utf8", "non_finite", "duplicate_key", "depth"}
# The example request's labs are dated 2026-11-20.
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {"insecure_dev": True, "audit_dir": tmp_path_factory.mktemp("audit"), "clock": lambda: NOW}
    with running_server(config, Engine(packs=BUILTIN_PACKS, backend="reference")) as srv:
        yield srv


def parse_problem_pointers(body: bytes) -> list[str]:
    """The pointers the strict parser names for ``body`` (empty when it parses)."""
    try:
        parse_strict(body)
    except FactsValidationError as exc:
        return [v.pointer for v in exc.violations if v.code in PARSE_CODES]
    return []


@pytest.mark.parametrize(("name", "body", "pointer"), corpus(), ids=[c[0] for c in corpus()])
def test_each_hostile_body_gets_a_4xx_outcome_in_bounded_time(
    server: Server, name: str, body: bytes, pointer: str
) -> None:
    start = time.monotonic()
    try:
        resp = server.call("POST", PATH, raw=body, headers={"Content-Type": "application/json"})
    except (BrokenPipeError, ConnectionResetError):
        # Over the body limit the service answers 413 from Content-Length alone and
        # closes; the client may still be sending. Refused without reading it: fine.
        assert len(body) > LIMIT, name
        return
    assert time.monotonic() - start < SECONDS, name
    assert resp.status in (400, 413), (name, resp.status, resp.body[:300])
    outcome = resp.json()
    assert_operation_outcome(outcome)
    expected = parse_problem_pointers(body)
    if expected:
        assert (expected[0] or "/") in issue_pointers(outcome), (name, issue_pointers(outcome)[:5])


def example_request(potassium: Any) -> bytes:
    request = json.loads((ROOT / "examples" / "cdshooks" / "patient-view-request.json").read_text())
    request = copy.deepcopy(request)
    for entry in request["prefetch"]["observations"]["entry"]:
        if entry["resource"]["id"] == "obs-k":
            entry["resource"]["valueQuantity"]["value"] = "POTASSIUM"
    # The literal is written as text so that 2**64 and 1e300 reach the service as sent.
    return json.dumps(request).replace('"POTASSIUM"', potassium).encode()


def cards(server: Server, literal: str) -> list[dict[str, Any]]:
    resp = server.call("POST", PATH, raw=example_request(literal), headers={"Content-Type": "application/json"})
    assert resp.status == 200, resp.body[:500]
    return list(resp.json()["cards"])


def kalaemia_cards(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in found if "kalaemia" in json.dumps(c).lower()]


@pytest.mark.parametrize("literal", ["18446744073709551616", "1e300", "0"], ids=["2**64", "1e300", "zero"])
def test_an_impossible_potassium_never_becomes_a_card(server: Server, literal: str) -> None:
    found = cards(server, literal)
    assert kalaemia_cards(found) == []  # today: "Severe hyperkalaemia" / "Severe hypokalaemia"
    # The clinician is told the value was not used, and why.
    assert "physiologically possible range" in json.dumps(found)


def test_a_real_low_potassium_still_does(server: Server) -> None:
    found = kalaemia_cards(cards(server, "2.4"))
    assert found and found[0]["indicator"] == "critical"


def test_a_request_over_the_facts_documents_structure_limits_is_still_answered(server: Server) -> None:
    """CDS Hooks requests carry FHIR, denser than facts: the service parses them with size and
    depth limits only (fhir_limits), and the facts it builds are checked as any dict is."""
    request = json.loads(example_request("4.1"))
    filler = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Basic", "id": f"b{i}"}} for i in range(9000)],
    }
    request["prefetch"]["unasked"] = filler  # a key the service never asked for: not used
    body = json.dumps(request).encode()
    default = ParseLimits()  # what a facts document is held to
    assert len(body) < LIMIT and body.count(b"{") + body.count(b"[") > (default.max_containers or 0)
    assert member_count(body) > (default.max_members or 0)
    resp = server.call("POST", PATH, raw=body, headers={"Content-Type": "application/json"})
    assert resp.status == 200, resp.body[:500]
    assert "cards" in resp.json()
