"""``neurocds serve`` as a real process on 127.0.0.1."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from .support import EHR_ISSUER, SERVE_CLI, Keys, Response, http_call, serve_process


def test_refuses_to_start_without_issuers() -> None:
    done = subprocess.run([*SERVE_CLI, "--port", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no trusted issuer" in done.stderr


def test_refuses_a_missing_jwks_file(tmp_path: Path) -> None:
    spec = f"{EHR_ISSUER}={tmp_path / 'absent.json'}"
    done = subprocess.run([*SERVE_CLI, "--issuer", spec], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "JWK Set file not found" in done.stderr


def test_fhir_server_options_are_checked_in_one_line(keys: Keys) -> None:
    issuer = ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}", "--port", "1"]
    cases = [
        (["--fhir-server", "not-a-url"], "expected ISS=URL"),
        (["--fhir-server", "https://fhir.example.org/r4"], "expected ISS=URL"),  # an issuer is needed when secured
        (["--fhir-server", f"{EHR_ISSUER}=http://fhir.example.org/r4"], "must use https"),
        (["--fhir-server", f"{EHR_ISSUER}=http://fhir.example.org/r4", "--fhir-test-loopback"], "must use https"),
    ]
    for args, message in cases:
        done = subprocess.run([*SERVE_CLI, *issuer, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr


def test_insecure_dev_warns_and_marks_responses() -> None:
    with serve_process(["--insecure-dev"]) as served:
        resp = http_call(served.port, "GET", "/cds-services")
    assert resp.status == 200
    assert resp.headers["x-neurocds-insecure"]
    assert "WARNING: --insecure-dev" in served.stderr


def test_it_says_when_insecure_dev_is_ignored_and_when_a_jwk_set_travels_without_tls(keys: Keys) -> None:
    plain = "https://other-ehr.test.invalid=http://jwks.test.invalid/jwks.json"  # fetched lazily, never here
    args = ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}", "--issuer", plain, "--insecure-dev"]
    with serve_process(args) as served:
        assert http_call(served.port, "GET", "/cds-services").status == 401  # still secured
    assert "--insecure-dev is ignored" in served.stderr
    assert "WARNING: the JWK Set of issuer https://other-ehr.test.invalid is fetched over plain http" in served.stderr
    assert "WARNING: the JWK Set of issuer " + EHR_ISSUER not in served.stderr  # a file: no warning


def test_secured_server_checks_tokens(keys: Keys, tmp_path: Path) -> None:
    args = ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}", "--audit-dir", str(tmp_path / "audit")]
    with serve_process(args) as served:
        port = served.port
        base = f"http://127.0.0.1:{port}"
        anonymous: Response = http_call(port, "GET", "/cds-services")
        token = keys.token(f"{base}/cds-services", alg="RS384", now=datetime.now(UTC))
        signed = http_call(port, "GET", "/cds-services", token=token)
    assert anonymous.status == 401
    assert signed.status == 200
    assert "x-neurocds-insecure" not in signed.headers


def test_serve_freezes_the_engine_out_of_the_collectors_sight_before_serving(monkeypatch):
    # gc.freeze() after start-up: the long-lived compiled rules are not rescanned by every
    # collection (tests/perf/bench_rule_scale.py measures the effect).
    import gc

    import uvicorn
    from click.testing import CliRunner

    from neurocds.cli import main

    frozen: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: frozen.append(gc.get_freeze_count()))
    try:
        result = CliRunner().invoke(main, ["serve", "--insecure-dev", "--port", "8999"])
    finally:
        gc.unfreeze()
    assert result.exit_code == 0, result.output
    assert frozen and frozen[0] > 1000
