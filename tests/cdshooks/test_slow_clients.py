"""Slow, greedy and departing clients (issue 11, items 9 and 10).

A client that leaves mid-body is a normal event: one log line, no 500. Clients
that trickle headers or bodies are cut off by deadlines, and connections beyond
the cap are refused at once; checked against a real ``neurocds serve`` process
with a bounded loop of raw sockets on loopback.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest

from .support import hook_request, running_server, serve_process

PATH = "/cds-services/neurocds-patient-view"
PREFETCH = {"patient": {"resourceType": "Patient", "id": "p1"}}


def _headers(port: int, length: int) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def _closed_by_server(sock: socket.socket, seen: bytearray) -> bool:
    """True once the server has closed its side (EOF or reset); what it sent goes to ``seen``."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    seen += data
    return not data


def test_a_client_leaving_mid_body_is_one_log_line_and_no_500(engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="neurocds")
    with running_server({"insecure_dev": True}, engine) as srv:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            sock.sendall(_headers(srv.port, 5000) + b'{"hook": "patient-view", ')
            time.sleep(0.1)  # the server is now reading the body
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("disconnected" in r.getMessage() for r in caplog.records) < 3:
            time.sleep(0.05)
        still_serving = srv.call("POST", PATH, hook_request("patient-view", "p1", PREFETCH)).status
    mine = [r for r in caplog.records if r.name.startswith("neurocds")]
    assert [r.getMessage() for r in mine if "disconnected" in r.getMessage()] == [
        "neurocds-patient-view: the client disconnected before its request body arrived"
    ] * 3
    assert not [r for r in caplog.records if r.exc_info or "500" in r.getMessage()]
    assert still_serving == 200


def test_a_body_slower_than_its_deadline_gets_408(engine: Any) -> None:
    with running_server({"insecure_dev": True, "body_timeout_seconds": 0.5}, engine) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(_headers(srv.port, 100) + b"{")
        started = time.monotonic()
        reply = sock.recv(65536)
        waited = time.monotonic() - started
        sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["resourceType"] == "OperationOutcome"
    assert waited < 5


def test_slow_clients_are_cut_off_and_the_connection_cap_holds() -> None:
    """30 trickling clients against a cap of 20: 10 refused at once, the rest closed by the deadlines."""
    header_timeout, body_timeout, cap = 1.0, 1.0, 20
    args = [
        "--insecure-dev",
        f"--header-timeout={header_timeout}",
        f"--body-timeout={body_timeout}",
        f"--max-connections={cap}",
    ]
    with serve_process(args) as served:
        port = served.port
        header_trickle = _headers(port, 2)
        body_trickle = _headers(port, 1000)
        socks = []
        for index in range(30):
            sock = _connect(port)
            if index % 2:
                sock.send(body_trickle)  # headers whole, then the body byte by byte
            socks.append((sock, index % 2 == 1, bytearray()))
            time.sleep(0.01)
        open_socks = list(socks)
        sent = 0
        started = time.monotonic()
        # Bounded: each client sends one byte every 0.1 s; no server deadline should need more than ~4 s.
        while open_socks and time.monotonic() - started < 20:
            for sock, trickles_body, seen in list(open_socks):
                if _closed_by_server(sock, seen):
                    open_socks.remove((sock, trickles_body, seen))
                    continue
                try:
                    # Byte by byte: never enough to finish the headers (or the body).
                    sock.send(b"x" if trickles_body else header_trickle[sent % 20 : sent % 20 + 1])
                except OSError:
                    open_socks.remove((sock, trickles_body, seen))
            sent += 1
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        # The service still answers a well-behaved client.
        for sock, _, _ in socks:
            sock.close()
        time.sleep(0.2)
        ok = _post_ok(port)
    assert not open_socks, f"{len(open_socks)} slow connection(s) still open after {elapsed:.1f} s"
    assert elapsed < 8
    statuses = [bytes(seen[:12]) for _, _, seen in socks]
    assert statuses.count(b"HTTP/1.1 503") == 30 - cap
    assert statuses.count(b"HTTP/1.1 408") == cap
    assert ok == 200
    assert "Traceback" not in served.stderr


def _post_ok(port: int) -> int:
    from .support import http_call

    return http_call(port, "POST", PATH, hook_request("patient-view", "p1", PREFETCH)).status
