"""A damaged audit log: `serve` exits 4 with the reason; a running service answers 503 with an
OperationOutcome and Retry-After, and gives no advice it did not record; used tokens survive a restart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from neurocds.audit import AuditLog, PendingRecord
from neurocds.audit.chain import HEAD_NAME, LOG_NAME

from .spec import assert_operation_outcome
from .support import EHR_ISSUER, FIXED_NOW, SERVE_CLI, Keys, hook_request, running_server, synthea_prefetch

SERVICE = "/cds-services/neurocds-patient-view"


def _call(server: Any, keys: Keys, token: str | None = None) -> Any:
    patient_id, prefetch = synthea_prefetch()
    token = token or keys.token(server.base_url + SERVICE)
    return server.call("POST", SERVICE, hook_request("patient-view", patient_id, prefetch), token=token)


def _config(keys: Keys, audit_dir: Path) -> dict[str, Any]:
    return {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "audit_dir": audit_dir, "clock": lambda: FIXED_NOW}


def _served_log(engine: Any, keys: Keys, audit_dir: Path, calls: int) -> None:
    with running_server(_config(keys, audit_dir), engine) as server:
        for _ in range(calls):
            assert _call(server, keys).status == 200


def test_serve_exits_4_naming_the_damage_at_the_tail(engine: Any, keys: Keys, tmp_path: Path) -> None:
    d = tmp_path / "audit"
    _served_log(engine, keys, d, 2)
    data = bytearray((d / LOG_NAME).read_bytes())
    data[-40] ^= 0x01  # a flipped byte in the last record
    (d / LOG_NAME).write_bytes(bytes(data))
    out = subprocess.run(
        [*SERVE_CLI, "--insecure-dev", "--audit-dir", str(d), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 4, out.stderr
    assert "refusing to append" in out.stderr and "Traceback" not in out.stderr


def _assert_refused(resp: Any) -> None:
    assert resp.status == 503
    assert resp.headers["retry-after"].isdigit()
    outcome = resp.json()
    assert_operation_outcome(outcome)
    assert "could not be recorded" in outcome["issue"][0]["diagnostics"]


def test_a_vanished_head_file_means_503_and_no_advice(engine: Any, keys: Keys, tmp_path: Path) -> None:
    d = tmp_path / "audit"
    with running_server(_config(keys, d), engine) as server:
        assert _call(server, keys).status == 200
        before = (d / LOG_NAME).read_bytes()
        (d / HEAD_NAME).unlink()
        for _ in range(2):
            _assert_refused(_call(server, keys))
        assert (d / LOG_NAME).read_bytes() == before  # nothing appended to a log it cannot check


def test_damage_far_from_the_tail_is_found_in_the_background(engine: Any, keys: Keys, tmp_path: Path) -> None:
    d = tmp_path / "audit"
    _served_log(engine, keys, d, 1)
    log = AuditLog(d)
    first = (d / LOG_NAME).read_bytes().splitlines(keepends=True)[0]
    for _ in range(40):  # well past the tail window the writer checks at start
        log.append_together([PendingRecord("cards", {"decision_id": "d", "card_uuids": ["c" * 100] * 20})])
    lines = (d / LOG_NAME).read_bytes().splitlines(keepends=True)
    assert lines[0] == first and len(b"".join(lines[1:])) > 64 * 1024
    damaged = bytearray(first)
    damaged[60] ^= 0x01  # same length: the head file still points at the end of the chain
    lines[0] = bytes(damaged)
    (d / LOG_NAME).write_bytes(b"".join(lines))
    with running_server(_config(keys, d), engine) as server:
        evaluator = server.app.state.service.evaluator
        deadline = time.monotonic() + 60
        while evaluator.audit_damage is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "sequence 1" in str(evaluator.audit_damage)
        _assert_refused(_call(server, keys))
    assert len((d / LOG_NAME).read_bytes().splitlines()) == len(lines)


def test_a_used_token_is_refused_after_a_restart(engine: Any, keys: Keys, tmp_path: Path) -> None:
    d = tmp_path / "audit"
    with running_server(_config(keys, d), engine) as server:
        token = keys.token(server.base_url + SERVICE)
        assert _call(server, keys, token).status == 200
        assert _call(server, keys, token).status == 401
    with running_server(_config(keys, d), engine) as server:
        # A new port, so a new audience: the same jti, re-signed for it, is still a replay.
        jti = _jti(token)
        again = keys.token(server.base_url + SERVICE, jti=jti)
        assert _call(server, keys, again).status == 401
        assert _call(server, keys).status == 200  # a fresh token is fine


def _jti(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["jti"])
