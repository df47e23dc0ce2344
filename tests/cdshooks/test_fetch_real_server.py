"""Fetching from a real FHIR server (SEKMET, from PyPI) loaded with shared Synthea patients.

A real ``neurocds serve`` process (all installed packs, loopback test mode) is
called without prefetch; it must fetch every template from the FHIR server,
following its pages, and answer exactly as when the same data is prefetched.
Skipped when SEKMET is not installed (see tests/cdshooks/fhir_server.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurocds.audit.query import read_records

from .fhir_server import FhirServer, load_patients, sekmet_command, sekmet_server
from .spec import assert_operation_outcome, assert_response
from .support import ServedProcess, hook_request, http_call, serve_process, service_templates

# .ci/run installs the server and sets NEUROCDS_REQUIRE_SERVERS, so in CI a missing server fails, never skips.
pytestmark = pytest.mark.skipif(
    sekmet_command() is None and not os.environ.get("NEUROCDS_REQUIRE_SERVERS"),
    reason="sekmet-fhir is not installed (.venv-sekmet; see README 'CDS Hooks service')",
)

PATH = "/cds-services/neurocds-patient-view"
PATIENTS = (
    "Bryan_Breitenberg_8ce561ed-8bf7-4b0b-b1cd-e26775a8a8f8.json",
    "Emery_Purdy_298c62e6-b204-4a14-8e21-73d5be0ce22e.json",
    "Hershel_Marvin_71a7f9d4-45b7-481b-b571-7ee0caca6e2a.json",
)


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FhirServer, list[str]]]:
    with sekmet_server(tmp_path_factory.mktemp("sekmet")) as server:
        yield server, load_patients(server, PATIENTS)


@pytest.fixture(scope="module")
def service(
    fhir: tuple[FhirServer, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedProcess, Path]]:
    server, _ = fhir
    audit = tmp_path_factory.mktemp("audit")
    args = [
        "--insecure-dev",
        f"--fhir-server={server.base}",
        "--fhir-test-loopback",
        "--fhir-deadline=20",  # a shared 2-core machine; the benchmark measures the real time
        "--fhir-page-size=10",  # so that the stroke patient's observations come in several pages
        "--observation-window-days=36500",  # Synthea's labs are years old
        f"--audit-dir={audit}",
    ]
    with serve_process(args, log_level="info") as served:
        yield served, audit
    assert server.token not in served.stderr


def _call(port: int, patient_id: str, server: FhirServer, prefetch: Any = None, token: str | None = None) -> Any:
    body = hook_request("patient-view", patient_id, prefetch)
    body["fhirServer"] = server.base
    body["fhirAuthorization"] = {"access_token": token or server.token, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "neurocds"}  # fmt: skip
    return http_call(port, "POST", PATH, body)


def _gist(cards: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in cards)


def test_fetched_answers_equal_prefetched_answers(
    fhir: tuple[FhirServer, list[str]], service: tuple[ServedProcess, Path]
) -> None:
    server, ids = fhir
    served, audit = service
    for patient_id in ids:
        fetched = _call(served.port, patient_id, server)
        assert fetched.status == 200, fetched.body
        sent = _call(served.port, patient_id, server, server.prefetch(patient_id))
        assert sent.status == 200, sent.body
        assert _gist(assert_response(fetched.json())) == _gist(assert_response(sent.json()))
    decisions = [r["decision"] for r in read_records(audit) if r["type"] == "decision"]
    # The same facts either way, and the fetched data really reached them (labs, conditions, age).
    facts = [{k: v for k, v in d["facts"].items() if k != "recorded_at"} for d in decisions]
    assert facts[0::2] == facts[1::2]
    assert all(d["facts"].get("labs") and d["facts"]["patient"].get("age_years") for d in decisions)
    sources = [d["trace"]["input_provenance"]["prefetch_sources"] for d in decisions]
    fetched_sources = sources[0::2]
    assert len(fetched_sources) == len(ids)
    for per_key in fetched_sources:
        assert set(per_key) == set(service_templates())
        assert all(s["source"] == "fetched" and s["status"] == 200 and s["url"].startswith(server.base)
                   for s in per_key.values())  # fmt: skip
    # Pages of 10: the stroke patient's observations take several, all followed.
    assert fetched_sources[0]["observations"]["pages"] > 1
    assert all(s["source"] == "prefetch" for per_key in sources[1::2] for s in per_key.values())
    assert server.token.encode() not in b"".join(f.read_bytes() for f in audit.rglob("*") if f.is_file())


def test_a_token_the_fhir_server_refuses_is_412(
    fhir: tuple[FhirServer, list[str]], service: tuple[ServedProcess, Path]
) -> None:
    server, ids = fhir
    served, _ = service
    resp = _call(served.port, ids[0], server, token="not-the-token")
    assert resp.status == 412
    assert_operation_outcome(resp.json(), "/fhirServer")
    assert "refused access (401)" in resp.json()["issue"][0]["diagnostics"]
