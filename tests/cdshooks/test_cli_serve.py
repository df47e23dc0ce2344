"""``neurocds serve`` as a real process on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .support import EHR_ISSUER, Keys, Response, free_socket, http_call

CLI = [sys.executable, "-c", "from neurocds.cli import main; main()", "serve"]
START_TIMEOUT = 30.0


def _free_port() -> int:
    sock = free_socket()
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


@contextmanager
def serving(args: Sequence[str]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "--port", str(port), "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.communicate()[1]}")
            try:
                http_call(port, "GET", "/cds-services")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_refuses_to_start_without_issuers() -> None:
    done = subprocess.run([*CLI, "--port", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no trusted issuer" in done.stderr


def test_refuses_a_missing_jwks_file(tmp_path: Path) -> None:
    spec = f"{EHR_ISSUER}={tmp_path / 'absent.json'}"
    done = subprocess.run([*CLI, "--issuer", spec], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "JWK Set file not found" in done.stderr


def test_insecure_dev_warns_and_marks_responses() -> None:
    with serving(["--insecure-dev"]) as (port, proc):
        resp = http_call(port, "GET", "/cds-services")
    assert resp.status == 200
    assert resp.headers["x-neurocds-insecure"]
    assert "WARNING: --insecure-dev" in proc.communicate(timeout=15)[1]


def test_secured_server_checks_tokens(keys: Keys, tmp_path: Path) -> None:
    args = ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}", "--audit-dir", str(tmp_path / "audit")]
    with serving(args) as (port, _proc):
        base = f"http://127.0.0.1:{port}"
        anonymous: Response = http_call(port, "GET", "/cds-services")
        token = keys.token(f"{base}/cds-services", alg="RS384", now=datetime.now(UTC))
        signed = http_call(port, "GET", "/cds-services", token=token)
    assert anonymous.status == 401
    assert signed.status == 200
    assert "x-neurocds-insecure" not in signed.headers
