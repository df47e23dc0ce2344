"""Slow and greedy clients at the HTTP layer: a header deadline and a connection cap.

uvicorn has neither: a client that sends its request headers one byte a second
holds a connection (and a file descriptor) for as long as it likes, and nothing
bounds how many such connections are open. :func:`guarded_protocol` returns
uvicorn's HTTP protocol with both added, so no proxy is needed in front: its
httptools one (llhttp, in C) when httptools is installed, as it is with neurocds,
else its h11 one (pure Python, several times the CPU per request):

* the request line and headers must arrive within ``header_timeout`` seconds of
  the connection opening (or of the previous response, on a kept-alive
  connection); otherwise the server answers 408 and closes;
* beyond ``max_connections`` open connections, a new one is answered 503 and
  closed at once, before anything is read from it.

The body deadline is the app's (:func:`neurocds.cdshooks.app.read_body`): it can
answer with an OperationOutcome there. Both are counted per process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # a dependency of neurocds; h11 remains the fallback where it cannot be installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover (httptools missing)
    HttpToolsProtocol = None  # type: ignore[assignment,misc]  # checked before use

log = logging.getLogger("neurocds.cdshooks")


_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_BUSY_503 = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"


def guarded_protocol(*, header_timeout: float, max_connections: int, parser: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a header deadline and a cap on open connections.

    :param parser: ``httptools``, ``h11``, or ``auto`` (httptools when installed).
    """
    if header_timeout <= 0 or max_connections < 1:
        raise ValueError("header_timeout must be positive and max_connections at least 1")
    if parser not in ("auto", "httptools", "h11"):
        raise ValueError(f"parser must be auto, httptools or h11, not {parser!r}")
    if parser == "httptools" and HttpToolsProtocol is None:
        raise ValueError("the httptools parser is not installed")
    base = _GuardedHttpTools if parser != "h11" and HttpToolsProtocol is not None else _GuardedH11
    # A subclass per configuration: uvicorn builds the protocol from the class alone.
    settings = {"header_timeout": header_timeout, "max_connections": max_connections}
    return type(base.__name__.lstrip("_"), (base,), settings)


class _HeaderGuard:
    """The guard, over either of uvicorn's protocols (listed after it in the bases)."""

    header_timeout: float
    max_connections: int
    _header_timer: asyncio.TimerHandle | None = None
    # uvicorn's protocol attributes the guard uses.
    connections: set[Any]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def _awaiting_headers(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:
        if len(self.connections) >= self.max_connections:
            # Refused before it is counted or read: a flood of idle sockets cannot grow the set.
            log.warning("503: %d connections open, the cap; a new one was refused", len(self.connections))
            transport.write(_BUSY_503)
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[misc]  # uvicorn's protocol, next in the bases
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        if getattr(self, "transport", None) is None:  # refused in connection_made: uvicorn never saw it
            return
        super().connection_lost(exc)  # type: ignore[misc]  # uvicorn's protocol, next in the bases

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers() or self.transport.is_closing():
            return
        log.info("408: request headers not received within %.1f s; connection closed", self.header_timeout)
        self.transport.write(_TIMEOUT_408)
        self.transport.close()


class _GuardedH11(_HeaderGuard, H11Protocol):  # type: ignore[misc]  # uvicorn narrows the transport as the guard does
    def _awaiting_headers(self) -> bool:
        # Headers complete once h11 has moved past IDLE: the body has its own deadline.
        return self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._awaiting_headers():
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on a kept-alive connection gets a fresh header deadline
        # (uvicorn's keep-alive timer closes it sooner if nothing arrives at all).
        if self._awaiting_headers() and not self.transport.is_closing():
            self._arm_header_timer()


class _GuardedHttpTools(_HeaderGuard, HttpToolsProtocol or H11Protocol):  # type: ignore[misc]  # optional import
    """httptools calls back as it parses: the headers are complete at ``on_headers_complete``."""

    _headers_pending = True

    def _awaiting_headers(self) -> bool:
        return self._headers_pending

    def on_headers_complete(self) -> None:
        self._headers_pending = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # A pipelined request already queued has its headers in: no deadline for it.
        queued = bool(self.pipeline)
        super().on_response_complete()
        if not queued and not self.transport.is_closing():
            self._headers_pending = True
            self._arm_header_timer()


def uvicorn_options(*, header_timeout: float, max_connections: int, keep_alive: int = 5) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` applying the guard."""
    return {
        "http": guarded_protocol(header_timeout=header_timeout, max_connections=max_connections),
        "timeout_keep_alive": keep_alive,
        # uvicorn's own cap (503 once headers are in) as a second line: requests in flight.
        "limit_concurrency": max_connections + 1,
    }
