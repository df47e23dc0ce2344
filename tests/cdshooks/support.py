"""Helpers for the CDS Hooks tests: a real uvicorn server on loopback, keys, tokens, HTTP calls."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import shared_data
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from neurocds.cdshooks import ServiceConfig, create_app
from neurocds.cdshooks.discovery import prefetch_templates
from neurocds.fhir import default_mapping_paths, load_mapping_tables
from neurocds.hookspecs import RulePack, hookimpl

HERE = Path(__file__).parent
CDSHOOKS_DATA = shared_data.DATA / "cdshooks"
SYNTHEA_DATA = shared_data.DATA / "synthea"
STROKE_PATIENT = "Bryan_Breitenberg_8ce561ed-8bf7-4b0b-b1cd-e26775a8a8f8.json"
# Synthea data is years old; a fixed "now" shortly after the stroke keeps the
# conversion reproducible (tokens are issued against the same clock).
FIXED_NOW = datetime(2018, 9, 20, 12, 0, tzinfo=UTC)
EHR_ISSUER = "https://ehr.test.invalid"
FHIR_BASE = "https://ehr.test.invalid/fhir"
START_TIMEOUT = 15.0
HTTP_TIMEOUT = 30.0


class TestPack:
    """Registers the test-only rule pack (findings at several urgencies)."""

    __test__ = False

    @hookimpl
    def neurocds_register_packs(self) -> list[RulePack]:
        return [RulePack(name="cds-test", version="9.9.9", rule_files=[HERE / "data" / "cds-test.yaml"])]


class BoomPack(TestPack):
    """The same pack, but its Python hook raises: the pack fails at evaluation."""

    @hookimpl
    def neurocds_compute_facts(self, facts: Mapping[str, Any]) -> None:
        raise RuntimeError("boom")


@dataclass
class Keys:
    ec: ec.EllipticCurvePrivateKey
    rsa: rsa.RSAPrivateKey
    jwks_path: Path

    def token(self, audience: str | list[str], *, alg: str = "ES384", now: datetime = FIXED_NOW, **over: Any) -> str:
        """A token as a conforming EHR would send; ``over`` replaces claims (``None`` removes one)."""
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": EHR_ISSUER,
            "sub": "ehr-client",
            "aud": audience,
            "exp": iat + 300,
            "iat": iat,
            "jti": str(uuid.uuid4()),
        }
        headers = dict(over.pop("headers", {}))
        for key, value in over.items():
            if value is None:
                claims.pop(key, None)
            else:
                claims[key] = value
        key = self.ec if alg == "ES384" else self.rsa
        kid = "ec-1" if alg == "ES384" else "rsa-1"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, **headers})


def make_keys(directory: Path) -> Keys:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1", "alg": "ES384"},
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "alg": "RS384"},
        ]
    }
    path = directory / "ehr-jwks.json"
    path.write_text(json.dumps(jwks), encoding="utf-8")
    return Keys(ec_key, rsa_key, path)


def unsigned_token(claims: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    """A token with any header (``alg: none``...) that PyJWT would refuse to produce."""

    def b64(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Server:
    base_url: str
    port: int
    app: Any

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Response:
        return http_call(self.port, method, path, body, token=token, headers=headers, raw=raw)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    raw: bytes | None = None,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        sent = dict(headers or {})
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@contextmanager
def running_server(config_kwargs: Mapping[str, Any], engine: Any, *, log_level: str = "warning") -> Iterator[Server]:
    """Start the app under uvicorn in a thread on 127.0.0.1 (free port); stop it afterwards."""
    sock = free_socket()
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    config = ServiceConfig(base_url=base_url, **dict(config_kwargs))
    app = create_app(config, engine)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Server(base_url, port, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


SERVE_CLI = [sys.executable, "-c", "from neurocds.cli import main; main()", "serve"]


@dataclass
class ServedProcess:
    port: int
    proc: subprocess.Popen[bytes]
    stderr: str = ""  # what the server wrote to stderr, filled in once it has stopped


@contextmanager
def serve_process(
    args: Sequence[str],
    *,
    log_level: str = "warning",
    start_timeout: float = 30.0,
    workers: int = 1,
    prefix: Sequence[str] = (),
    python: str | None = None,
) -> Iterator[ServedProcess]:
    """``neurocds serve`` as a real process on a free loopback port, stopped afterwards.

    Ready once its discovery endpoint answers and, with ``workers`` above 1, every worker
    has said it started (read from the info log). Its stderr goes to a file, not a pipe:
    a pipe nobody reads during a long benchmark could fill and stall the server.
    ``prefix``: a command the server runs under (``unshare -m`` ...). ``python``: the
    interpreter to run it with (another checkout's venv, for a before/after benchmark).
    """
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    if workers > 1:
        args, log_level = [*args, "--workers", str(workers)], "info"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "stderr.txt"
        with log.open("wb") as err:
            cli = [python, *SERVE_CLI[1:]] if python else SERVE_CLI
            command = [*prefix, *cli, "--port", str(port), "--log-level", log_level, *args]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        served = ServedProcess(port, proc)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited during start-up: {log.read_text(errors='replace')}")
                try:
                    http_call(port, "GET", "/cds-services")
                    if workers == 1 or log.read_text(errors="replace").count("startup complete") >= workers:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not all start: {log.read_text(errors='replace')}")
                time.sleep(0.1)
            yield served
        finally:
            stop_process(proc)
            served.stderr = log.read_text(errors="replace")


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _builtin_templates() -> tuple[tuple[str, str], ...]:
    # Loading the tables takes ~0.1 s; every Synthea prefetch the tests and the benchmark build needs them.
    return tuple(prefetch_templates(load_mapping_tables(default_mapping_paths())).items())


def service_templates() -> dict[str, str]:
    """The prefetch templates the service advertises for the built-in mapping tables."""
    return dict(_builtin_templates())


def _token_matches(resource: Mapping[str, Any], values: str) -> bool:
    wanted = {tuple(unquote(v).split("|", 1)) for v in values.split(",")}
    codings = (resource.get("code") or {}).get("coding") or []
    return any((c.get("system"), c.get("code")) in wanted for c in codings)


def answer_template(template: str, resources: Sequence[Mapping[str, Any]], patient_id: str) -> Any:
    """What a FHIR server returns for one of our templates (the subset of search they use).

    Refuses any search parameter it does not implement, so a template the tests cannot
    answer faithfully fails here instead of being half-answered.
    """
    path, _, query = template.replace("{{context.patientId}}", patient_id).partition("?")
    if not query:
        rtype, rid = path.split("/", 1)
        return next(r for r in resources if r["resourceType"] == rtype and r["id"] == rid)
    chosen = [r for r in resources if r["resourceType"] == path]
    for name, value in (part.split("=", 1) for part in query.split("&")):
        if name == "patient":
            assert value == patient_id  # every resource of a Synthea bundle is this patient's
        elif name == "code":
            chosen = [r for r in chosen if _token_matches(r, value)]
        elif name != "_sort":  # order does not matter to the converter
            raise AssertionError(f"search parameter {name!r} is not emulated")
    entries = [{"fullUrl": f"{FHIR_BASE}/{path}/{r['id']}", "resource": r} for r in chosen]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def synthea_prefetch(name: str = STROKE_PATIENT, folder: Path | None = None) -> tuple[str, dict[str, Any]]:
    """(patient id, prefetch) from a Synthea bundle, answered as a FHIR server answers our templates."""
    bundle = load_json((folder or SYNTHEA_DATA) / name)
    for entry in bundle["entry"]:
        # Some generators (carebundle) leave ids to the server: it gives the fullUrl's uuid.
        full_url = entry.get("fullUrl", "")
        if "id" not in entry["resource"] and full_url.startswith("urn:uuid:"):
            entry["resource"]["id"] = full_url.removeprefix("urn:uuid:")
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    # Synthea's transaction bundles reference the patient as urn:uuid:<id>; a FHIR server's
    # search results say Patient/<id>.
    bundle = json.loads(json.dumps(bundle).replace(f'"urn:uuid:{pid}"', f'"Patient/{pid}"'))
    resources = [e["resource"] for e in bundle["entry"]]
    return pid, {key: answer_template(t, resources, pid) for key, t in service_templates().items()}


def hook_request(
    hook: str, patient_id: str, prefetch: Mapping[str, Any] | None, **extra_context: Any
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": patient_id, **extra_context}
    if hook == "order-select":
        context.setdefault("selections", [])
        context.setdefault("draftOrders", {"resourceType": "Bundle", "type": "collection", "entry": []})
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    return body
