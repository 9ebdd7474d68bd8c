"""uvicorn's HTTP protocol (httptools) with the limits it lacks: a deadline for a request's headers
and body, a cap on the headers' size and a cap on open connections that makes room by closing the
connection that has waited longest for a request.

uvicorn times out only an idle keep-alive connection between requests. A connection that sends
nothing, or a header a byte every few seconds (slow-loris), or a body without end, is held forever,
each one a file descriptor; and httptools grows a header without bound (by `bytes +=`, quadratic in
time: three 400 MB headers kept a server parsing for ten minutes). The limits live here because
only the protocol sees a request before its headers are complete.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .metrics import Metrics

# A refused client gets this long to read the answer while the rest of what it sends is thrown
# away: closing a socket with unread data sends a reset, which can destroy the answer in transit.
LINGER_SECONDS = 2.0
# The app answers a slow body 408 itself (limits.LimitUpload); this much later the protocol cuts
# off a body nobody reads (one sent after an early answer, such as a 404 or a 413).
BODY_GRACE_SECONDS = 5.0
REASONS = {431: "Request Header Fields Too Large"}


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    max_header_bytes: int


class HeadersTooLarge(Exception):
    """Raised from the parser's callbacks, which stops parsing at once."""


def json_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for answers outside a request cycle."""
    body = json.dumps({"error": message}).encode()
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def busy_app(metrics: Metrics) -> Any:
    """The ASGI app a connection over the cap talks to: 503 with Retry-After, counted."""
    message = "the server has too many connections open; retry shortly"
    body = json.dumps({"error": message}).encode()

    async def busy(scope: dict, receive: Any, send: Any) -> None:
        metrics.count(scope.get("path", ""), 503)
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return busy


class GuardedProtocol(HttpToolsProtocol):
    """One connection. The phase timer runs while a request is being received: from the
    connection (or the request's first byte) to its headers' end, then to its body's end."""

    limits: ClassVar[ConnectionLimits]
    metrics: ClassVar[Metrics]
    refuse_app: ClassVar[Any]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.phase_timer: asyncio.TimerHandle | None = None
        self.discarding = False
        self._reset_head()
        self._arm(self.limits.header_timeout, "header_timeout")
        if len(self.connections) > self.limits.max_connections:
            self._over_the_cap()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        if self.in_head:
            self.head_received += len(data)
        super().data_received(data)
        # Still in the headers after this chunk: everything received since they began is header.
        if self.in_head and not self.discarding and self.head_received > self.limits.max_header_bytes:
            self._refuse_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase_timer is None:  # a keep-alive connection's next request
            self._arm(self.limits.header_timeout, "header_timeout")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._add_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._add_header_bytes(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._arm(self.limits.body_timeout + BODY_GRACE_SECONDS, "body_timeout")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_timer()
        self._reset_head()

    def send_400_response(self, msg: str) -> None:
        if self.head_parsed > self.limits.max_header_bytes:  # our own HeadersTooLarge
            self._refuse_headers()
        else:
            super().send_400_response(msg)

    def _over_the_cap(self) -> None:
        """Room for this connection, made by closing the one that has waited longest for a
        request (a slow-loris one, an idle keep-alive one): a flood of connections that never send
        their headers then cannot lock out a client that does. Where every connection has a
        request in progress, this one is answered 503; it waits for its headers like any other,
        so the next one over the cap closes it if it is slow, and the count stays bounded."""
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(others) < self.limits.max_connections:
            return
        waiting = [c for c in others if isinstance(c, GuardedProtocol) and c._waiting()]
        if waiting:
            oldest = min(waiting, key=lambda connection: connection.head_since)
            self.metrics.dropped.labels("evicted").inc()
            oldest.transport.close()
        else:
            self.app = self.refuse_app

    def _waiting(self) -> bool:
        """Waiting for a request's headers, with no request of its own in progress."""
        idle = self.cycle is None or self.cycle.response_complete
        return self.in_head and not self.discarding and idle

    def _reset_head(self) -> None:
        """What comes next is a request's line and headers."""
        self.in_head, self.head_received, self.head_parsed = True, 0, 0
        self.head_since = self.loop.time()

    def _add_header_bytes(self, count: int) -> None:
        self.head_parsed += count
        if self.head_parsed > self.limits.max_header_bytes:
            raise HeadersTooLarge

    def _refuse_headers(self) -> None:
        kb = self.limits.max_header_bytes / 1000
        self.metrics.count("", 431)
        self._refuse(json_response(431, f"the request's headers are larger than the {kb:g} kB "
                                        f"allowed"))

    def _refuse(self, response: bytes) -> None:
        """Answer outside a request cycle, then only read and discard until the client closes."""
        self._stop_timer()
        self.discarding = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _arm(self, seconds: float, reason: str) -> None:
        self._stop_timer()
        self.phase_timer = self.loop.call_later(seconds, self._time_out, reason)

    def _stop_timer(self) -> None:
        if getattr(self, "phase_timer", None) is not None:
            self.phase_timer.cancel()
            self.phase_timer = None

    def _time_out(self, reason: str) -> None:
        self.phase_timer = None
        if not self.transport.is_closing():
            self.metrics.dropped.labels(reason).inc()
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits, metrics: Metrics) -> type[GuardedProtocol]:
    """The protocol class for uvicorn's `http=` (uvicorn builds one per connection)."""
    return type("GuardedProtocol", (GuardedProtocol,),
                {"limits": limits, "metrics": metrics,
                 "refuse_app": staticmethod(busy_app(metrics))})
