"""JWT verification matrix over HTTP, the replay cache, JWK Sets by URL, and what is never logged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from neurocds.cdshooks import INSECURE_HEADER, ConfigError, ServiceConfig
from neurocds.cdshooks.security import AuthError, ReplayCache, parse_jwks

from .support import (
    EHR_ISSUER,
    FIXED_NOW,
    Keys,
    Server,
    hook_request,
    running_server,
    synthea_prefetch,
    unsigned_token,
)

PATH = "/cds-services/neurocds-patient-view"


def _body() -> dict[str, Any]:
    return hook_request("patient-view", "p1", {"patient": {"resourceType": "Patient", "id": "p1"}})


def _hmac_token(keys: Keys, server: Server, alg: str) -> str:
    """The key-confusion attack: HMAC-sign with the public key the service holds."""
    header = {"alg": alg, "typ": "JWT", "kid": "rsa-1"}
    claims = {"iss": EHR_ISSUER, "aud": server.base_url + PATH, "exp": _now() + 300, "iat": _now(), "jti": "h1"}
    secret = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing = unsigned_token(claims, header)[:-1]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[alg]
    sig = base64.urlsafe_b64encode(hmac.new(secret, signing.encode(), digest).digest()).rstrip(b"=").decode()
    return f"{signing}.{sig}"


def _now() -> int:
    return int(FIXED_NOW.timestamp())


def _other_ec_token(keys: Keys, server: Server) -> str:
    attacker = ec.generate_private_key(ec.SECP384R1())
    claims = {"iss": EHR_ISSUER, "aud": server.base_url + PATH, "exp": _now() + 300, "iat": _now(), "jti": "x1"}
    return jwt.encode(claims, attacker, algorithm="ES384", headers={"kid": "ec-1"})


def _tampered(keys: Keys, server: Server) -> str:
    head, payload, sig = keys.token(server.base_url + PATH).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def _jku_attack(keys: Keys, server: Server) -> str:
    attacker = ec.generate_private_key(ec.SECP384R1())
    claims = {"iss": EHR_ISSUER, "aud": server.base_url + PATH, "exp": _now() + 300, "iat": _now(), "jti": "j1"}
    headers = {"kid": "ec-1", "jku": "http://127.0.0.1:9/attacker-jwks.json"}
    return jwt.encode(claims, attacker, algorithm="ES384", headers=headers)


BAD_TOKENS: dict[str, Callable[[Keys, Server], str | None]] = {
    "missing": lambda k, s: None,
    "alg-none": lambda k, s: unsigned_token(
        {"iss": EHR_ISSUER, "aud": s.base_url + PATH, "exp": _now() + 300, "iat": _now(), "jti": "n1"},
        {"alg": "none", "kid": "ec-1"},
    ),
    "hs256-with-public-key": lambda k, s: _hmac_token(k, s, "HS256"),
    "hs384-with-public-key": lambda k, s: _hmac_token(k, s, "HS384"),
    "wrong-audience-other-endpoint": lambda k, s: k.token(f"{s.base_url}/cds-services"),
    "wrong-audience-other-host": lambda k, s: k.token(f"https://elsewhere.invalid{PATH}"),
    "expired": lambda k, s: k.token(s.base_url + PATH, now=FIXED_NOW - timedelta(minutes=10)),
    "issued-in-future": lambda k, s: k.token(s.base_url + PATH, now=FIXED_NOW + timedelta(minutes=5)),
    "lifetime-too-long": lambda k, s: k.token(s.base_url + PATH, exp=_now() + 3600),
    "unknown-issuer": lambda k, s: k.token(s.base_url + PATH, iss="https://rogue.invalid"),
    "bad-signature": _other_ec_token,
    "tampered-payload": _tampered,
    "jku-not-followed": _jku_attack,
    "no-jti": lambda k, s: k.token(s.base_url + PATH, jti=None),
    "no-exp": lambda k, s: k.token(s.base_url + PATH, exp=None),
    "unknown-kid": lambda k, s: k.token(s.base_url + PATH, headers={"kid": "nope"}),
    "not-a-jwt": lambda k, s: "abc.def",
}


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_good_tokens_are_accepted(server: Server, keys: Keys, alg: str) -> None:
    resp = server.call("POST", PATH, _body(), token=keys.token(server.base_url + PATH, alg=alg))
    assert resp.status == 200, resp.body


def test_audience_may_be_an_array(server: Server, keys: Keys) -> None:
    token = keys.token(["https://other.invalid", server.base_url + PATH])
    assert server.call("POST", PATH, _body(), token=token).status == 200


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_get_a_bare_401(server: Server, keys: Keys, case: str) -> None:
    token = BAD_TOKENS[case](keys, server)
    resp = server.call("POST", PATH, _body(), token=token)
    assert resp.status == 401
    assert resp.body == b""  # no hint which check failed
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_non_bearer_scheme_is_401(server: Server, keys: Keys) -> None:
    resp = server.call("POST", PATH, _body(), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert resp.status == 401


def test_replayed_jti_is_401(server: Server, keys: Keys) -> None:
    token = keys.token(server.base_url + PATH)
    assert server.call("POST", PATH, _body(), token=token).status == 200
    assert server.call("POST", PATH, _body(), token=token).status == 401


@pytest.mark.parametrize("path", ["/cds-services", f"{PATH}/feedback"])
def test_discovery_and_feedback_need_tokens_too(server: Server, keys: Keys, path: str) -> None:
    method = "GET" if path == "/cds-services" else "POST"
    assert server.call(method, path, {"feedback": []} if method == "POST" else None).status == 401
    # A token for another endpoint is not good here either.
    assert server.call(method, path, None, token=keys.token(server.base_url + PATH)).status == 401


def test_replay_cache_forgets_expired_and_fails_closed_when_full() -> None:
    cache = ReplayCache(max_size=2)
    cache.check_and_add(("i", "a"), expires_at=100.0, now=0.0)
    cache.check_and_add(("i", "b"), expires_at=200.0, now=0.0)
    with pytest.raises(AuthError):
        cache.check_and_add(("i", "c"), expires_at=300.0, now=50.0)  # full of live entries
    cache.check_and_add(("i", "c"), expires_at=300.0, now=150.0)  # "a" expired and was dropped
    assert len(cache) == 2
    with pytest.raises(AuthError):
        cache.check_and_add(("i", "b"), expires_at=400.0, now=150.0)


def test_jwks_loader_skips_symmetric_and_private_keys() -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private))
    p256_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    doc = {
        "keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**private_jwk, "kid": "leaked"},
            {**public_jwk, "kid": "good"},
            {**p256_jwk, "kid": "p256"},
        ]
    }
    assert set(parse_jwks(doc, "test")) == {"good"}
    with pytest.raises(ValueError):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}, "test")


def test_config_refuses_to_run_open_without_the_dev_flag() -> None:
    with pytest.raises(ConfigError):
        ServiceConfig(base_url="http://127.0.0.1:1")
    assert not ServiceConfig(base_url="http://127.0.0.1:1", insecure_dev=True).secured


def test_insecure_dev_marks_every_response(engine: Any) -> None:
    with running_server({"insecure_dev": True}, engine) as srv:
        discovery = srv.call("GET", "/cds-services")
        call = srv.call("POST", PATH, _body())
        bad = srv.call("POST", PATH, {"hook": 1})
    assert (discovery.status, call.status, bad.status) == (200, 200, 400)
    for resp in (discovery, call, bad):
        assert INSECURE_HEADER.lower() in resp.headers


@pytest.fixture()
def jwks_url(keys: Keys) -> Iterator[str]:
    """The EHR's JWK Set served over HTTP on loopback."""
    data = keys.jwks_path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def test_jwks_by_url(engine: Any, keys: Keys, jwks_url: str) -> None:
    config = {"issuers": {EHR_ISSUER: jwks_url}, "clock": lambda: FIXED_NOW}
    with running_server(config, engine) as srv:
        good = srv.call("POST", PATH, _body(), token=keys.token(srv.base_url + PATH, alg="RS384"))
        same_jku = srv.call("POST", PATH, _body(), token=keys.token(srv.base_url + PATH, headers={"jku": jwks_url}))
        other_jku = srv.call(
            "POST", PATH, _body(), token=keys.token(srv.base_url + PATH, headers={"jku": jwks_url + "?x=1"})
        )
    assert (good.status, same_jku.status, other_jku.status) == (200, 200, 401)


def test_tokens_and_patient_data_never_logged(
    engine: Any, keys: Keys, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    patient_id, prefetch = synthea_prefetch()
    body = hook_request("patient-view", patient_id, prefetch)
    body["fhirServer"] = "https://ehr.test.invalid/fhir"
    body["fhirAuthorization"] = {
        "access_token": "FHIR-ACCESS-TOKEN-must-not-leak",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "neurocds",
    }
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": lambda: FIXED_NOW}
    with running_server(config, engine, log_level="debug") as srv:
        good = keys.token(srv.base_url + PATH)
        assert srv.call("POST", PATH, body, token=good).status == 200
        replayed = srv.call("POST", PATH, body, token=good)  # rejected: its reason is logged
        forged = keys.token(srv.base_url + PATH, iss="https://rogue.invalid")
        assert srv.call("POST", PATH, body, token=forged).status == 401
        broken = dict(body, hookInstance=None)
        assert srv.call("POST", PATH, broken, token=keys.token(srv.base_url + PATH)).status == 400
    assert replayed.status == 401
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "401" in logged and "200" in logged  # the log did capture the server's lines
    for secret in (good, good.split(".")[2], forged, "FHIR-ACCESS-TOKEN-must-not-leak", patient_id):
        assert secret not in logged
