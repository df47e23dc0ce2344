"""Slow and greedy clients at the HTTP layer: a header deadline and a connection cap.

uvicorn has neither: a client that sends its request headers one byte a second
holds a connection (and a file descriptor) for as long as it likes, and nothing
bounds how many such connections are open. :func:`guarded_protocol` returns
uvicorn's h11 protocol with both added, so no proxy is needed in front:

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

log = logging.getLogger("neurocds.cdshooks")


_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_BUSY_503 = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and a cap on open connections."""
    if header_timeout <= 0 or max_connections < 1:
        raise ValueError("header_timeout must be positive and max_connections at least 1")

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport the same way
            if len(self.connections) >= max_connections:
                # Refused before it is counted or read: a flood of idle sockets cannot grow the set.
                log.warning("503: %d connections open, the cap; a new one was refused", len(self.connections))
                transport.write(_BUSY_503)
                transport.close()
                return
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            if getattr(self, "transport", None) is None:  # refused in connection_made: uvicorn never saw it
                return
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Headers complete once h11 has moved past IDLE: the body has its own deadline.
            if self.conn.their_state is not h11.IDLE:
                self._disarm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The next request on a kept-alive connection gets a fresh header deadline
            # (uvicorn's keep-alive timer closes it sooner if nothing arrives at all).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
                return
            log.info("408: request headers not received within %.1f s; connection closed", header_timeout)
            self.transport.write(_TIMEOUT_408)
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(*, header_timeout: float, max_connections: int, keep_alive: int = 5) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` applying the guard."""
    return {
        "http": guarded_protocol(header_timeout=header_timeout, max_connections=max_connections),
        "timeout_keep_alive": keep_alive,
        # uvicorn's own cap (503 once headers are in) as a second line: requests in flight.
        "limit_concurrency": max_connections + 1,
    }
