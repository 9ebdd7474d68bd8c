"""The request body limits, enforced while the body arrives: a declared Content-Length over the limit
is refused before any of the body is read, a chunked body without one is cut off at the limit, and
a body that takes longer than its deadline to arrive is answered 408."""

from __future__ import annotations

import asyncio
import json
from typing import Any

# An over-limit body is read and thrown away up to this many bytes before the 413 goes out (as
# nginx's lingering close does): a client that sends the whole body before reading the answer
# (Python's urllib and requests) otherwise meets a closed socket, a BrokenPipeError, and never
# sees the status. Beyond it the connection is closed regardless.
DRAIN_LIMIT = 256 * 1024**2


class BodyTooLarge(Exception):
    """Raised from the body stream; the app answers 413."""


class BodyTimeout(Exception):
    """Raised from the body stream; the app answers 408 and closes the connection."""


class LimitUpload:
    """Pure ASGI middleware (no buffering of its own)."""

    def __init__(self, app: Any, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    def _message(self) -> str:
        return f"the request body is larger than the {self.max_bytes / 1e6:g} MB allowed"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receive = _by_deadline(receive, asyncio.get_running_loop().time() + self.timeout,
                               f"the request body did not arrive within {self.timeout:g} s")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _drain(receive)
            await self._refuse(send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, received)
                    raise BodyTooLarge(self._message())
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": self._message()}).encode()
        # Connection: close, since the client may still be sending the body we will not read.
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _by_deadline(receive: Any, deadline: float, error: str) -> Any:
    """`receive` that raises BodyTimeout once the loop's clock passes `deadline`: one deadline for
    the whole body, since a client that trickles a byte at a time beats any per-read timeout. Once
    the body is whole, a receive only waits for the client to leave, and may wait as long as the
    response takes."""
    body_done = False

    async def receive_in_time() -> dict:
        nonlocal body_done
        if body_done:
            return await receive()
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(error) from None
        body_done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_in_time


async def _drain(receive: Any, received: int = 0) -> None:
    """Read and discard the rest of the request body, up to DRAIN_LIMIT bytes in all and for no
    longer than the body's deadline."""
    while received <= DRAIN_LIMIT:
        try:
            message = await receive()
        except BodyTimeout:
            return
        if message["type"] != "http.request":
            return  # the client went away
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
