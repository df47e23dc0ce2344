"""CORS: a browser-based CDS client (the CDS Hooks sandbox) can call the service when allowed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from neurocds.cdshooks import ConfigError, ServiceConfig

from .support import EHR_ISSUER, FIXED_NOW, Keys, Server, hook_request, http_call, running_server, serve_process

ORIGIN = "https://sandbox.example.org"
SERVICE = "/cds-services/neurocds-patient-view"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.fixture(scope="module")
def cors_server(engine: Any, keys: Keys) -> Iterator[Server]:
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "cors_origins": (ORIGIN,), "clock": lambda: FIXED_NOW}
    with running_server(config, engine) as srv:
        yield srv


def test_preflight_from_an_allowed_origin_is_answered(cors_server: Server) -> None:
    resp = cors_server.call("OPTIONS", SERVICE, headers=PREFLIGHT)
    assert resp.status == 200, resp.body
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in resp.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in resp.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "access-control-allow-credentials" not in resp.headers


def test_preflight_from_another_origin_is_refused(cors_server: Server) -> None:
    resp = cors_server.call("OPTIONS", SERVICE, headers={**PREFLIGHT, "Origin": "https://elsewhere.example"})
    assert resp.status == 400
    assert "access-control-allow-origin" not in resp.headers


def test_the_real_call_carries_the_cors_header_and_still_needs_a_token(cors_server: Server, keys: Keys) -> None:
    body = hook_request("patient-view", "p1", {"patient": {"resourceType": "Patient", "id": "p1"}})
    headers = {"Origin": ORIGIN}
    anonymous = cors_server.call("POST", SERVICE, body, headers=headers)
    assert anonymous.status == 401  # CORS lets the browser read the answer; it authenticates nothing
    assert anonymous.headers["access-control-allow-origin"] == ORIGIN
    signed = cors_server.call("POST", SERVICE, body, headers=headers, token=keys.token(cors_server.base_url + SERVICE))
    assert signed.status == 200
    assert signed.headers["access-control-allow-origin"] == ORIGIN


def test_without_cors_origins_there_is_no_cors(server: Server) -> None:
    resp = server.call("OPTIONS", SERVICE, headers=PREFLIGHT)
    assert resp.status == 405
    assert "access-control-allow-origin" not in resp.headers


@pytest.mark.parametrize("origin", ["sandbox.example.org", "https://a.example/path", "ftp://a.example", "https://"])
def test_malformed_origins_are_refused(origin: str) -> None:
    with pytest.raises(ConfigError, match="CORS origin"):
        ServiceConfig(base_url="http://127.0.0.1:1", insecure_dev=True, cors_origins=(origin,))


def test_serve_cors_origin_option() -> None:
    with serve_process(["--insecure-dev", "--cors-origin", ORIGIN, "--cors-origin", "http://localhost:3000"]) as srv:
        first = http_call(srv.port, "OPTIONS", SERVICE, headers=PREFLIGHT)
        second = http_call(srv.port, "OPTIONS", SERVICE, headers={**PREFLIGHT, "Origin": "http://localhost:3000"})
    assert first.status == 200 and first.headers["access-control-allow-origin"] == ORIGIN
    assert second.status == 200 and second.headers["access-control-allow-origin"] == "http://localhost:3000"
