"""``neurocds serve --workers N``: the replay cache, the card index and the audit chain are shared
by real worker processes (issue 15, item 7).

A call reaches whichever worker accepts its connection, so each test sends many
calls at once, on fresh connections, to make both workers take part: with state
kept per process, a token replayed at the other worker would be accepted and
feedback reaching the other worker would not name its decision.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurocds.audit.query import read_records

from .support import (
    EHR_ISSUER,
    SERVE_CLI,
    Keys,
    Response,
    hook_request,
    http_call,
    serve_process,
    synthea_prefetch,
)

SERVICE = "/cds-services/neurocds-patient-view"
WORKERS = 2
START_TIMEOUT = 120.0  # each worker loads the packs; the machine is shared


@contextmanager
def serve_workers(args: Sequence[str], workers: int = WORKERS, prefix: Sequence[str] = ()) -> Iterator[Any]:
    """``neurocds serve --workers N`` on a free loopback port, once every worker has started."""
    with serve_process(args, workers=workers, prefix=prefix, start_timeout=START_TIMEOUT) as served:
        yield served.port, served.proc


def _secured(keys: Keys, audit: Path) -> list[str]:
    # The Synthea patient's labs are years old: a long window makes the rules read them.
    window = ["--observation-window-days", "36500"]
    return ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}", "--audit-dir", str(audit), *window]


def _at_once(count: int, call: Any) -> list[Response]:
    """``call(i)`` from ``count`` threads released together; responses in order of i."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def test_a_token_is_accepted_once_across_worker_processes(keys: Keys, tmp_path: Path) -> None:
    patient, prefetch = synthea_prefetch()
    body = hook_request("patient-view", patient, prefetch)
    with serve_workers(_secured(keys, tmp_path / "audit")) as (port, _):
        audience = f"http://127.0.0.1:{port}{SERVICE}"
        for _ in range(4):  # each token sent 6 times at once, each time on its own connection
            token = keys.token(audience, now=datetime.now(UTC))
            statuses = [r.status for r in _at_once(6, lambda i, t=token: http_call(port, "POST", SERVICE, body,
                                                                                   token=t))]  # fmt: skip
            assert sorted(statuses) == [200, 401, 401, 401, 401, 401], statuses
    assert (tmp_path / "audit" / "cdshooks-state.sqlite").is_file()


def test_feedback_names_the_decision_whichever_worker_issued_the_card(keys: Keys, tmp_path: Path) -> None:
    """And appends from both workers, concurrently, make one chain that `neurocds audit verify` accepts."""
    audit = tmp_path / "audit"
    patient, prefetch = synthea_prefetch()
    calls = 16
    with serve_workers(_secured(keys, audit)) as (port, _):
        base = f"http://127.0.0.1:{port}"

        def call(i: int) -> Response:
            body = hook_request("patient-view", patient, prefetch)
            return http_call(port, "POST", SERVICE, body, token=keys.token(base + SERVICE, now=datetime.now(UTC)))

        answers = _at_once(calls, call)
        assert [r.status for r in answers] == [200] * calls
        cards = [c["uuid"] for r in answers for c in r.json()["cards"]]
        assert cards

        def feedback(i: int) -> Response:
            path = SERVICE + "/feedback"
            item = {"card": cards[i], "outcome": "accepted", "outcomeTimestamp": "2026-12-03T12:00:00Z"}
            token = keys.token(base + path, now=datetime.now(UTC))
            return http_call(port, "POST", path, {"feedback": [item]}, token=token)

        assert {r.status for r in _at_once(len(cards), feedback)} == {200}
    records = read_records(audit)
    decisions = {r["decision"]["decision_id"] for r in records if r["type"] == "decision"}
    issued = {c: r["cards"]["decision_id"] for r in records if r["type"] == "cards" for c in r["cards"]["card_uuids"]}
    assert len(decisions) == calls and set(issued) == set(cards)
    given = [r["feedback"] for r in records if r["type"] == "feedback"]
    assert len(given) == len(cards)
    assert all(f.get("decision_id") == issued[f["card_uuid"]] for f in given), "feedback without its decision"
    verify = [*SERVE_CLI[:-1], "audit", "verify", "--audit-dir", str(audit)]
    verified = subprocess.run(verify, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_more_than_one_worker_needs_the_audit_log_when_tokens_are_checked(keys: Keys) -> None:
    args = ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}", "--port", "1", "--workers", "2"]
    done = subprocess.run([*SERVE_CLI, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--workers above 1 needs --audit-dir" in done.stderr
    assert done.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- /health


def _health(port: int) -> tuple[int, dict[str, Any]]:
    resp = http_call(port, "GET", "/health")
    assert resp.headers["content-type"].startswith("application/health+json")
    return resp.status, resp.json()


def _decide(srv: Any, keys: Keys) -> None:
    patient, prefetch = synthea_prefetch()
    body = hook_request("patient-view", patient, prefetch)
    assert srv.call("POST", SERVICE, body, token=keys.token(srv.base_url + SERVICE)).status == 200


def test_health_passes_while_the_audit_log_can_be_appended_to(engine: Any, keys: Keys, tmp_path: Path) -> None:
    from .support import FIXED_NOW, running_server

    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "audit_dir": tmp_path, "clock": lambda: FIXED_NOW}
    with running_server(config, engine) as srv:
        _decide(srv, keys)
        status, body = _health(srv.port)  # no token: a load balancer has none
        assert status == 200 and body["status"] == "pass", body
        # The last record is altered: the next append would refuse, so the service is unhealthy now.
        log = tmp_path / "audit.jsonl"
        data = log.read_bytes()
        log.write_bytes(data[:-40] + data[-40:].replace(b"0", b"1", 1).replace(b"a", b"b", 1))
        status, body = _health(srv.port)
    assert status == 503 and body["status"] == "fail"
    [check] = body["checks"]["audit-log:appendable"]
    assert check["status"] == "fail" and "cannot be appended" in check["output"]
    assert str(tmp_path) not in json_text(body)


def json_text(body: Any) -> str:
    import json

    return json.dumps(body)


def test_health_fails_when_the_chain_failed_verification_at_start(engine: Any, keys: Keys, tmp_path: Path) -> None:
    """Damage in the middle of the chain is found by the verification started with the service."""
    from .support import FIXED_NOW, running_server

    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "audit_dir": tmp_path, "clock": lambda: FIXED_NOW}
    from neurocds.audit import AuditLog

    with running_server(config, engine) as srv:
        _decide(srv, keys)
    log = AuditLog(tmp_path)
    for _ in range(60):  # beyond the tail that is checked at start (64 KiB): only verification reads it
        log.record_cards(str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(40)])
    lines = (tmp_path / "audit.jsonl").read_bytes().split(b"\n")
    at = lines[0].index(b'"facts_sha256":"') + len(b'"facts_sha256":"')
    digit = b"1" if lines[0][at : at + 1] == b"0" else b"0"
    lines[0] = lines[0][:at] + digit + lines[0][at + 1 :]  # record 1, same length: only its hash tells
    (tmp_path / "audit.jsonl").write_bytes(b"\n".join(lines))
    with running_server(config, engine) as srv:
        deadline = time.monotonic() + 60
        while (status := _health(srv.port))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the background verification has read the chain
    assert status[0] == 503
    assert "fails verification at sequence 1" in status[1]["checks"]["audit-log:appendable"][0]["output"]


def test_health_without_an_audit_log_says_nothing_is_recorded(engine: Any, keys: Keys) -> None:
    from .support import FIXED_NOW, running_server

    with running_server({"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "clock": lambda: FIXED_NOW}, engine) as srv:
        status, body = _health(srv.port)
    assert status == 200 and "no audit log" in body["checks"]["audit-log:appendable"][0]["output"]


def _make_read_only(pid: int, directory: Path) -> None:
    """The audit directory read-only under a running server: a read-only bind mount in the server's
    own mount namespace when we are root (root ignores file modes), file modes otherwise."""
    import os

    if os.geteuid() != 0:
        for path in [directory, *directory.iterdir()]:
            path.chmod(0o500 if path.is_dir() else 0o400)
        return
    script = f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory}"
    subprocess.run(["nsenter", "-t", str(pid), "-m", "sh", "-c", script], check=True, timeout=30)


def test_health_fails_when_the_audit_directory_is_read_only(keys: Keys, tmp_path: Path) -> None:
    import os
    import shutil

    import pytest

    prefix: list[str] = []
    if os.geteuid() == 0:
        if not (shutil.which("unshare") and shutil.which("nsenter")):
            pytest.skip("as root, a read-only directory needs unshare and nsenter (util-linux)")
        prefix = ["unshare", "-m", "--propagation", "private"]  # its own mounts: ours are not touched
    audit = tmp_path / "audit"
    with serve_workers(_secured(keys, audit), workers=1, prefix=prefix) as (port, proc):
        before = _health(port)
        _make_read_only(proc.pid, audit)
        after = _health(port)
        token = keys.token(f"http://127.0.0.1:{port}{SERVICE}", now=datetime.now(UTC))
        patient, prefetch = synthea_prefetch()
        refused = http_call(port, "POST", SERVICE, hook_request("patient-view", patient, prefetch), token=token)
    if os.geteuid() != 0:
        audit.chmod(0o700)
    assert before[0] == 200 and before[1]["status"] == "pass"
    assert after[0] == 503 and after[1]["status"] == "fail"
    assert "cannot be" in after[1]["checks"]["audit-log:appendable"][0]["output"]
    assert refused.status == 503  # the token cannot be marked used, so nothing is trusted or advised
