"""The header deadline and connection cap hold on both of uvicorn's HTTP parsers (issue 15, item 7).

``neurocds serve`` runs uvicorn's httptools protocol (llhttp, in C) when httptools is
installed, as it is with neurocds, and its h11 protocol (pure Python) otherwise; each
gets the same guard. Real uvicorn on loopback, raw sockets: a client trickling its
headers is answered 408 and closed, a kept-alive connection gets a fresh deadline
after each response (and none while a pipelined request is being answered), and a
connection beyond the cap is refused with 503 before anything is read.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from neurocds.cdshooks.transport import guarded_protocol

from .support import free_socket

DEADLINE = 0.5
CAP = 3


async def _hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello")


@contextmanager
def _serving(parser: str) -> Iterator[int]:
    protocol = guarded_protocol(header_timeout=DEADLINE, max_connections=CAP, parser=parser)
    app = Starlette(routes=[Route("/", _hello)])
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning", lifespan="off",
                                           timeout_keep_alive=30))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _read_until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    sock.settimeout(limit)
    seen = b""
    while True:
        try:
            data = sock.recv(4096)
        except (TimeoutError, OSError):
            return seen
        if not data:
            return seen
        seen += data


def _get(port: int) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_the_guard_holds_on_each_parser(parser: str) -> None:
    if parser == "httptools":
        pytest.importorskip("httptools")
    protocol = guarded_protocol(header_timeout=DEADLINE, max_connections=CAP, parser=parser)
    assert parser.lower() in protocol.__name__.lower()
    with _serving(parser) as port:
        # Trickled headers: 408 and closed near the deadline.
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x")
        started = time.monotonic()
        answer = _read_until_closed(slow)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert DEADLINE * 0.8 <= time.monotonic() - started < DEADLINE + 4
        slow.close()
        # Kept alive: two pipelined requests both answered, then a fresh deadline closes the idle connection.
        kept = socket.create_connection(("127.0.0.1", port), timeout=5)
        kept.sendall(_get(port) + _get(port))
        answers = _read_until_closed(kept)
        assert answers.count(b"HTTP/1.1 200") == 2
        assert answers.endswith(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
        kept.close()
        # The cap: CAP idle connections are held; one more is refused at once with 503.
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(CAP)]
        time.sleep(0.1)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        started = time.monotonic()
        refused = _read_until_closed(extra)
        assert refused.startswith(b"HTTP/1.1 503") and time.monotonic() - started < DEADLINE
        for sock in [*held, extra]:
            sock.close()


def test_auto_picks_httptools_when_installed_and_an_unknown_parser_is_refused() -> None:
    pytest.importorskip("httptools")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(guarded_protocol(header_timeout=1, max_connections=1), HttpToolsProtocol)
    with pytest.raises(ValueError, match="parser"):
        guarded_protocol(header_timeout=1, max_connections=1, parser="wsproto")
